package redisstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
	"github.com/uploadgate/uploadgate/auth/redisstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
	"github.com/uploadgate/uploadgate/internal/testredis"
)

// newRedisClient returns a client of addr with short timeouts, closed when t ends.
func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  300 * time.Millisecond,
		ReadTimeout:  300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond,
		// Many goroutines share the pool in the concurrency tests; under the race
		// detector on a busy machine a short wait for a connection flakes.
		PoolTimeout: 5 * time.Second,
		MaxRetries:  1,
		// Fail fast when the server is down.
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisLayout names the keys of a Store with a key prefix, as documented
// on Store.
type redisLayout struct{ prefix string }

func (l redisLayout) tagged() string               { return l.prefix + "{sessions}:" }
func (l redisLayout) session(id string) string     { return l.tagged() + "session:" + id }
func (l redisLayout) slot(slotKey string) string   { return l.tagged() + "slot:" + slotKey }
func (l redisLayout) uploadSlots(id string) string { return l.tagged() + "slots:" + id }
func (l redisLayout) sweep() string                { return l.tagged() + "sweep" }

// sweepEntry is the documented sweep index entry of a session, and its score.
func sweepEntry(s auth.Session) (string, float64) {
	return fmt.Sprintf("%016x", uint64(s.SweepAt.UnixNano())^(1<<63)) + s.UploadID, float64(s.SweepAt.UnixMilli())
}

// wantExpireTime is the PEXPIRETIME that the keys of s must have: -1 for none.
func wantExpireTime(s auth.Session, margin time.Duration) int64 {
	if s.SweepAt.IsZero() || margin < 0 {
		return -1
	}
	return s.SweepAt.UnixMilli() + margin.Milliseconds()
}

func pexpireTime(t *testing.T, c redis.UniversalClient, key string) int64 {
	t.Helper()
	at, err := c.Do(context.Background(), "PEXPIRETIME", key).Int64()
	if err != nil {
		t.Fatalf("PEXPIRETIME: %v", err)
	}
	return at
}

// checkRedisKeys verifies that the keys under prefix are exactly the sessions,
// their slot mappings, the reverse slot sets and the sweep index, that they
// agree with each other and that every key expires with its session.
func checkRedisKeys(t *testing.T, c redis.UniversalClient, prefix string, margin time.Duration) {
	t.Helper()
	ctx := context.Background()
	l := redisLayout{prefix}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	sessions := map[string]auth.Session{}
	var slots, uploadSlots []string
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, l.tagged())
		switch {
		case !ok:
			t.Errorf("key without the hash tag: %q", k)
		case strings.HasPrefix(rest, "session:"):
			id := strings.TrimPrefix(rest, "session:")
			h, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatalf("HGETALL: %v", err)
			}
			s, err := decodeRecord(id, h["d"])
			if err != nil {
				t.Errorf("session %q: %v", id, err)
				continue
			}
			sessions[id] = s
			if s.UploadID != id {
				t.Errorf("session %q stored under %q", s.UploadID, id)
			}
			if len(h) != 3 || h["v"] == "" {
				t.Errorf("session hash has fields %v, want d, v, w", slices.Sorted(maps.Keys(h)))
			}
			wantW := ""
			if !s.SweepAt.IsZero() {
				entry, score := sweepEntry(s)
				wantW = entry
				got, err := c.ZScore(ctx, l.sweep(), entry).Result()
				if err != nil || got != score {
					t.Errorf("sweep index score of a session = %v, %v; want %v", got, err, score)
				}
			}
			if h["w"] != wantW {
				t.Errorf("session's sweep entry %q, want %q", h["w"], wantW)
			}
			if got, want := pexpireTime(t, c, k), wantExpireTime(s, margin); got != want {
				t.Errorf("session key expires at %d, want %d", got, want)
			}
		case strings.HasPrefix(rest, "slot:"):
			slots = append(slots, k)
		case strings.HasPrefix(rest, "slots:"):
			uploadSlots = append(uploadSlots, k)
		case rest == "sweep":
		default:
			t.Errorf("unexpected key %q", k)
		}
	}
	for _, k := range slots {
		id, err := c.Get(ctx, k).Result()
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		s, ok := sessions[id]
		if !ok {
			t.Errorf("slot mapped to a missing session")
			continue
		}
		// Every mapping is the slot the record names or is listed in the
		// upload's slot set (Delete finds it there).
		if k != l.slot(s.SlotKey) {
			if in, err := c.SIsMember(ctx, l.uploadSlots(id), k).Result(); err != nil || !in {
				t.Errorf("slot mapping other than the record's own missing from its upload's slot set: %v, %v", in, err)
			}
		}
		if got, want := pexpireTime(t, c, k), wantExpireTime(s, margin); got != want {
			t.Errorf("slot key expires at %d, want %d (its session's)", got, want)
		}
	}
	for _, k := range uploadSlots {
		id := strings.TrimPrefix(k, l.tagged()+"slots:")
		s, ok := sessions[id]
		if !ok {
			t.Errorf("slot set of a missing session")
			continue
		}
		members, err := c.SMembers(ctx, k).Result()
		if err != nil {
			t.Fatalf("SMEMBERS: %v", err)
		}
		for _, m := range members {
			if got, _ := c.Get(ctx, m).Result(); got != id {
				t.Errorf("slot set holds a slot mapped to %q", got)
			}
		}
		if got, want := pexpireTime(t, c, k), wantExpireTime(s, margin); got != want {
			t.Errorf("slot set expires at %d, want %d (its session's)", got, want)
		}
	}
	entries, err := c.ZRange(ctx, l.sweep(), 0, -1).Result()
	if err != nil {
		t.Fatalf("ZRANGE: %v", err)
	}
	want := 0
	for _, s := range sessions {
		if !s.SweepAt.IsZero() {
			want++
		}
	}
	if len(entries) != want {
		t.Errorf("%d sweep index entries for %d sessions with a sweep time", len(entries), want)
	}
	if pexpireTime(t, c, l.sweep()) > 0 {
		t.Errorf("the sweep index expires")
	}
}

// decodeRecord decodes a stored session record.
func decodeRecord(id, v string) (auth.Session, error) {
	s, err := record.Decode(id, []byte(v))
	if err != nil {
		return auth.Session{}, fmt.Errorf("decode record: %w", err)
	}
	return s, nil
}

func TestRedisStoreContract(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	n := 0
	sessiontest.Run(t, func(t *testing.T) auth.Store {
		n++
		prefix := fmt.Sprintf("contract%d:", n)
		st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
		t.Cleanup(func() {
			checkRedisKeys(t, client, prefix, redisstore.DefaultExpiryMargin)
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	})
}

func TestRedisStoreExpiry(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	noop := func(*auth.Session) error { return nil }

	t.Run("follows SweepAt", func(t *testing.T) {
		const prefix = "expiry:"
		l := redisLayout{prefix}
		st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
		s := sessiontest.Sample(1)
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		wantAt := func(s auth.Session) {
			t.Helper()
			want := wantExpireTime(s, 24*time.Hour)
			if want != -1 && want != s.SweepAt.Add(24*time.Hour).UnixMilli() {
				t.Fatalf("test bug: expiry %d", want)
			}
			for _, k := range []string{l.session(s.UploadID), l.slot(sessiontest.SlotKey(1)), l.uploadSlots(s.UploadID)} {
				got := pexpireTime(t, client, k)
				if got == -2 && k == l.uploadSlots(s.UploadID) && s.SlotKey == sessiontest.SlotKey(1) {
					continue // no slot set: the upload has no slot but the one its record names
				}
				if got != want {
					t.Errorf("%s expires at %d, want %d", strings.TrimPrefix(k, l.tagged()), got, want)
				}
			}
			checkRedisKeys(t, client, prefix, 24*time.Hour)
		}
		wantAt(s)

		// Later, then a rebind: every slot of the session moves along.
		s, err := st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.SweepAt = p.SweepAt.Add(5 * time.Hour); return nil })
		if err != nil {
			t.Fatal(err)
		}
		wantAt(s)
		s, err = st.Rebind(ctx, s.UploadID, sessiontest.SlotKey(2), func(p *auth.Session) error { p.SweepAt = p.SweepAt.Add(time.Hour); return nil })
		if err != nil {
			t.Fatal(err)
		}
		wantAt(s)
		if got, want := pexpireTime(t, client, l.slot(sessiontest.SlotKey(2))), wantExpireTime(s, 24*time.Hour); got != want {
			t.Errorf("re-bound slot expires at %d, want %d", got, want)
		}
		// A complete file kept forever: no expiry anywhere.
		s, err = st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.SweepAt = time.Time{}; return nil })
		if err != nil {
			t.Fatal(err)
		}
		wantAt(s)
		if got := pexpireTime(t, client, l.slot(sessiontest.SlotKey(2))); got != -1 {
			t.Errorf("re-bound slot of a session without SweepAt expires at %d", got)
		}
		// And back.
		s, err = st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.SweepAt = sessiontest.Sample(3).SweepAt; return nil })
		if err != nil {
			t.Fatal(err)
		}
		wantAt(s)
		// A session without SweepAt created as such.
		z := sessiontest.Sample(4)
		z.SweepAt = time.Time{}
		if _, _, err := st.Create(ctx, z); err != nil {
			t.Fatal(err)
		}
		if got := pexpireTime(t, client, l.session(z.UploadID)); got != -1 {
			t.Errorf("session without SweepAt expires at %d", got)
		}
		checkRedisKeys(t, client, prefix, 24*time.Hour)
	})

	t.Run("margin option", func(t *testing.T) {
		for _, margin := range []time.Duration{time.Hour, -1} {
			prefix := fmt.Sprintf("margin%d:", margin)
			st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, ExpiryMargin: margin})
			s := sessiontest.Sample(1)
			if _, _, err := st.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Rebind(ctx, s.UploadID, sessiontest.SlotKey(2), noop); err != nil {
				t.Fatal(err)
			}
			if got, want := pexpireTime(t, client, redisLayout{prefix}.session(s.UploadID)), wantExpireTime(s, margin); got != want {
				t.Errorf("margin %s: expires at %d, want %d", margin, got, want)
			}
			checkRedisKeys(t, client, prefix, margin)
		}
	})

	t.Run("Redis deletes what the clean-up missed", func(t *testing.T) {
		const prefix = "gone:"
		l := redisLayout{prefix}
		st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, ExpiryMargin: time.Hour})
		// Three sessions whose keys expire in 1.5 s, a due one that Redis
		// keeps for another 10 minutes, and one far in the future.
		now := time.Now()
		var gone []auth.Session
		for i := 1; i <= 3; i++ {
			s := sessiontest.Sample(i)
			s.SweepAt = now.Add(-time.Hour + 1500*time.Millisecond + time.Duration(i)*time.Millisecond)
			if _, _, err := st.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
			gone = append(gone, s)
		}
		if _, err := st.Rebind(ctx, gone[0].UploadID, sessiontest.SlotKey(10), noop); err != nil {
			t.Fatal(err)
		}
		due := sessiontest.Sample(4)
		due.SweepAt = now.Add(-time.Hour + 10*time.Minute)
		future := sessiontest.Sample(5)
		for _, s := range []auth.Session{due, future} {
			if _, _, err := st.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Get(ctx, gone[0].UploadID); err != nil {
			t.Fatalf("Get before the expiry: %v", err)
		}
		// Wait for the last of the three to expire (they are 1 ms apart).
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := st.Get(ctx, gone[len(gone)-1].UploadID)
			if errors.Is(err, auth.ErrSessionNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session still there long after its key expiry: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, s := range gone {
			if _, err := st.Get(ctx, s.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
				t.Errorf("Get after the session expired: %v", err)
			}
		}
		for _, k := range []string{sessiontest.SlotKey(1), sessiontest.SlotKey(2), sessiontest.SlotKey(3), sessiontest.SlotKey(10)} {
			if _, err := st.LookupSlot(ctx, k); !errors.Is(err, auth.ErrSessionNotFound) {
				t.Errorf("LookupSlot after the session expired: %v", err)
			}
		}
		// Their sweep index entries are left, ahead of the due session; Expired
		// removes them and still finds the due one, even with a small limit.
		if n, _ := client.ZCard(ctx, l.sweep()).Result(); n != 5 {
			t.Fatalf("sweep index has %d entries before Expired, want 5", n)
		}
		got, err := st.Expired(ctx, time.Now(), 2)
		if err != nil || len(got) != 1 || got[0].UploadID != due.UploadID {
			t.Fatalf("Expired = %v, %v; want only the due session", got, err)
		}
		entries, _ := client.ZRange(ctx, l.sweep(), 0, -1).Result()
		wantDue, _ := sweepEntry(due)
		wantFuture, _ := sweepEntry(future)
		if !slices.Equal(entries, []string{wantDue, wantFuture}) {
			t.Errorf("sweep index after Expired holds %d entries, want only the live sessions'", len(entries))
		}
		checkRedisKeys(t, client, prefix, time.Hour)
	})
}

func TestRedisStoreExpiredPrecision(t *testing.T) {
	// Sweep times within one millisecond (one score) still come in time order,
	// and "before t" holds to the nanosecond.
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	st := redisstore.New(client, redisstore.Options{KeyPrefix: "precision:"})
	at := time.Date(2031, 1, 2, 3, 4, 5, 7_000_000, time.UTC)
	// Upload ID order is the reverse of time order.
	var ids []string
	for i := range 6 {
		ids = append(ids, sessiontest.ID(i))
	}
	slices.Sort(ids)
	offsets := []time.Duration{900 * time.Microsecond, 500 * time.Microsecond, 3, 2, 1, -time.Nanosecond}
	for i, id := range ids {
		s := sessiontest.Sample(i)
		s.UploadID = id
		s.SweepAt = at.Add(offsets[i])
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	byTime := slices.Clone(ids)
	slices.Reverse(byTime) // -1ns, 1ns, 2ns, 3ns, 500µs, 900µs
	tests := []struct {
		t     time.Time
		limit int
		want  []string
	}{
		{at.Add(-time.Nanosecond), 10, nil},
		{at, 10, byTime[:1]},
		{at.Add(2), 10, byTime[:2]},
		{at.Add(3), 10, byTime[:3]},
		{at.Add(3 + 1), 10, byTime[:4]},
		{at.Add(3 + 1), 2, byTime[:2]},
		{at.Add(time.Millisecond), 10, byTime},
		{at.Add(time.Millisecond), 5, byTime[:5]},
	}
	for _, tc := range tests {
		due, err := st.Expired(ctx, tc.t, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range due {
			got = append(got, s.UploadID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Expired(at%+d, %d) = %d sessions, want %d in time order", tc.t.Sub(at), tc.limit, len(got), len(tc.want))
		}
	}
}

func TestRedisStoreSurvivesRestart(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	const prefix = "restart:"
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
	a, b := sessiontest.Sample(1), sessiontest.Sample(2)
	for _, s := range []auth.Session{a, b} {
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	for _, key := range []string{sessiontest.SlotKey(3), sessiontest.SlotKey(4)} {
		if _, err := st.Rebind(ctx, a.UploadID, key, func(s *auth.Session) error { s.Rebinds++; return nil }); err != nil {
			t.Fatalf("Rebind: %v", err)
		}
	}
	a.Rebinds += 2
	// appendfsync everysec: wait until the AOF has surely been synced.
	time.Sleep(1500 * time.Millisecond)
	srv.Restart()

	sessiontest.CheckKept(t, st, "after restart", []auth.Session{a, b}, map[string]string{
		sessiontest.SlotKey(1): a.UploadID,
		sessiontest.SlotKey(2): b.UploadID,
		sessiontest.SlotKey(3): a.UploadID,
		sessiontest.SlotKey(4): a.UploadID,
	})
	checkRedisKeys(t, client, prefix, redisstore.DefaultExpiryMargin)
	due, err := st.Expired(ctx, b.SweepAt.Add(time.Nanosecond), 10)
	if err != nil || len(due) != 2 || due[0].UploadID != a.UploadID || due[1].UploadID != b.UploadID {
		t.Errorf("Expired after restart = %v, %v; want both, oldest first", due, err)
	}
	// The restarted server has no scripts cached: writes load them again.
	if _, err := st.Update(ctx, b.UploadID, func(s *auth.Session) error { s.Addrs++; return nil }); err != nil {
		t.Fatalf("Update after restart: %v", err)
	}
	if err := st.Delete(ctx, a.UploadID); err != nil {
		t.Fatalf("Delete after restart: %v", err)
	}
	for _, key := range []string{sessiontest.SlotKey(1), sessiontest.SlotKey(3), sessiontest.SlotKey(4)} {
		if _, err := st.LookupSlot(ctx, key); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("LookupSlot after Delete: err = %v, want ErrSessionNotFound", err)
		}
	}
	if got, err := st.LookupSlot(ctx, sessiontest.SlotKey(2)); err != nil || got != b.UploadID {
		t.Errorf("LookupSlot of the other upload's slot after Delete = %q, %v; want %q", got, err, b.UploadID)
	}
	checkRedisKeys(t, client, prefix, redisstore.DefaultExpiryMargin)
}

// storeCalls calls every method of st once.
func storeCalls(st auth.Store) []struct {
	name string
	call func(context.Context) error
} {
	noop := func(p *auth.Session) error { p.Addrs++; return nil }
	return []struct {
		name string
		call func(context.Context) error
	}{
		{"Create", func(ctx context.Context) error { _, _, err := st.Create(ctx, sessiontest.Sample(2)); return err }},
		{"Get", func(ctx context.Context) error { _, err := st.Get(ctx, sessiontest.ID(1)); return err }},
		{"LookupSlot", func(ctx context.Context) error { _, err := st.LookupSlot(ctx, sessiontest.SlotKey(1)); return err }},
		{"Update", func(ctx context.Context) error { _, err := st.Update(ctx, sessiontest.ID(1), noop); return err }},
		{"Rebind", func(ctx context.Context) error {
			_, err := st.Rebind(ctx, sessiontest.ID(1), sessiontest.SlotKey(3), noop)
			return err
		}},
		{"Delete", func(ctx context.Context) error { return st.Delete(ctx, sessiontest.ID(1)) }},
		{"Expired", func(ctx context.Context) error {
			_, err := st.Expired(ctx, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 10)
			return err
		}},
		{"Ping", func(ctx context.Context) error { return st.Ping(ctx) }},
		{"CreateAtSlot", func(ctx context.Context) error {
			_, _, _, err := st.(auth.SlotCreator).CreateAtSlot(ctx, sessiontest.Sample(4))
			return err
		}},
	}
}

// fakeRedis serves a TCP listener with handle until t ends.
func fakeRedis(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// answerAll reads RESP commands from c and answers each with reply.
func answerAll(c net.Conn, reply string) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
		if !strings.HasPrefix(line, "*") || err != nil {
			return
		}
		for range n {
			hdr, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(hdr, "$") {
				return
			}
			size, err := strconv.Atoi(strings.TrimSpace(hdr[1:]))
			if err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, r, int64(size)+2); err != nil {
				return
			}
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

func TestRedisStoreUnavailable(t *testing.T) {
	// Every failure of Redis is ErrStoreUnavailable (503), never
	// ErrSessionNotFound (404), and comes within the client's timeouts.
	stopped := func(t *testing.T) string {
		srv := testredis.Start(t)
		st := redisstore.New(newRedisClient(t, srv.Addr), redisstore.Options{})
		if _, _, err := st.Create(context.Background(), sessiontest.Sample(1)); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		return srv.Addr
	}
	servers := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"stopped", stopped},
		{"not answering", func(t *testing.T) string {
			return fakeRedis(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
		}},
		{"loading", func(t *testing.T) string {
			return fakeRedis(t, func(c net.Conn) { answerAll(c, "-LOADING Redis is loading the dataset in memory\r\n") })
		}},
		{"read only replica", func(t *testing.T) string {
			return fakeRedis(t, func(c net.Conn) { answerAll(c, "-READONLY You can't write against a read only replica.\r\n") })
		}},
	}
	for _, srv := range servers {
		for _, sharded := range []bool{false, true} {
			name := srv.name
			if sharded {
				name += ", sharded layout"
			}
			t.Run(name, func(t *testing.T) {
				testUnavailable(t, redisstore.New(newRedisClient(t, srv.addr(t)), redisstore.Options{Sharded: sharded}))
			})
		}
	}
}

// testUnavailable checks every call of st on a Redis that fails.
func testUnavailable(t *testing.T, st *redisstore.Store) {
	for _, c := range storeCalls(st) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := c.call(ctx)
		elapsed := time.Since(start)
		cancel()
		if !errors.Is(err, auth.ErrStoreUnavailable) || errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("%s: err = %v, want ErrStoreUnavailable", c.name, err)
		}
		if elapsed > 2*time.Second {
			t.Errorf("%s failed only after %s", c.name, elapsed)
		}
		if err != nil && strings.Contains(err.Error(), sessiontest.ID(1)) {
			t.Errorf("%s: the error names the upload: %v", c.name, err)
		}
	}
}

func TestRedisStoreClose(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	st := redisstore.New(client, redisstore.Options{})
	if _, _, err := st.Create(ctx, sessiontest.Sample(1)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range storeCalls(st) {
		if err := c.call(ctx); !errors.Is(err, auth.ErrStoreUnavailable) {
			t.Errorf("%s after Close: err = %v, want ErrStoreUnavailable", c.name, err)
		}
	}
	// The client is the caller's and still works, and so does a new store on it.
	if err := client.Ping(ctx).Err(); err != nil {
		t.Errorf("client after the store's Close: %v", err)
	}
	if _, err := redisstore.New(client, redisstore.Options{}).Get(ctx, sessiontest.ID(1)); err != nil {
		t.Errorf("Get through a new store: %v", err)
	}
}

func TestRedisStoreKeyPrefix(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	def := redisstore.New(client, redisstore.Options{})
	other := redisstore.New(client, redisstore.Options{KeyPrefix: "other:"})
	s := sessiontest.Sample(1)
	if _, _, err := def.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(ctx, "uploadgate:{sessions}:session:"+s.UploadID).Result(); err != nil || n != 1 {
		t.Errorf("session key under the default prefix: %d, %v", n, err)
	}
	if _, err := other.Get(ctx, s.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Get under another prefix: err = %v, want ErrSessionNotFound", err)
	}
	checkRedisKeys(t, client, "uploadgate:", redisstore.DefaultExpiryMargin)
	for _, bad := range []string{"a{b}:", "x{", "}"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New accepted the key prefix %q", bad)
				}
			}()
			redisstore.New(client, redisstore.Options{KeyPrefix: bad})
		}()
	}
}

func TestRedisStoreSharedByInstances(t *testing.T) {
	// Two gateways, each with its own client, share sessions: writes from both
	// are atomic with respect to each other.
	srv := testredis.Start(t)
	ctx := context.Background()
	a := redisstore.New(newRedisClient(t, srv.Addr), redisstore.Options{})
	b := redisstore.New(newRedisClient(t, srv.Addr), redisstore.Options{})
	s := sessiontest.Sample(1)
	s.Rebinds = 0
	if _, _, err := a.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, s.UploadID); err != nil || !sessiontest.Equal(got, s) {
		t.Fatalf("Get from the other instance = %+v, %v", got, err)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			var err error
			if i%4 < 2 {
				_, err = st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.Rebinds++; return nil })
			} else {
				_, err = st.Rebind(ctx, s.UploadID, sessiontest.SlotKey(10+i), func(p *auth.Session) error { p.Rebinds++; return nil })
			}
			if err != nil {
				t.Errorf("write: %v", err)
			}
		})
	}
	wg.Wait()
	if got, err := a.Get(ctx, s.UploadID); err != nil || got.Rebinds != n {
		t.Errorf("after %d concurrent writes from two instances: Rebinds = %d, %v", n, got.Rebinds, err)
	}
	if err := b.Delete(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	client := newRedisClient(t, srv.Addr)
	checkRedisKeys(t, client, "uploadgate:", redisstore.DefaultExpiryMargin)
	if keys, err := client.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left after Delete: %d, %v", len(keys), err)
	}
}

// sessIDKey derives the upload IDs of the session manager's test.
var sessIDKey = []byte("0123456789abcdef0123456789abcdef")

func TestSessionsWithRedisStore(t *testing.T) {
	// The session manager end to end on Redis: open, touch, complete, rebind,
	// due, forget.
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	ctx := context.Background()
	const prefix = "manager:"
	l := redisLayout{prefix}
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
	clock := sessiontest.NewClock()
	p := auth.DefaultPolicy()
	m := auth.NewSessions(st, p, clock.Now)
	start := clock.Now()

	// A whole upload and a partial upload under one slot; another whole upload.
	slotA := sessiontest.Slot("d1/photo.jpg", 4096, "sig-a")
	whole, created, err := m.Open(ctx, slotA, auth.DeriveUploadID(sessIDKey, slotA.Path), auth.KindWhole, "192.0.2.1")
	if err != nil || !created {
		t.Fatalf("Open whole = %v, %v", created, err)
	}
	partialID, err := auth.NewRandomUploadID()
	if err != nil {
		t.Fatal(err)
	}
	partial, created, err := m.Open(ctx, slotA, partialID, auth.KindPartial, "192.0.2.1")
	if err != nil || !created {
		t.Fatalf("Open partial = %v, %v", created, err)
	}
	slotC := sessiontest.Slot("d3/doc.pdf", 10, "sig-c")
	other, _, err := m.Open(ctx, slotC, auth.DeriveUploadID(sessIDKey, slotC.Path), auth.KindWhole, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, created, err := m.Open(ctx, slotA, whole.UploadID, auth.KindWhole, "192.0.2.9"); err != nil || created || again.LastAddr != "192.0.2.1" {
		t.Fatalf("repeated Open = %v, %v, %v", created, again.LastAddr, err)
	}
	if got, err := m.AuthorizeSlot(ctx, slotA.Path); err != nil || got.UploadID != whole.UploadID {
		t.Fatalf("AuthorizeSlot = %v, %v", got.UploadID, err)
	}

	// Touch from a new address: deadlines and the key's expiry slide.
	clock.Advance(time.Hour)
	touched, changed, err := m.Touch(ctx, whole, "198.51.100.2")
	if err != nil || !changed || touched.Addrs != 1 {
		t.Fatalf("Touch = %v, %d, %v", changed, touched.Addrs, err)
	}
	if !touched.SweepAt.After(whole.SweepAt) {
		t.Fatalf("Touch did not move SweepAt")
	}
	if got, want := pexpireTime(t, client, l.session(whole.UploadID)), wantExpireTime(touched, redisstore.DefaultExpiryMargin); got != want {
		t.Errorf("after Touch the session expires at %d, want %d", got, want)
	}

	// Offline past the deadline, then back with a fresh slot: rebind.
	clock.Advance(30 * time.Hour)
	if _, err := m.Authorize(ctx, whole.UploadID); !errors.Is(err, auth.ErrSessionExpired) {
		t.Fatalf("Authorize after the deadline: err = %v", err)
	}
	slotB := sessiontest.Slot("d2/photo.jpg", 4096, "sig-b")
	rebound, err := m.Rebind(ctx, whole.UploadID, slotB, "203.0.113.3")
	if err != nil || rebound.Rebinds != 1 {
		t.Fatalf("Rebind = %d, %v", rebound.Rebinds, err)
	}
	for _, path := range []string{slotA.Path, slotB.Path} {
		if got, err := m.AuthorizeSlot(ctx, path); err != nil || got.UploadID != whole.UploadID {
			t.Errorf("AuthorizeSlot after Rebind = %v, %v", got.UploadID, err)
		}
	}
	// Open with the new slot finds the re-bound upload.
	if got, created, err := m.Open(ctx, slotB, auth.DeriveUploadID(sessIDKey, slotB.Path), auth.KindWhole, ""); err != nil || created || got.UploadID != whole.UploadID {
		t.Errorf("Open with the re-bound slot = %v, %v, %v", got.UploadID, created, err)
	}
	checkRedisKeys(t, client, prefix, redisstore.DefaultExpiryMargin)

	// Complete: a file kept forever, so no key expiry any more.
	done, err := m.Complete(ctx, whole.UploadID)
	if err != nil || !done.Complete || !done.SweepAt.IsZero() {
		t.Fatalf("Complete = %v, %v, %v", done.Complete, done.SweepAt, err)
	}
	for _, k := range []string{l.session(whole.UploadID), l.slot(auth.SlotKey(slotA.Path)), l.slot(auth.SlotKey(slotB.Path)), l.uploadSlots(whole.UploadID)} {
		if got := pexpireTime(t, client, k); got != -1 {
			t.Errorf("%s of a complete upload kept forever expires at %d", strings.TrimPrefix(k, l.tagged()), got)
		}
	}
	checkRedisKeys(t, client, prefix, redisstore.DefaultExpiryMargin)

	// Due: the abandoned uploads once their retention ended, oldest first.
	clock.Set(start.Add(p.IdleTTL + p.Retention - time.Minute))
	if due, err := m.Due(ctx, 10); err != nil || len(due) != 0 {
		t.Fatalf("Due before the retention ended = %d, %v", len(due), err)
	}
	clock.Set(start.Add(p.IdleTTL + p.Retention + time.Minute))
	due, err := m.Due(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range due {
		ids = append(ids, s.UploadID)
	}
	want := []string{partial.UploadID, other.UploadID}
	if partial.SweepAt.Equal(other.SweepAt) && other.UploadID < partial.UploadID {
		want = []string{other.UploadID, partial.UploadID}
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("Due = %v, want %v", ids, want)
	}
	for _, s := range due {
		for range 2 {
			if err := m.Forget(ctx, s.UploadID); err != nil {
				t.Fatalf("Forget: %v", err)
			}
		}
	}
	if due, err := m.Due(ctx, 10); err != nil || len(due) != 0 {
		t.Errorf("Due after Forget = %d, %v", len(due), err)
	}
	if _, err := m.AuthorizeSlot(ctx, slotC.Path); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("AuthorizeSlot of a forgotten upload: err = %v", err)
	}
	// The partial upload's slot still leads to the whole upload (whose session
	// has ended by now, though its file is kept).
	if got, err := m.AuthorizeSlot(ctx, slotA.Path); !errors.Is(err, auth.ErrSessionExpired) || got.UploadID != whole.UploadID {
		t.Errorf("AuthorizeSlot after forgetting the partial upload = %v, %v", got.UploadID, err)
	}
	if err := m.Forget(ctx, whole.UploadID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{slotA.Path, slotB.Path} {
		if _, err := m.AuthorizeSlot(ctx, path); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("AuthorizeSlot after Forget: err = %v", err)
		}
	}
	if err := m.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if keys, err := client.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left after every upload was forgotten: %v, %v", keys, err)
	}
}

package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// countingStore counts the writes that reach a Store (Create, Update, Rebind,
// Delete calls whose fn did not abort them).
type countingStore struct {
	auth.Store
	writes atomic.Int64
	gets   atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id string) (auth.Session, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *countingStore) Create(ctx context.Context, s auth.Session) (auth.Session, bool, error) {
	st, created, err := c.Store.Create(ctx, s)
	if created {
		c.writes.Add(1)
	}
	return st, created, err
}

func (c *countingStore) Update(ctx context.Context, id string, fn func(*auth.Session) error) (auth.Session, error) {
	s, err := c.Store.Update(ctx, id, fn)
	if err == nil {
		c.writes.Add(1)
	}
	return s, err
}

func (c *countingStore) Rebind(ctx context.Context, id, key string, fn func(*auth.Session) error) (auth.Session, error) {
	s, err := c.Store.Rebind(ctx, id, key, fn)
	if err == nil {
		c.writes.Add(1)
	}
	return s, err
}

func (c *countingStore) Delete(ctx context.Context, id string) error {
	c.writes.Add(1)
	return c.Store.Delete(ctx, id)
}

// sessEnv is a manager over a counting in-memory store with a fake clock.
type sessEnv struct {
	clock *sessiontest.Clock
	store *countingStore
	m     *auth.Sessions
}

func newSessEnv(t *testing.T, p auth.Policy) *sessEnv {
	t.Helper()
	mem := memstore.New()
	t.Cleanup(func() { mem.Close() })
	e := &sessEnv{clock: sessiontest.NewClock(), store: &countingStore{Store: mem}}
	e.m = auth.NewSessions(e.store, p, e.clock.Now)
	return e
}

// testSlot returns a verified v2 slot for path with a signature hash derived from sig.
var sessIDKey = []byte("0123456789abcdef0123456789abcdef")

func (e *sessEnv) open(t *testing.T, slot auth.Slot, addr string) auth.Session {
	t.Helper()
	s, created, err := e.m.Open(context.Background(), slot, auth.DeriveUploadID(sessIDKey, slot.Path), auth.KindWhole, addr)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !created {
		t.Fatalf("Open of a new upload: created = false")
	}
	return s
}

func (e *sessEnv) stored(t *testing.T, id string) auth.Session {
	t.Helper()
	s, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return s
}

func TestDefaultPolicy(t *testing.T) {
	want := auth.Policy{
		IdleTTL:       24 * time.Hour,
		MaxTTL:        72 * time.Hour,
		Retention:     7 * 24 * time.Hour,
		FileRetention: 0,
		TouchInterval: time.Minute,
		MaxRebinds:    3,
		MaxAge:        14 * 24 * time.Hour,
	}
	if got := auth.DefaultPolicy(); !reflect.DeepEqual(got, want) {
		t.Fatalf("DefaultPolicy() = %+v, want %+v", got, want)
	}
	tests := []struct {
		name string
		in   auth.Policy
		want auth.Policy
	}{
		{"zero takes defaults", auth.Policy{}, want},
		{"negative durations take defaults", auth.Policy{IdleTTL: -1, MaxTTL: -1, Retention: -1, TouchInterval: -1, MaxAge: -1, FileRetention: -1, History: -1}, want},
		{"negative MaxRebinds allows none", auth.Policy{MaxRebinds: -1}, func() auth.Policy { p := want; p.MaxRebinds = 0; return p }()},
		{"set values kept", auth.Policy{IdleTTL: time.Hour, MaxTTL: 2 * time.Hour, Retention: 3 * time.Hour, FileRetention: 4 * time.Hour, TouchInterval: time.Second, MaxRebinds: 9, MaxAge: 5 * time.Hour},
			auth.Policy{IdleTTL: time.Hour, MaxTTL: 2 * time.Hour, Retention: 3 * time.Hour, FileRetention: 4 * time.Hour, TouchInterval: time.Second, MaxRebinds: 9, MaxAge: 5 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.NewSessions(memstore.New(), tc.in, nil).Policy(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Policy() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpenFields(t *testing.T) {
	tests := []struct {
		name     string
		policy   auth.Policy
		idle     time.Duration // after now
		abs      time.Duration
		retained time.Duration // SweepAt after now
	}{
		{"defaults", auth.DefaultPolicy(), 24 * time.Hour, 72 * time.Hour, 24*time.Hour + 7*24*time.Hour},
		{"idle capped by max", auth.Policy{IdleTTL: 5 * time.Hour, MaxTTL: 2 * time.Hour, Retention: time.Hour}, 2 * time.Hour, 2 * time.Hour, 3 * time.Hour},
		{"max capped by max age", auth.Policy{IdleTTL: 5 * time.Hour, MaxTTL: 10 * time.Hour, MaxAge: 4 * time.Hour, Retention: time.Hour}, 4 * time.Hour, 4 * time.Hour, 5 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, tc.policy)
			now := e.clock.Now()
			slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
			slot.Protocol = auth.ProtoJWT
			slot.Subject = "alice@example.org"
			slot.FileExpires = now.Add(30 * 24 * time.Hour)
			id := auth.DeriveUploadID(sessIDKey, slot.Path)
			got, created, err := e.m.Open(context.Background(), slot, id, auth.KindWhole, "192.0.2.1")
			if err != nil || !created {
				t.Fatalf("Open = %v, %v", created, err)
			}
			want := auth.Session{
				UploadID:      id,
				SlotKey:       auth.SlotKey(slot.Path),
				SlotPath:      slot.Path,
				Kind:          auth.KindWhole,
				Protocol:      auth.ProtoJWT,
				Subject:       "alice@example.org",
				SignatureHash: slot.SignatureHash,
				Size:          4096,
				Type:          "image/jpeg",
				Created:       now,
				LastSeen:      now,
				IdleDeadline:  now.Add(tc.idle),
				AbsDeadline:   now.Add(tc.abs),
				FileExpires:   slot.FileExpires,
				FirstCreated:  now,
				SweepAt:       now.Add(tc.retained),
				LastAddr:      "192.0.2.1",
			}
			if !sessiontest.Equal(got, want) {
				t.Errorf("Open returned\n%+v\nwant\n%+v", got, want)
			}
			if stored := e.stored(t, id); !sessiontest.Equal(stored, want) {
				t.Errorf("stored\n%+v\nwant\n%+v", stored, want)
			}
			if mapped, err := e.store.LookupSlot(context.Background(), auth.SlotKey(slot.Path)); err != nil || mapped != id {
				t.Errorf("slot mapped to %q, %v; want the upload", mapped, err)
			}
		})
	}
}

func TestOpenRepeated(t *testing.T) {
	e := newSessEnv(t, auth.DefaultPolicy())
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
	first := e.open(t, slot, "192.0.2.1")
	e.clock.Advance(time.Hour)
	writes := e.store.writes.Load()
	// Same upload again (a retry, or the loser of a race), even with another
	// slot signature and address: the first session, unchanged.
	again, created, err := e.m.Open(context.Background(), sessiontest.Slot(slot.Path, 4096, "sig-2"), first.UploadID, auth.KindWhole, "198.51.100.9")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if created {
		t.Error("repeated Open: created = true")
	}
	if !sessiontest.Equal(again, first) {
		t.Errorf("repeated Open returned\n%+v\nwant\n%+v", again, first)
	}
	if w := e.store.writes.Load() - writes; w != 0 {
		t.Errorf("repeated Open wrote %d times", w)
	}
}

func TestOpenConcurrent(t *testing.T) {
	e := newSessEnv(t, auth.DefaultPolicy())
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
	id := auth.DeriveUploadID(sessIDKey, slot.Path)
	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		created atomic.Int64
		got     [n]auth.Session
	)
	for i := range n {
		wg.Go(func() {
			<-start
			s, c, err := e.m.Open(context.Background(), slot, id, auth.KindWhole, fmt.Sprintf("203.0.113.%d", i))
			if err != nil {
				t.Errorf("Open: %v", err)
			}
			if c {
				created.Add(1)
			}
			got[i] = s
		})
	}
	close(start)
	wg.Wait()
	if c := created.Load(); c != 1 {
		t.Fatalf("%d of %d concurrent Opens created the session, want 1", c, n)
	}
	stored := e.stored(t, id)
	for i := range n {
		if !sessiontest.Equal(got[i], stored) {
			t.Errorf("Open %d returned a session that differs from the stored one", i)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	e := newSessEnv(t, auth.DefaultPolicy())
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
	id := auth.DeriveUploadID(sessIDKey, slot.Path)
	tests := []struct {
		name string
		slot auth.Slot
		id   string
		kind auth.Kind
	}{
		{"empty id", slot, "", auth.KindWhole},
		{"malformed id", slot, "../../etc/passwd", auth.KindWhole},
		{"upper-case id", slot, strings.ToUpper(id), auth.KindWhole},
		{"unknown kind", slot, id, auth.Kind("final")},
		{"slot without path", auth.Slot{Protocol: auth.ProtoV2, Size: 1}, id, auth.KindWhole},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.m.Open(context.Background(), tc.slot, tc.id, tc.kind, ""); err == nil {
				t.Fatal("Open succeeded")
			}
			if w := e.store.writes.Load(); w != 0 {
				t.Fatalf("a rejected Open wrote %d times", w)
			}
		})
	}
}

func TestOpenPartialUploads(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
	var partials []string
	for range 3 {
		id, err := auth.NewRandomUploadID()
		if err != nil {
			t.Fatal(err)
		}
		s, created, err := e.m.Open(ctx, slot, id, auth.KindPartial, "192.0.2.1")
		if err != nil || !created {
			t.Fatalf("Open of a partial upload = %v, %v", created, err)
		}
		if s.Kind != auth.KindPartial || s.SlotKey != auth.SlotKey(slot.Path) {
			t.Fatalf("partial session %+v", s)
		}
		partials = append(partials, id)
	}
	// The partial uploads do not take the slot: the whole upload does.
	whole := e.open(t, slot, "192.0.2.1")
	for _, id := range append(partials, whole.UploadID) {
		if _, err := e.m.Authorize(ctx, id); err != nil {
			t.Errorf("Authorize: %v", err)
		}
	}
	got, err := e.m.AuthorizeSlot(ctx, slot.Path)
	if err != nil || got.UploadID != whole.UploadID {
		t.Fatalf("AuthorizeSlot = %q, %v; want the whole upload", got.UploadID, err)
	}
	// A partial upload is not re-bound.
	if _, err := e.m.Rebind(ctx, partials[0], sessiontest.Slot("d2/photo.jpg", 4096, "sig-2"), ""); !errors.Is(err, auth.ErrRebindMismatch) {
		t.Errorf("Rebind of a partial upload: err = %v, want ErrRebindMismatch", err)
	}
}

func TestAuthorizeExpiry(t *testing.T) {
	ctx := context.Background()
	p := auth.Policy{IdleTTL: 10 * time.Hour, MaxTTL: 25 * time.Hour, TouchInterval: time.Minute}
	tests := []struct {
		name    string
		touches []time.Duration // offsets from Open at which a request succeeds
		at      time.Duration
		wantErr error
	}{
		{"at open", nil, 0, nil},
		{"just before idle", nil, 10*time.Hour - time.Nanosecond, nil},
		{"at idle deadline", nil, 10 * time.Hour, auth.ErrSessionExpired},
		{"slid by a touch", []time.Duration{9 * time.Hour}, 18 * time.Hour, nil},
		{"slid idle then expired", []time.Duration{9 * time.Hour}, 19 * time.Hour, auth.ErrSessionExpired},
		{"absolute cap despite touches", []time.Duration{8 * time.Hour, 16 * time.Hour, 24 * time.Hour}, 25 * time.Hour, auth.ErrSessionExpired},
		{"just before the cap", []time.Duration{8 * time.Hour, 16 * time.Hour, 24 * time.Hour}, 25*time.Hour - time.Nanosecond, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, p)
			start := e.clock.Now()
			s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "")
			for _, at := range tc.touches {
				e.clock.Set(start.Add(at))
				cur, err := e.m.Authorize(ctx, s.UploadID)
				if err != nil {
					t.Fatalf("Authorize before touch at %s: %v", at, err)
				}
				if _, _, err := e.m.Touch(ctx, cur, ""); err != nil {
					t.Fatalf("Touch at %s: %v", at, err)
				}
			}
			e.clock.Set(start.Add(tc.at))
			got, err := e.m.Authorize(ctx, s.UploadID)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Authorize = %v, want %v", err, tc.wantErr)
			}
			if got.UploadID != s.UploadID {
				t.Errorf("Authorize returned session %q, want the upload's even when expired", got.UploadID)
			}
		})
	}
}

func TestAuthorizeNotFound(t *testing.T) {
	e := newSessEnv(t, auth.DefaultPolicy())
	if _, err := e.m.Authorize(context.Background(), auth.DeriveUploadID(sessIDKey, "nope")); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Authorize of an unknown upload: err = %v, want ErrSessionNotFound", err)
	}
	if _, err := e.m.AuthorizeSlot(context.Background(), "nope/x"); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("AuthorizeSlot of an unknown slot: err = %v, want ErrSessionNotFound", err)
	}
}

func TestTouchSlides(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{IdleTTL: 10 * time.Hour, MaxTTL: 25 * time.Hour, TouchInterval: time.Minute, Retention: time.Hour})
	start := e.clock.Now()
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "a")
	steps := []struct {
		at       time.Duration
		wantIdle time.Duration
	}{
		{2 * time.Hour, 12 * time.Hour},
		{9 * time.Hour, 19 * time.Hour},
		{18 * time.Hour, 25 * time.Hour}, // capped by the absolute deadline
		{24 * time.Hour, 25 * time.Hour},
	}
	for _, st := range steps {
		e.clock.Set(start.Add(st.at))
		got, changed, err := e.m.Touch(ctx, s, "a")
		if err != nil || changed {
			t.Fatalf("Touch at %s = %v, %v", st.at, changed, err)
		}
		stored := e.stored(t, s.UploadID)
		if !stored.IdleDeadline.Equal(start.Add(st.wantIdle)) || !stored.LastSeen.Equal(start.Add(st.at)) {
			t.Errorf("after Touch at %s: idle %s, last seen %s; want idle %s", st.at,
				stored.IdleDeadline.Sub(start), stored.LastSeen.Sub(start), st.wantIdle)
		}
		if !stored.AbsDeadline.Equal(start.Add(25 * time.Hour)) {
			t.Errorf("Touch moved the absolute deadline to %s", stored.AbsDeadline.Sub(start))
		}
		if want := stored.Deadline().Add(time.Hour); !stored.SweepAt.Equal(want) {
			t.Errorf("SweepAt %s, want deadline + retention %s", stored.SweepAt.Sub(start), want.Sub(start))
		}
		if !sessiontest.Equal(got, stored) {
			t.Errorf("Touch returned\n%+v\nbut stored\n%+v", got, stored)
		}
		s = got
	}
}

func TestTouchThrottle(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{TouchInterval: time.Minute})
	start := e.clock.Now()
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "192.0.2.1")
	steps := []struct {
		name        string
		at          time.Duration
		addr        string
		wantWrite   bool
		wantChanged bool
	}{
		{"within interval", 30 * time.Second, "192.0.2.1", false, false},
		{"again within interval", 59 * time.Second, "192.0.2.1", false, false},
		{"interval passed", 61 * time.Second, "192.0.2.1", true, false},
		{"address change within interval", 62 * time.Second, "198.51.100.2", true, true},
		{"same new address", 63 * time.Second, "198.51.100.2", false, false},
		{"no address known", 64 * time.Second, "", false, false},
		{"changed back", 65 * time.Second, "192.0.2.1", true, true},
		{"exactly one interval later", 125 * time.Second, "192.0.2.1", true, false},
	}
	wantAddrs := 0
	for _, st := range steps {
		e.clock.Set(start.Add(st.at))
		cur, err := e.m.Authorize(ctx, s.UploadID)
		if err != nil {
			t.Fatalf("%s: Authorize: %v", st.name, err)
		}
		before := e.store.writes.Load()
		_, changed, err := e.m.Touch(ctx, cur, st.addr)
		if err != nil {
			t.Fatalf("%s: Touch: %v", st.name, err)
		}
		if wrote := e.store.writes.Load() > before; wrote != st.wantWrite {
			t.Errorf("%s: wrote = %v, want %v", st.name, wrote, st.wantWrite)
		}
		if changed != st.wantChanged {
			t.Errorf("%s: address changed = %v, want %v", st.name, changed, st.wantChanged)
		}
		if changed {
			wantAddrs++
		}
		if got := e.stored(t, s.UploadID).Addrs; got != wantAddrs {
			t.Errorf("%s: Addrs = %d, want %d", st.name, got, wantAddrs)
		}
	}
}

func TestTouchStaleCopy(t *testing.T) {
	// Two requests authorised with the same copy finish one after the other:
	// the second sees in the store that the first already wrote.
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{TouchInterval: time.Minute})
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "192.0.2.1")
	e.clock.Advance(2 * time.Minute)
	for i, wantChanged := range []bool{true, false} {
		before := e.store.writes.Load()
		_, changed, err := e.m.Touch(ctx, s, "198.51.100.2")
		if err != nil {
			t.Fatalf("Touch %d: %v", i, err)
		}
		if changed != wantChanged {
			t.Errorf("Touch %d: changed = %v, want %v", i, changed, wantChanged)
		}
		if wrote := e.store.writes.Load() > before; wrote != wantChanged {
			t.Errorf("Touch %d: wrote = %v, want %v", i, wrote, wantChanged)
		}
	}
	if got := e.stored(t, s.UploadID).Addrs; got != 1 {
		t.Errorf("Addrs = %d, want 1", got)
	}
}

func TestTouchConcurrentAddressChange(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{TouchInterval: time.Minute})
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "192.0.2.1")
	const n = 20
	var (
		wg      sync.WaitGroup
		changed atomic.Int64
	)
	for range n {
		wg.Go(func() {
			_, c, err := e.m.Touch(ctx, s, "198.51.100.2")
			if err != nil {
				t.Errorf("Touch: %v", err)
			}
			if c {
				changed.Add(1)
			}
		})
	}
	wg.Wait()
	if c := changed.Load(); c != 1 {
		t.Errorf("%d concurrent Touches from one new address report a change, want 1", c)
	}
	if got := e.stored(t, s.UploadID).Addrs; got != 1 {
		t.Errorf("Addrs = %d, want 1", got)
	}
}

func TestTouchNeverResurrects(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		keepAlive bool // touch every 8 h until the absolute deadline
		wait      time.Duration
	}{
		{"idle expired", false, 10 * time.Hour},
		{"absolute expired", true, 30 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, auth.Policy{IdleTTL: 10 * time.Hour, MaxTTL: 25 * time.Hour})
			s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "192.0.2.1")
			if tc.keepAlive {
				for range 3 {
					e.clock.Advance(8 * time.Hour)
					if _, _, err := e.m.Touch(ctx, e.stored(t, s.UploadID), ""); err != nil {
						t.Fatal(err)
					}
				}
				e.clock.Advance(tc.wait - 24*time.Hour)
			} else {
				e.clock.Advance(tc.wait)
			}
			before := e.stored(t, s.UploadID)
			writes := e.store.writes.Load()
			for _, addr := range []string{"192.0.2.1", "198.51.100.2"} {
				got, changed, err := e.m.Touch(ctx, s, addr)
				if !errors.Is(err, auth.ErrSessionExpired) {
					t.Fatalf("Touch of an expired session: err = %v, want ErrSessionExpired", err)
				}
				if changed || !sessiontest.Equal(got, before) {
					t.Errorf("Touch of an expired session returned changed=%v, %+v", changed, got)
				}
			}
			if w := e.store.writes.Load() - writes; w != 0 {
				t.Errorf("Touch of an expired session wrote %d times", w)
			}
			if !sessiontest.Equal(e.stored(t, s.UploadID), before) {
				t.Error("Touch changed an expired session")
			}
		})
	}
}

func TestComplete(t *testing.T) {
	ctx := context.Background()
	fileExpires := sessiontest.NewClock().Now().Add(48 * time.Hour)
	tests := []struct {
		name          string
		kind          auth.Kind
		fileExpires   time.Time
		fileRetention time.Duration
		history       time.Duration
		keepFile      bool
		wantSweep     func(now time.Time, s auth.Session) time.Time
	}{
		{"slot gave an expiry", auth.KindWhole, fileExpires, 24 * time.Hour, 0, false, func(time.Time, auth.Session) time.Time { return fileExpires }},
		{"slot gave an expiry, history bound", auth.KindWhole, fileExpires, 0, time.Hour, false, func(time.Time, auth.Session) time.Time { return fileExpires }},
		{"file retention", auth.KindWhole, time.Time{}, 24 * time.Hour, 0, false, func(now time.Time, _ auth.Session) time.Time { return now.Add(24 * time.Hour) }},
		{"file retention, history bound", auth.KindWhole, time.Time{}, 24 * time.Hour, time.Hour, false, func(now time.Time, _ auth.Session) time.Time { return now.Add(24 * time.Hour) }},
		{"kept forever", auth.KindWhole, time.Time{}, 0, 0, false, func(time.Time, auth.Session) time.Time { return time.Time{} }},
		{"kept forever, record for the history", auth.KindWhole, time.Time{}, 0, 100 * time.Hour, true, func(now time.Time, _ auth.Session) time.Time { return now.Add(100 * time.Hour) }},
		{"kept forever, record until the session ends", auth.KindWhole, time.Time{}, 0, time.Hour, true, func(_ time.Time, s auth.Session) time.Time { return s.AbsDeadline }},
		{"partial upload swept like an incomplete one", auth.KindPartial, fileExpires, 24 * time.Hour, 0, false,
			func(_ time.Time, s auth.Session) time.Time { return s.Deadline().Add(auth.DefaultRetention) }},
		{"partial upload swept like an incomplete one, history bound", auth.KindPartial, time.Time{}, 0, time.Hour, false,
			func(_ time.Time, s auth.Session) time.Time { return s.Deadline().Add(auth.DefaultRetention) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, auth.Policy{FileRetention: tc.fileRetention, History: tc.history})
			slot := sessiontest.Slot("d1/photo.jpg", 1, "sig")
			slot.FileExpires = tc.fileExpires
			id := auth.DeriveUploadID(sessIDKey, slot.Path)
			if tc.kind == auth.KindPartial {
				var err error
				if id, err = auth.NewRandomUploadID(); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := e.m.Open(ctx, slot, id, tc.kind, ""); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour)
			now := e.clock.Now()
			got, err := e.m.Complete(ctx, id)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if !got.Complete || !got.CompletedAt.Equal(now) {
				t.Errorf("Complete returned complete=%v at %v", got.Complete, got.CompletedAt)
			}
			if want := tc.wantSweep(now, got); !got.SweepAt.Equal(want) {
				t.Errorf("SweepAt = %v, want %v", got.SweepAt, want)
			}
			if got.KeepFile != tc.keepFile {
				t.Errorf("KeepFile = %v, want %v", got.KeepFile, tc.keepFile)
			}
			if tc.kind == auth.KindWhole {
				// Only what later requests read stays (the slot path while
				// the clean-up still has to look at it).
				if got.SignatureHash != ([32]byte{}) || got.Type != "" || !got.Created.IsZero() || !got.FirstCreated.IsZero() {
					t.Errorf("complete record keeps what no request reads: %+v", got)
				}
				if (got.SlotPath != "") != tc.keepFile || (got.Protocol != "") != tc.keepFile {
					t.Errorf("complete record: slot path %q, protocol %q; want them kept only for the clean-up", got.SlotPath, got.Protocol)
				}
				if got.SlotKey != auth.SlotKey(slot.Path) || got.Size != slot.Size || got.Kind != auth.KindWhole || got.AbsDeadline.IsZero() || got.IdleDeadline.IsZero() {
					t.Errorf("complete record lost what requests read: %+v", got)
				}
			}
			if !sessiontest.Equal(e.stored(t, id), got) {
				t.Error("Complete returned a session other than the stored one")
			}
			// Idempotent: nothing changes, nothing is written.
			e.clock.Advance(time.Hour)
			writes := e.store.writes.Load()
			again, err := e.m.Complete(ctx, id)
			if err != nil {
				t.Fatalf("second Complete: %v", err)
			}
			if !sessiontest.Equal(again, got) {
				t.Errorf("second Complete returned\n%+v\nwant\n%+v", again, got)
			}
			if w := e.store.writes.Load() - writes; w != 0 {
				t.Errorf("second Complete wrote %d times", w)
			}
			// A later touch does not move the file's sweep time.
			if tc.kind == auth.KindWhole {
				e.clock.Advance(time.Hour)
				touched, _, err := e.m.Touch(ctx, got, "198.51.100.3")
				if err != nil {
					t.Fatal(err)
				}
				if !touched.SweepAt.Equal(got.SweepAt) {
					t.Errorf("Touch of a complete upload moved SweepAt to %v", touched.SweepAt)
				}
			}
		})
	}
	e := newSessEnv(t, auth.DefaultPolicy())
	if _, err := e.m.Complete(ctx, auth.DeriveUploadID(sessIDKey, "missing")); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Complete of a missing session: err = %v, want ErrSessionNotFound", err)
	}
}

func TestRebind(t *testing.T) {
	ctx := context.Background()
	p := auth.Policy{IdleTTL: 10 * time.Hour, MaxTTL: 20 * time.Hour, Retention: 48 * time.Hour, MaxRebinds: 2, MaxAge: 100 * time.Hour}
	orig := sessiontest.Slot("d1/photo.jpg", 4096, "sig-orig")
	fresh := sessiontest.Slot("d2/photo.jpg", 4096, "sig-fresh")
	fresh.Protocol = auth.ProtoJWT
	fresh.Subject = "alice@example.org"
	withSize := func(s auth.Slot, size int64) auth.Slot { s.Size = size; return s }
	withType := func(s auth.Slot, typ string) auth.Slot { s.Type = typ; return s }
	withPath := func(s auth.Slot, path string) auth.Slot { s.Path = path; return s }
	tests := []struct {
		name     string
		prepare  func(t *testing.T, e *sessEnv, s auth.Session) // runs after Open, before the clock advances by wait
		wait     time.Duration
		slot     auth.Slot
		wantErr  error
		wantBind bool // a successful, counting rebind
	}{
		{"live session", nil, time.Hour, fresh, nil, true},
		{"after idle expiry", nil, 12 * time.Hour, fresh, nil, true},
		{"long after expiry, within retention", nil, 50 * time.Hour, fresh, nil, true},
		{"retention ended", nil, 10*time.Hour + 48*time.Hour, fresh, auth.ErrSessionExpired, false},
		{"v3 slot signs no size", nil, 12 * time.Hour, withSize(fresh, -1), nil, true},
		{"no type signed", nil, 12 * time.Hour, withType(fresh, ""), nil, true},
		{"other size", nil, 12 * time.Hour, withSize(fresh, 4097), auth.ErrRebindMismatch, false},
		{"other type", nil, 12 * time.Hour, withType(fresh, "text/html"), auth.ErrRebindMismatch, false},
		{"other file name", nil, 12 * time.Hour, withPath(fresh, "d2/photo.png"), auth.ErrRebindMismatch, false},
		{"file name differs in case", nil, 12 * time.Hour, withPath(fresh, "d2/Photo.jpg"), auth.ErrRebindMismatch, false},
		{"file name is a directory of the slot", nil, 12 * time.Hour, withPath(fresh, "photo.jpg/x"), auth.ErrRebindMismatch, false},
		{"same file name, deeper slot directory", nil, 12 * time.Hour, withPath(fresh, "u1/d2/photo.jpg"), nil, true},
		{"complete", func(t *testing.T, e *sessEnv, s auth.Session) {
			if _, err := e.m.Complete(ctx, s.UploadID); err != nil {
				t.Fatal(err)
			}
		}, 12 * time.Hour, fresh, auth.ErrUploadComplete, false},
		{"limit reached", func(t *testing.T, e *sessEnv, s auth.Session) {
			for i := range 2 {
				if _, err := e.m.Rebind(ctx, s.UploadID, sessiontest.Slot(fmt.Sprintf("x%d/photo.jpg", i), 4096, fmt.Sprint(i)), ""); err != nil {
					t.Fatal(err)
				}
			}
		}, time.Hour, fresh, auth.ErrRebindLimit, false},
		{"deadline capped by max age", func(t *testing.T, e *sessEnv, s auth.Session) {
			// re-bound at 50 h: deadline 60 h, retained until 108 h
			e.clock.Advance(50 * time.Hour)
			if _, err := e.m.Rebind(ctx, s.UploadID, sessiontest.Slot("x/photo.jpg", 4096, "x"), ""); err != nil {
				t.Fatal(err)
			}
		}, 35 * time.Hour, fresh, nil, true},
		{"too old", func(t *testing.T, e *sessEnv, s auth.Session) {
			e.clock.Advance(50 * time.Hour)
			if _, err := e.m.Rebind(ctx, s.UploadID, sessiontest.Slot("x/photo.jpg", 4096, "x"), ""); err != nil {
				t.Fatal(err)
			}
		}, 50 * time.Hour, fresh, auth.ErrRebindLimit, false},
		{"same slot while live: no-op", nil, time.Hour, orig, nil, false},
		{"same slot after expiry counts", nil, 12 * time.Hour, orig, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newSessEnv(t, p)
			s := e.open(t, orig, "192.0.2.1")
			if tc.prepare != nil {
				tc.prepare(t, e, s)
			}
			e.clock.Advance(tc.wait)
			before := e.stored(t, s.UploadID)
			now := e.clock.Now()
			got, err := e.m.Rebind(ctx, s.UploadID, tc.slot, "198.51.100.2")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Rebind: err = %v, want %v", err, tc.wantErr)
				}
				if !sessiontest.Equal(e.stored(t, s.UploadID), before) {
					t.Error("a refused Rebind changed the session")
				}
				if tc.slot.Path != orig.Path {
					if _, err := e.store.LookupSlot(ctx, auth.SlotKey(tc.slot.Path)); !errors.Is(err, auth.ErrSessionNotFound) {
						t.Errorf("a refused Rebind mapped the slot: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Rebind: %v", err)
			}
			if !sessiontest.Equal(got, e.stored(t, s.UploadID)) {
				t.Error("Rebind returned a session other than the stored one")
			}
			if !tc.wantBind {
				if !sessiontest.Equal(got, before) {
					t.Errorf("no-op Rebind changed the session:\n%+v\nwant\n%+v", got, before)
				}
				return
			}
			if got.Rebinds != before.Rebinds+1 {
				t.Errorf("Rebinds = %d, want %d", got.Rebinds, before.Rebinds+1)
			}
			if !got.Live(now) {
				t.Error("a re-bound session is not live")
			}
			wantAbs := minT(now.Add(20*time.Hour), got.FirstCreated.Add(100*time.Hour))
			if tc.name == "deadline capped by max age" && !wantAbs.Equal(got.FirstCreated.Add(100*time.Hour)) {
				t.Fatal("test case does not reach the max age cap")
			}
			if !got.AbsDeadline.Equal(wantAbs) || !got.IdleDeadline.Equal(minT(now.Add(10*time.Hour), wantAbs)) {
				t.Errorf("deadlines idle %v abs %v, want abs %v", got.IdleDeadline, got.AbsDeadline, wantAbs)
			}
			if !got.SweepAt.Equal(got.Deadline().Add(48 * time.Hour)) {
				t.Errorf("SweepAt %v, want deadline + retention", got.SweepAt)
			}
			if !got.FirstCreated.Equal(s.FirstCreated) || !got.Created.Equal(now) {
				t.Errorf("FirstCreated %v, Created %v; want first kept, created now", got.FirstCreated, got.Created)
			}
			if got.SignatureHash != tc.slot.SignatureHash || got.Protocol != tc.slot.Protocol || got.Subject != tc.slot.Subject ||
				got.SlotPath != tc.slot.Path || got.SlotKey != auth.SlotKey(tc.slot.Path) {
				t.Errorf("Rebind did not take the slot's identity: %+v", got)
			}
			if got.Size != 4096 || got.Type != "image/jpeg" {
				t.Errorf("Rebind changed size/type to %d %q", got.Size, got.Type)
			}
			if got.LastAddr != "198.51.100.2" || got.Addrs != before.Addrs+1 {
				t.Errorf("address %q, %d changes", got.LastAddr, got.Addrs)
			}
			if got.UploadID != s.UploadID {
				t.Errorf("Rebind changed the upload ID")
			}
			for _, path := range []string{orig.Path, tc.slot.Path} {
				if id, err := e.store.LookupSlot(ctx, auth.SlotKey(path)); err != nil || id != s.UploadID {
					t.Errorf("slot %q mapped to %q, %v; want the upload", path, id, err)
				}
			}
			if a, err := e.m.AuthorizeSlot(ctx, tc.slot.Path); err != nil || a.UploadID != s.UploadID {
				t.Errorf("AuthorizeSlot of the new slot = %q, %v", a.UploadID, err)
			}
		})
	}
}

func minT(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func TestRebindIdempotent(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 4096, "sig-orig"), "")
	e.clock.Advance(30 * time.Hour) // idle-expired
	fresh := sessiontest.Slot("d2/photo.jpg", 4096, "sig-fresh")
	first, err := e.m.Rebind(ctx, s.UploadID, fresh, "192.0.2.9")
	if err != nil {
		t.Fatalf("Rebind: %v", err)
	}
	// The response was lost; the client retries, a little later.
	e.clock.Advance(time.Second)
	writes := e.store.writes.Load()
	again, err := e.m.Rebind(ctx, s.UploadID, fresh, "192.0.2.9")
	if err != nil {
		t.Fatalf("repeated Rebind: %v", err)
	}
	if !sessiontest.Equal(again, first) || again.Rebinds != 1 {
		t.Errorf("repeated Rebind returned\n%+v\nwant\n%+v", again, first)
	}
	if w := e.store.writes.Load() - writes; w != 0 {
		t.Errorf("repeated Rebind wrote %d times", w)
	}
}

// TestRebindSubject: between JWT slots, a re-bind needs the same uploader.
// The uploader a JWT slot named cannot change through a re-bind by a slot
// that names none: JWT(alice) -> v2 -> JWT(mallory) is refused at the last step.
func TestRebindSubjectKeptAcrossUnnamedSlot(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	alice := sessiontest.Slot("d1/photo.jpg", 4096, "a")
	alice.Protocol, alice.Subject = auth.ProtoJWT, "alice@example.org"
	s := e.open(t, alice, "")
	e.clock.Advance(30 * time.Hour)
	s, err := e.m.Rebind(ctx, s.UploadID, sessiontest.Slot("d2/photo.jpg", 4096, "b"), "")
	if err != nil || s.Subject != "alice@example.org" {
		t.Fatalf("re-bind to a v2 slot: %v, Subject %q", err, s.Subject)
	}
	e.clock.Advance(80 * time.Hour)
	mallory := sessiontest.Slot("d3/photo.jpg", 4096, "c")
	mallory.Protocol, mallory.Subject = auth.ProtoJWT, "mallory@example.org"
	if _, err := e.m.Rebind(ctx, s.UploadID, mallory, ""); !errors.Is(err, auth.ErrRebindMismatch) {
		t.Fatalf("re-bind to another uploader's JWT slot after a v2 slot: %v, want ErrRebindMismatch", err)
	}
}

func TestRebindSubject(t *testing.T) {
	jwtSlot := func(path, sub, sig string) auth.Slot {
		s := sessiontest.Slot(path, 4096, sig)
		s.Protocol, s.Subject = auth.ProtoJWT, sub
		return s
	}
	v2Slot := sessiontest.Slot("d2/photo.jpg", 4096, "sig-v2")
	tests := []struct {
		name    string
		orig    auth.Slot
		slot    auth.Slot
		wantErr error
	}{
		{"same subject", jwtSlot("d1/photo.jpg", "alice@example.org", "a"), jwtSlot("d2/photo.jpg", "alice@example.org", "b"), nil},
		{"other subject", jwtSlot("d1/photo.jpg", "alice@example.org", "a"), jwtSlot("d2/photo.jpg", "mallory@example.org", "b"), auth.ErrRebindMismatch},
		{"subject differs in resource", jwtSlot("d1/photo.jpg", "alice@example.org/phone", "a"), jwtSlot("d2/photo.jpg", "alice@example.org/laptop", "b"), auth.ErrRebindMismatch},
		{"subject dropped", jwtSlot("d1/photo.jpg", "alice@example.org", "a"), jwtSlot("d2/photo.jpg", "", "b"), auth.ErrRebindMismatch},
		{"subject added", jwtSlot("d1/photo.jpg", "", "a"), jwtSlot("d2/photo.jpg", "alice@example.org", "b"), auth.ErrRebindMismatch},
		{"neither has one", jwtSlot("d1/photo.jpg", "", "a"), jwtSlot("d2/photo.jpg", "", "b"), nil},
		{"from a JWT slot to a v2 slot", jwtSlot("d1/photo.jpg", "alice@example.org", "a"), v2Slot, nil},
		{"from a v2 slot to a JWT slot", sessiontest.Slot("d1/photo.jpg", 4096, "a"), jwtSlot("d2/photo.jpg", "alice@example.org", "b"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := newSessEnv(t, auth.DefaultPolicy())
			s := e.open(t, tc.orig, "")
			if s.Subject != tc.orig.Subject {
				t.Fatalf("Open: Subject %q, want %q", s.Subject, tc.orig.Subject)
			}
			e.clock.Advance(30 * time.Hour)
			got, err := e.m.Rebind(ctx, s.UploadID, tc.slot, "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Rebind: err = %v, want %v", err, tc.wantErr)
				}
				if !sessiontest.Equal(e.stored(t, s.UploadID), s) {
					t.Error("a refused Rebind changed the session")
				}
				return
			}
			if err != nil {
				t.Fatalf("Rebind: %v", err)
			}
			want := tc.slot.Subject
			if want == "" {
				want = tc.orig.Subject // a slot that names no uploader keeps the upload's
			}
			if got.Subject != want || got.Rebinds != 1 {
				t.Errorf("re-bound session: Subject %q, Rebinds %d; want %q, 1", got.Subject, got.Rebinds, want)
			}
		})
	}
}

// TestRebindSlotTaken: an upload is never re-bound to a slot that has an
// upload of its own, complete or not, nor to one re-bound to another upload.
// Otherwise the holder of a shared file's slot could make its GET URL serve
// another upload.
func TestRebindSlotTaken(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	s1 := sessiontest.Slot("d1/photo.jpg", 4096, "sig-1")
	u1 := e.open(t, s1, "")
	u1, err := e.m.Complete(ctx, u1.UploadID)
	if err != nil {
		t.Fatal(err)
	}
	s2 := sessiontest.Slot("d2/photo.jpg", 4096, "sig-2")
	u2 := e.open(t, s2, "")
	s3 := sessiontest.Slot("d3/photo.jpg", 4096, "sig-3")
	u3 := e.open(t, s3, "")
	s4 := sessiontest.Slot("d4/photo.jpg", 4096, "sig-4")
	u3, err = e.m.Rebind(ctx, u3.UploadID, s4, "")
	if err != nil {
		t.Fatalf("Rebind to a fresh slot: %v", err)
	}
	e.clock.Advance(30 * time.Hour)
	for _, slot := range []auth.Slot{s1, s3, s4} {
		if _, err := e.m.Rebind(ctx, u2.UploadID, slot, "192.0.2.9"); !errors.Is(err, auth.ErrSlotTaken) {
			t.Errorf("Rebind to the slot %s of another upload: err = %v, want ErrSlotTaken", slot.Path, err)
		}
	}
	for _, want := range []auth.Session{u1, u2, u3} {
		if got := e.stored(t, want.UploadID); !sessiontest.Equal(got, want) {
			t.Errorf("after refused Rebinds\n%+v\nwant\n%+v", got, want)
		}
	}
	for path, want := range map[string]string{s1.Path: u1.UploadID, s2.Path: u2.UploadID, s3.Path: u3.UploadID, s4.Path: u3.UploadID} {
		if id, err := e.store.LookupSlot(ctx, auth.SlotKey(path)); err != nil || id != want {
			t.Errorf("slot %s mapped to %q, %v; want %q", path, id, err, want)
		}
	}
	// Its own slot, still valid, renews the session.
	if got, err := e.m.Rebind(ctx, u2.UploadID, s2, ""); err != nil || got.Rebinds != 1 {
		t.Errorf("Rebind with the upload's own slot = %d rebinds, %v", got.Rebinds, err)
	}
}

func TestRebindMissing(t *testing.T) {
	e := newSessEnv(t, auth.DefaultPolicy())
	_, err := e.m.Rebind(context.Background(), auth.DeriveUploadID(sessIDKey, "gone"), sessiontest.Slot("d2/x", 1, "s"), "")
	if !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Rebind of a missing upload: err = %v, want ErrSessionNotFound", err)
	}
}

func TestOpenFollowsReboundSlot(t *testing.T) {
	// A client re-bound its upload to a fresh slot and then PUTs to that
	// slot's URL: Open leads to the re-bound upload, not a new one.
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 4096, "sig-orig"), "")
	fresh := sessiontest.Slot("d2/photo.jpg", 4096, "sig-fresh")
	if _, err := e.m.Rebind(ctx, s.UploadID, fresh, ""); err != nil {
		t.Fatal(err)
	}
	got, created, err := e.m.Open(ctx, fresh, auth.DeriveUploadID(sessIDKey, fresh.Path), auth.KindWhole, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if created || got.UploadID != s.UploadID {
		t.Fatalf("Open at a re-bound slot: created=%v, upload %q; want the re-bound upload %q", created, got.UploadID, s.UploadID)
	}
	if _, err := e.store.Get(ctx, auth.DeriveUploadID(sessIDKey, fresh.Path)); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Open at a re-bound slot created a second session: %v", err)
	}
}

func TestDueAndForget(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{IdleTTL: time.Hour, MaxTTL: 2 * time.Hour, Retention: 3 * time.Hour, FileRetention: 10 * time.Hour})
	start := e.clock.Now()
	abandoned := e.open(t, sessiontest.Slot("d1/a.bin", 1, "a"), "")
	done := e.open(t, sessiontest.Slot("d2/b.bin", 1, "b"), "")
	if _, err := e.m.Complete(ctx, done.UploadID); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at   time.Duration
		want []string
	}{
		{time.Hour, nil},
		{4 * time.Hour, nil}, // abandoned: deadline 1 h + retention 3 h, not yet passed
		{4*time.Hour + time.Nanosecond, []string{abandoned.UploadID}}, // now due
		{11 * time.Hour, []string{abandoned.UploadID, done.UploadID}},
	}
	for _, st := range steps {
		e.clock.Set(start.Add(st.at))
		due, err := e.m.Due(ctx, 10)
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		var ids []string
		for _, s := range due {
			ids = append(ids, s.UploadID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(st.want) {
			t.Errorf("Due at %s = %v, want %v", st.at, ids, st.want)
		}
	}
	for range 2 {
		if err := e.m.Forget(ctx, abandoned.UploadID); err != nil {
			t.Fatalf("Forget: %v", err)
		}
	}
	if _, err := e.m.Authorize(ctx, abandoned.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Authorize after Forget: err = %v", err)
	}
	if _, err := e.m.AuthorizeSlot(ctx, "d1/a.bin"); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("AuthorizeSlot after Forget: err = %v", err)
	}
	if due, _ := e.m.Due(ctx, 10); len(due) != 1 || due[0].UploadID != done.UploadID {
		t.Errorf("Due after Forget = %v", due)
	}
	if err := e.m.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestSecretRotationDoesNotEndSessions(t *testing.T) {
	// Sessions never re-verify a slot: removing the secret that signed it
	// leaves the session working.
	ctx := context.Background()
	e := newSessEnv(t, auth.DefaultPolicy())
	const oldSecret, newSecret = "old secret", "new secret"
	signed, err := auth.SignSlot(oldSecret, auth.SignRequest{
		BaseURL: "https://upload.example/upload/", Dir: "d1", Name: "photo.jpg", Size: 10, Protocol: auth.ProtoV2, Now: e.clock.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed.PutURL)
	if err != nil {
		t.Fatal(err)
	}
	req := auth.SlotRequest{Path: signed.Path, URLPath: u.Path, Query: u.Query(), Size: 10}
	verify := func(secrets ...string) (auth.Slot, error) {
		v, err := auth.NewVerifier(secrets, auth.WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		return v.Verify(req)
	}
	slot, err := verify(oldSecret, newSecret)
	if err != nil {
		t.Fatalf("Verify before rotation: %v", err)
	}
	s := e.open(t, slot, "192.0.2.1")
	if s.SignatureHash == ([32]byte{}) || strings.Contains(fmt.Sprintf("%+v", s), u.Query().Get("v2")) {
		t.Fatalf("session must keep a signature hash, never the signature: %+v", s)
	}
	// Rotation: only the new secret is configured now.
	if _, err := verify(newSecret); !errors.Is(err, auth.ErrBadSignature) {
		t.Fatalf("Verify after rotation: err = %v, want ErrBadSignature", err)
	}
	e.clock.Advance(2 * time.Hour)
	got, err := e.m.Authorize(ctx, s.UploadID)
	if err != nil {
		t.Fatalf("Authorize after rotation: %v", err)
	}
	if _, _, err := e.m.Touch(ctx, got, "198.51.100.4"); err != nil {
		t.Fatalf("Touch after rotation: %v", err)
	}
	if _, err := e.m.AuthorizeSlot(ctx, signed.Path); err != nil {
		t.Fatalf("AuthorizeSlot after rotation: %v", err)
	}
}

func TestSessionsWithEmbeddedStore(t *testing.T) {
	// The manager on the embedded store, across a restart.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := pebblestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := sessiontest.NewClock()
	m := auth.NewSessions(st, auth.DefaultPolicy(), clock.Now)
	slot := sessiontest.Slot("d1/photo.jpg", 4096, "sig")
	s, created, err := m.Open(ctx, slot, auth.DeriveUploadID(sessIDKey, slot.Path), auth.KindWhole, "192.0.2.1")
	if err != nil || !created {
		t.Fatalf("Open = %v, %v", created, err)
	}
	clock.Advance(time.Hour)
	if _, changed, err := m.Touch(ctx, s, "198.51.100.2"); err != nil || !changed {
		t.Fatalf("Touch = %v, %v", changed, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = pebblestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m = auth.NewSessions(st, auth.DefaultPolicy(), clock.Now)
	clock.Advance(20 * time.Hour) // past the first idle deadline, not the slid one
	got, err := m.AuthorizeSlot(ctx, slot.Path)
	if err != nil {
		t.Fatalf("AuthorizeSlot after restart: %v", err)
	}
	if got.UploadID != s.UploadID || got.Addrs != 1 || got.LastAddr != "198.51.100.2" {
		t.Errorf("after restart %+v", got)
	}
}

func TestTouchJustPastTheCap(t *testing.T) {
	// A touch written just before the absolute deadline, then a request that
	// finishes just after it, within the touch interval: expired, not throttled.
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{IdleTTL: 2 * time.Hour, MaxTTL: 90 * time.Minute, TouchInterval: time.Minute})
	s := e.open(t, sessiontest.Slot("d1/photo.jpg", 1, "sig"), "")
	e.clock.Advance(90*time.Minute - 10*time.Second)
	s, _, err := e.m.Touch(ctx, s, "")
	if err != nil {
		t.Fatalf("Touch before the cap: %v", err)
	}
	e.clock.Advance(20 * time.Second)
	if _, _, err := e.m.Touch(ctx, s, ""); !errors.Is(err, auth.ErrSessionExpired) {
		t.Fatalf("Touch after the cap: err = %v, want ErrSessionExpired", err)
	}
}

// AuthorizeRead answers from its cache for at most a second, never with a
// session that would end within that second, and never after this process
// changed the session.
func TestAuthorizeReadCache(t *testing.T) {
	ctx := context.Background()
	p := auth.Policy{IdleTTL: time.Hour, MaxTTL: 10 * time.Hour, TouchInterval: time.Minute}
	e := newSessEnv(t, p)
	s := e.open(t, sessiontest.Slot("d1/read.jpg", 1, "sig"), "")
	reads := func() int64 { return e.store.gets.Load() }

	if _, err := e.m.AuthorizeRead(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	n := reads()
	// Another instance changes the session behind this manager's back.
	other := auth.NewSessions(e.store, p, e.clock.Now)
	e.clock.Advance(500 * time.Millisecond)
	if _, err := other.Complete(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.AuthorizeRead(ctx, s.UploadID)
	if err != nil || got.Complete || reads() != n {
		t.Fatalf("within the second: complete %v, %v, %d store reads; want the cached session and no read", got.Complete, err, reads()-n)
	}
	e.clock.Advance(500 * time.Millisecond)
	got, err = e.m.AuthorizeRead(ctx, s.UploadID)
	if err != nil || !got.Complete || reads() != n+1 {
		t.Fatalf("after a second: complete %v, %v, %d store reads; want the stored session, read once", got.Complete, err, reads()-n)
	}

	// This manager's own writes are seen at once.
	s2 := e.open(t, sessiontest.Slot("d1/read2.jpg", 1, "sig"), "")
	if _, err := e.m.AuthorizeRead(ctx, s2.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Complete(ctx, s2.UploadID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.m.AuthorizeRead(ctx, s2.UploadID); err != nil || !got.Complete {
		t.Fatalf("after this manager's Complete: complete %v, %v", got.Complete, err)
	}

	// Near its idle deadline the cached copy is not used: another instance
	// may have slid the deadline, and the session must not be seen as ended.
	s3 := e.open(t, sessiontest.Slot("d1/read3.jpg", 1, "sig"), "")
	e.clock.Advance(time.Hour - 1500*time.Millisecond)
	cached, err := e.m.AuthorizeRead(ctx, s3.UploadID)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, err := other.Touch(ctx, cached, "192.0.2.7") // slides the deadline by an hour
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	got, err = e.m.AuthorizeRead(ctx, s3.UploadID)
	if err != nil || !got.IdleDeadline.Equal(cur.IdleDeadline) {
		t.Fatalf("half a second before the cached deadline: %v, deadline %v; want the slid deadline %v", err, got.IdleDeadline, cur.IdleDeadline)
	}
	// An expired session is never cached.
	e.clock.Advance(2 * time.Hour)
	for range 2 {
		if _, err := e.m.AuthorizeRead(ctx, s3.UploadID); !errors.Is(err, auth.ErrSessionExpired) {
			t.Fatalf("after the deadline: %v, want ErrSessionExpired", err)
		}
	}
}

// Under a history bound, a re-bound upload keeps its record (its new slot
// leads to it only through its mapping) with the slot it moved to; an
// upload whose record the clean-up keeps after all (KeepRecord) loses its
// sweep time and what only the clean-up read.
func TestCompleteHistoryReboundAndKept(t *testing.T) {
	ctx := context.Background()
	e := newSessEnv(t, auth.Policy{History: time.Hour})
	slot := sessiontest.Slot("d1/photo.jpg", 1, "sig")
	id := auth.DeriveUploadID(sessIDKey, slot.Path)
	if _, _, err := e.m.Open(ctx, slot, id, auth.KindWhole, ""); err != nil {
		t.Fatal(err)
	}
	fresh := sessiontest.Slot("d2/photo.jpg", 1, "sig2")
	if _, err := e.m.Rebind(ctx, id, fresh, ""); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.Complete(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeepFile || !got.SweepAt.IsZero() || got.SlotPath != fresh.Path || got.Protocol != fresh.Protocol {
		t.Errorf("complete re-bound upload: KeepFile %v, SweepAt %v, slot path %q, protocol %q; want its record kept for ever with its new slot",
			got.KeepFile, got.SweepAt, got.SlotPath, got.Protocol)
	}
	// A repeated re-bind with the slot it completed at answers as before.
	if again, err := e.m.Rebind(ctx, id, fresh, ""); err != nil || !sessiontest.Equal(again, got) {
		t.Errorf("repeated re-bind of the complete upload: %v", err)
	}

	other := sessiontest.Slot("d3/photo.jpg", 1, "sig3")
	restarted := auth.DeriveUploadID(sessIDKey, "another id")
	if _, _, err := e.m.Open(ctx, other, restarted, auth.KindWhole, ""); err != nil {
		t.Fatal(err)
	}
	if got, err = e.m.Complete(ctx, restarted); err != nil || !got.KeepFile {
		t.Fatalf("Complete: KeepFile %v, %v", got.KeepFile, err)
	}
	kept, err := e.m.KeepRecord(ctx, restarted)
	if err != nil {
		t.Fatal(err)
	}
	if kept.KeepFile || !kept.SweepAt.IsZero() || kept.SlotPath != "" || kept.SlotKey != got.SlotKey || !kept.Complete {
		t.Errorf("KeepRecord left %+v", kept)
	}
	if !sessiontest.Equal(e.stored(t, restarted), kept) {
		t.Error("KeepRecord returned a session other than the stored one")
	}
	writes := e.store.writes.Load()
	if again, err := e.m.KeepRecord(ctx, restarted); err != nil || !sessiontest.Equal(again, kept) {
		t.Errorf("second KeepRecord: %+v, %v", again, err)
	}
	if w := e.store.writes.Load() - writes; w != 0 {
		t.Errorf("second KeepRecord wrote %d times", w)
	}
}

// With Policy.IDKey a slot leads to its own upload without a stored
// mapping; a re-bind onto a slot that has an upload of its own is refused,
// and one onto a fresh slot maps it. On a store without SlotResolver, behind
// the timing wrapper, and on one with it.
func TestSessionsOwnSlots(t *testing.T) {
	stores := map[string]func(t *testing.T) auth.Store{
		"memstore":       func(*testing.T) auth.Store { return memstore.New() },
		"timed memstore": func(*testing.T) auth.Store { return auth.Timed(memstore.New(), func(string, time.Duration) {}) },
		"pebble, timed": func(t *testing.T) auth.Store {
			st, err := pebblestore.Open(filepath.Join(t.TempDir(), "sessions.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return auth.Timed(st, func(string, time.Duration) {})
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := open(t)
			defer st.Close()
			p := auth.DefaultPolicy()
			p.IDKey = sessIDKey
			m := auth.NewSessions(st, p, sessiontest.NewClock().Now)
			open := func(path string) auth.Session {
				t.Helper()
				slot := sessiontest.Slot(path, 4096, "sig-"+path)
				s, created, err := m.Open(ctx, slot, auth.DeriveUploadID(sessIDKey, path), auth.KindWhole, "")
				if err != nil || !created {
					t.Fatalf("Open %s: %v, %v", path, created, err)
				}
				return s
			}
			a := open("a/photo.jpg")
			if id, err := st.LookupSlot(ctx, auth.SlotKey("a/photo.jpg")); !errors.Is(err, auth.ErrSessionNotFound) {
				t.Errorf("a slot's own upload got a stored mapping: %q, %v", id, err)
			}
			if got, err := m.AuthorizeSlot(ctx, "a/photo.jpg"); err != nil || got.UploadID != a.UploadID {
				t.Fatalf("AuthorizeSlot of the own slot = %q, %v", got.UploadID, err)
			}
			if _, err := m.AuthorizeSlot(ctx, "x/photo.jpg"); !errors.Is(err, auth.ErrSessionNotFound) {
				t.Errorf("AuthorizeSlot of a slot without upload: %v", err)
			}
			// Slot b has an upload of its own: a is not re-bound to it.
			b := open("b/photo.jpg")
			if _, err := m.Rebind(ctx, a.UploadID, sessiontest.Slot("b/photo.jpg", 4096, "sig-b2"), ""); !errors.Is(err, auth.ErrSlotTaken) {
				t.Fatalf("Rebind onto a slot with an upload of its own: %v; want ErrSlotTaken", err)
			}
			if got, err := m.AuthorizeSlot(ctx, "b/photo.jpg"); err != nil || got.UploadID != b.UploadID {
				t.Errorf("AuthorizeSlot of slot b after the refused re-bind = %q, %v", got.UploadID, err)
			}
			// Slot c is fresh: a is re-bound to it, and Open at c leads to a.
			slotC := sessiontest.Slot("c/photo.jpg", 4096, "sig-c")
			if _, err := m.Rebind(ctx, a.UploadID, slotC, ""); err != nil {
				t.Fatalf("Rebind onto a fresh slot: %v", err)
			}
			if got, err := m.AuthorizeSlot(ctx, "c/photo.jpg"); err != nil || got.UploadID != a.UploadID {
				t.Errorf("AuthorizeSlot of the re-bound slot = %q, %v", got.UploadID, err)
			}
			if got, created, err := m.Open(ctx, slotC, auth.DeriveUploadID(sessIDKey, slotC.Path), auth.KindWhole, ""); err != nil || created || got.UploadID != a.UploadID {
				t.Errorf("Open at the re-bound slot = %q, %v, %v; want upload a", got.UploadID, created, err)
			}
			// The own slot still leads to a, whose record now names slot c.
			if got, err := m.AuthorizeSlot(ctx, "a/photo.jpg"); err != nil || got.UploadID != a.UploadID || got.SlotKey != slotC.Path && got.SlotKey != auth.SlotKey(slotC.Path) {
				t.Errorf("AuthorizeSlot of a's own slot after the re-bind = %q (slot %q), %v", got.UploadID, got.SlotKey, err)
			}
			if err := m.Forget(ctx, a.UploadID); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"a/photo.jpg", "c/photo.jpg"} {
				if got, err := m.AuthorizeSlot(ctx, path); !errors.Is(err, auth.ErrSessionNotFound) {
					t.Errorf("AuthorizeSlot of %s after Forget = %q, %v", path, got.UploadID, err)
				}
			}
		})
	}
}

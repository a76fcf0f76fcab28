package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/redisstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
	"github.com/uploadgate/uploadgate/internal/testredis"
)

// The sharded layout on a real three-master Redis Cluster (and on one
// server, where it must work as well).

// newClusterClient returns a Cluster client of c, closed when t ends; hook,
// when not nil, is added to the client of every node.
func newClusterClient(t testing.TB, c *testredis.Cluster, hook redis.Hook) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{
		Addrs:        c.Addrs(),
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolTimeout:  5 * time.Second,
	}
	if hook != nil {
		o.NewClient = func(opt *redis.Options) *redis.Client {
			nc := redis.NewClient(opt)
			nc.AddHook(hook)
			return nc
		}
	}
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// masterClients returns a plain client of every master.
func masterClients(t testing.TB, c *testredis.Cluster) []*redis.Client {
	t.Helper()
	var out []*redis.Client
	for _, addr := range c.Addrs() {
		mc := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { mc.Close() })
		out = append(out, mc)
	}
	return out
}

// shardedKeys reads every key with prefix from the masters: sessions (by
// upload ID), their "m:" slot fields, slot mappings and sweep entries.
type shardedKeys struct {
	sessions map[string]map[string]string // upload ID → hash fields
	slots    map[string]string            // slot key → upload ID
	sweep    map[string]float64           // entry → score
	perNode  []int
}

func readShardedKeys(t *testing.T, masters []*redis.Client, prefix string) shardedKeys {
	t.Helper()
	ctx := context.Background()
	k := shardedKeys{sessions: map[string]map[string]string{}, slots: map[string]string{}, sweep: map[string]float64{}}
	for _, c := range masters {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatalf("KEYS: %v", err)
		}
		k.perNode = append(k.perNode, len(keys))
		for _, key := range keys {
			rest := strings.TrimPrefix(key, prefix)
			switch {
			case strings.HasPrefix(rest, "slot:"):
				v, err := c.Get(ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				k.slots[strings.TrimPrefix(rest, "slot:")] = v
			case strings.HasPrefix(rest, "{") && strings.Contains(rest, "}:session:"):
				h, err := c.HGetAll(ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				k.sessions[rest[strings.Index(rest, "}:session:")+len("}:session:"):]] = h
			case strings.HasPrefix(rest, "{") && strings.HasSuffix(rest, "}:sweep"):
				zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, z := range zs {
					k.sweep[z.Member.(string)] = z.Score
				}
			default:
				t.Errorf("unexpected key %q", key)
			}
		}
	}
	return k
}

// checkShardedKeys checks the invariants of the sharded layout that hold
// when no call failed: every slot mapping names a session that lists the
// slot (its SlotKey or an "m:" field), every sweep entry is the "w" of its
// session and every session with a "w" is in the index.
func checkShardedKeys(t *testing.T, masters []*redis.Client, prefix string) {
	t.Helper()
	k := readShardedKeys(t, masters, prefix)
	for slot, id := range k.slots {
		h, ok := k.sessions[id]
		if !ok {
			t.Errorf("slot mapping to a missing session")
			continue
		}
		s, err := decodeRecord(id, h["d"])
		if err != nil {
			t.Error(err)
			continue
		}
		if _, listed := h["m:"+slot]; !listed && s.SlotKey != slot {
			t.Errorf("slot mapping not listed with its session")
		}
	}
	for id, h := range k.sessions {
		if w := h["w"]; w != "" {
			if _, ok := k.sweep[w]; !ok {
				t.Errorf("session %q: sweep entry missing from the index", id)
			}
		}
	}
	for e := range k.sweep {
		id := e[16:]
		if h, ok := k.sessions[id]; !ok || h["w"] != e {
			t.Errorf("stale sweep index entry for %q", id)
		}
	}
}

func TestShardedStoreContractSingleNode(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	runShardedContract(t, client, []*redis.Client{client})
}

// runShardedContract runs the store contract suite on the sharded layout and
// checks the keys each test leaves on masters.
func runShardedContract(t *testing.T, client redis.UniversalClient, masters []*redis.Client) {
	n := 0
	sessiontest.Run(t, func(t *testing.T) auth.Store {
		n++
		prefix := fmt.Sprintf("contract%d:", n)
		st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: true})
		t.Cleanup(func() {
			checkShardedKeys(t, masters, prefix)
			st.Close()
		})
		return st
	})
}

func TestShardedStoreContractCluster(t *testing.T) {
	start := time.Now()
	cl := testredis.StartCluster(t, 3)
	t.Logf("three-master cluster up in %v", time.Since(start).Round(time.Millisecond))
	client := newClusterClient(t, cl, nil)
	masters := masterClients(t, cl)
	runShardedContract(t, client, masters)

	t.Run("spread", func(t *testing.T) { testSpread(t, cl, client, masters) })
	t.Run("round trips", func(t *testing.T) { testRoundTrips(t, cl) })
	t.Run("migrate", func(t *testing.T) { testMigrate(t, client, masters) })
	t.Run("create at slot", func(t *testing.T) {
		sessiontest.CheckSlotCreator(t, redisstore.New(client, redisstore.Options{KeyPrefix: "atslot:", Sharded: true}))
		checkShardedKeys(t, masters, "atslot:")
	})
}

// testMigrate writes sessions in the single-node layout (as a gateway of an
// older version did on the Cluster) and moves them with Migrate.
func testMigrate(t *testing.T, client *redis.ClusterClient, masters []*redis.Client) {
	ctx := context.Background()
	const prefix = "migrate:"
	const n = 40
	old := redisstore.New(client, redisstore.Options{KeyPrefix: prefix})
	for i := range n {
		if _, _, err := old.Create(ctx, sessiontest.Sample(i)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 { // a re-bound upload: two slots
			if _, err := old.Rebind(ctx, sessiontest.ID(i), sessiontest.SlotKey(1000+i), func(*auth.Session) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: true})
	moved, err := st.Migrate(ctx)
	if err != nil || moved != n {
		t.Fatalf("Migrate: %d, %v; want %d", moved, err, n)
	}
	for i := range n {
		s, err := st.Get(ctx, sessiontest.ID(i))
		if err != nil || !sessiontest.Equal(s, sessiontest.Sample(i)) {
			t.Fatalf("session %d after Migrate: %v", i, err)
		}
		if _, err := old.Get(ctx, sessiontest.ID(i)); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("session %d still in the single-node layout: %v", i, err)
		}
		wantSlots := []string{sessiontest.SlotKey(i)}
		if i%4 == 0 {
			wantSlots = append(wantSlots, sessiontest.SlotKey(1000+i))
		}
		for _, k := range wantSlots {
			if id, err := st.LookupSlot(ctx, k); err != nil || id != sessiontest.ID(i) {
				t.Errorf("slot of session %d after Migrate: %q, %v", i, id, err)
			}
		}
	}
	checkShardedKeys(t, masters, prefix)
	if due, err := st.Expired(ctx, sessiontest.Sample(n).SweepAt, 2*n); err != nil || len(due) != n {
		t.Errorf("Expired after Migrate: %d sessions, %v; want %d", len(due), err, n)
	}
	if moved, err := st.Migrate(ctx); err != nil || moved != 0 {
		t.Errorf("Migrate again: %d, %v; want 0", moved, err)
	}
	for i := range n {
		if err := st.Delete(ctx, sessiontest.ID(i)); err != nil {
			t.Fatal(err)
		}
	}
	if k := readShardedKeys(t, masters, prefix); len(k.sessions)+len(k.slots)+len(k.sweep) != 0 {
		t.Errorf("keys left after deleting every migrated session: %v", k.perNode)
	}
}

// testSpread opens and completes 300 uploads through the session manager
// and counts the keys on each master: each must hold a real share.
func testSpread(t *testing.T, cl *testredis.Cluster, client *redis.ClusterClient, masters []*redis.Client) {
	const uploads = 300
	const prefix = "spread:"
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: true})
	clock := sessiontest.NewClock()
	m := auth.NewSessions(st, auth.DefaultPolicy(), clock.Now)
	sessiontest.CompleteUploads(t, m, uploads)
	k := readShardedKeys(t, masters, prefix)
	total := 0
	for i, n := range k.perNode {
		total += n
		t.Logf("master %d (%s): %d keys (DBSIZE %d)", i, cl.Masters[i].Addr, n, cl.DBSize(t, i))
	}
	if len(k.sessions) != uploads || len(k.slots) != uploads {
		t.Fatalf("%d sessions and %d slot mappings; want %d each", len(k.sessions), len(k.slots), uploads)
	}
	for i, n := range k.perNode {
		// An even share is a third; a real share is at least a fifth.
		if n*5 < total {
			t.Errorf("master %d holds %d of %d keys; want at least a fifth", i, n, total)
		}
	}
	checkShardedKeys(t, masters, prefix)

	// The single-node layout on the same Cluster: every key on one master.
	const oldPrefix = "spread-old:"
	old := redisstore.New(client, redisstore.Options{KeyPrefix: oldPrefix})
	sessiontest.CompleteUploads(t, auth.NewSessions(old, auth.DefaultPolicy(), clock.Now), uploads)
	var perMaster []int
	for _, mc := range masters {
		keys, err := mc.Keys(context.Background(), oldPrefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		perMaster = append(perMaster, len(keys))
	}
	slices.Sort(perMaster)
	t.Logf("the single-node layout on the Cluster: keys per master %v", perMaster)
	if perMaster[0] != 0 || perMaster[1] != 0 {
		t.Errorf("the single-node layout spread keys over masters: %v", perMaster)
	}
}

// countHook counts the requests a node client sends: one per command sent
// alone, one per pipeline.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// seqHook counts the calls a client makes, each a command or a pipeline
// that waits for its answers: the round trips in sequence.
type seqHook = countHook

// testRoundTrips counts the requests per creation, through the session
// manager (Open of a whole upload: the slot lookup, then Create) and for
// Create alone, on the single-node layout and the sharded one.
func testRoundTrips(t *testing.T, cl *testredis.Cluster) {
	srv := testredis.Start(t)
	const n = 50
	type result struct {
		name           string
		requests, seqs float64
	}
	var results []result
	measure := func(name string, client redis.UniversalClient, nodes *countHook, sharded bool) {
		seq := &seqHook{}
		client.AddHook(seq)
		st := redisstore.New(client, redisstore.Options{KeyPrefix: "rt" + name + ":", Sharded: sharded})
		ctx := context.Background()
		// Warm up: the scripts are cached on every master.
		for i := range shardedWarmUp {
			s := sessiontest.Sample(10000 + i)
			if _, _, err := st.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		nodes.n.Store(0)
		seq.n.Store(0)
		for i := range n {
			s := sessiontest.Sample(i)
			if _, created, err := st.Create(ctx, s); err != nil || !created {
				t.Fatalf("Create: %v, %v", created, err)
			}
		}
		results = append(results, result{name + ", Create", float64(nodes.n.Load()) / n, float64(seq.n.Load()) / n})
		nodes.n.Store(0)
		seq.n.Store(0)
		clock := sessiontest.NewClock()
		m := auth.NewSessions(st, auth.DefaultPolicy(), clock.Now)
		for i := range n {
			path := fmt.Sprintf("rt/%d/file.bin", i)
			slot := sessiontest.Slot(path, 1000, path)
			if _, created, err := m.Open(ctx, slot, auth.DeriveUploadID([]byte("round trips"), path), auth.KindWhole, "192.0.2.1"); err != nil || !created {
				t.Fatalf("Open: %v, %v", created, err)
			}
		}
		results = append(results, result{name + ", Sessions.Open", float64(nodes.n.Load()) / n, float64(seq.n.Load()) / n})
	}

	single := &countHook{}
	sc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { sc.Close() })
	sc.AddHook(single)
	measure("single node, single-node layout", sc, single, false)

	legacyNodes := &countHook{}
	measure("cluster, single-node layout", newClusterClient(t, cl, legacyNodes), legacyNodes, false)

	shardedNodes := &countHook{}
	measure("cluster, sharded layout", newClusterClient(t, cl, shardedNodes), shardedNodes, true)

	for _, r := range results {
		t.Logf("%s: %.2f requests to nodes, %.2f round trips in sequence per creation", r.name, r.requests, r.seqs)
	}
	for _, r := range results {
		if r.seqs != 1 {
			t.Errorf("%s: %.2f round trips in sequence per creation; want 1", r.name, r.seqs)
		}
	}
}

// shardedWarmUp is how many creations warm up the script caches.
const shardedWarmUp = 20

// TestShardedStoreMasterDown stops one master while sessions are written:
// the calls fail with ErrStoreUnavailable (no other error, no panic), and
// once the master is back every session written before is still there.
func TestShardedStoreMasterDown(t *testing.T) {
	cl := testredis.StartCluster(t, 3)
	client := newClusterClient(t, cl, nil)
	st := redisstore.New(client, redisstore.Options{Sharded: true})
	ctx := context.Background()
	const n = 60
	for i := range n {
		if _, _, err := st.Create(ctx, sessiontest.Sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	cl.Masters[1].Stop()
	if err := st.Ping(ctx); !isUnavailable(err) {
		t.Errorf("Ping with a master down: %v; want ErrStoreUnavailable", err)
	}
	var failed, ok int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := st.Update(cctx, sessiontest.ID(i), func(s *auth.Session) error { s.Addrs++; return nil })
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case isUnavailable(err):
				failed++
			default:
				t.Errorf("Update with a master down: %v; want ErrStoreUnavailable", err)
			}
		})
	}
	wg.Wait()
	t.Logf("with a master down: %d updates done, %d unavailable", ok, failed)
	if failed == 0 {
		t.Errorf("no update failed with a master down")
	}
	cl.RestartMaster(t, 1)
	if err := st.Ping(ctx); err != nil {
		t.Errorf("Ping after the master's restart: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := range n {
		for {
			s, err := st.Get(ctx, sessiontest.ID(i))
			if err == nil {
				if s.Addrs < sessiontest.Sample(i).Addrs {
					t.Errorf("session %d went back in time", i)
				}
				break
			}
			if !isUnavailable(err) || time.Now().After(deadline) {
				t.Fatalf("session %d after the master's restart: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if id, err := st.LookupSlot(ctx, sessiontest.SlotKey(i)); err != nil || id != sessiontest.ID(i) {
			t.Errorf("slot %d after the master's restart: %q, %v", i, id, err)
		}
	}
}

func isUnavailable(err error) bool { return errors.Is(err, auth.ErrStoreUnavailable) }

// TestShardedStoreExpiredPrunes lets Redis expire sessions (a SweepAt long
// past, with a margin of a millisecond) before the clean-up sees them: the
// bucket's sweep index entries they leave are pruned, and no key is left.
func TestShardedStoreExpiredPrunes(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	const prefix = "prune:"
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: true, ExpiryMargin: time.Millisecond})
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	for i := range 10 {
		s := sessiontest.Sample(i)
		s.SweepAt = past.Add(time.Duration(i) * time.Second)
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Get(ctx, sessiontest.ID(0)); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Get of a session that Redis expired: %v; want ErrSessionNotFound", err)
	}
	k := readShardedKeys(t, []*redis.Client{client}, prefix)
	if len(k.sweep) != 10 || len(k.sessions)+len(k.slots) != 0 {
		t.Fatalf("before the clean-up: %d sweep entries, %d sessions, %d slots; want 10, 0, 0", len(k.sweep), len(k.sessions), len(k.slots))
	}
	due, err := st.Expired(ctx, time.Now(), 5)
	if err != nil || len(due) != 0 {
		t.Fatalf("Expired: %d sessions, %v; want none", len(due), err)
	}
	if keys, err := client.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left after Expired pruned the index: %q, %v", keys, err)
	}
}

// TestShardedStoreHeals leaves what an outage between the writes of the
// sharded layout can leave, and checks how each ends: a session whose slot
// mapping was lost gets it back from the next Create of the upload, and a
// claim whose session was never written names the right upload, so that
// the retried Create keeps it.
func TestShardedStoreHeals(t *testing.T) {
	srv := testredis.Start(t)
	client := newRedisClient(t, srv.Addr)
	const prefix = "heal:"
	st := redisstore.New(client, redisstore.Options{KeyPrefix: prefix, Sharded: true})
	ctx := context.Background()

	s := sessiontest.Sample(1)
	if _, created, err := st.Create(ctx, s); err != nil || !created {
		t.Fatalf("Create: %v, %v", created, err)
	}
	if err := client.Del(ctx, prefix+"slot:"+s.SlotKey).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LookupSlot(ctx, s.SlotKey); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("LookupSlot of the lost mapping: %v", err)
	}
	if _, created, err := st.Create(ctx, s); err != nil || created {
		t.Fatalf("Create again: %v, %v; want the existing session", created, err)
	}
	if id, err := st.LookupSlot(ctx, s.SlotKey); err != nil || id != s.UploadID {
		t.Errorf("LookupSlot after the upload's Create: %q, %v; want the mapping back", id, err)
	}

	// A claim without its session (the session's master failed).
	s2 := sessiontest.Sample(2)
	if err := client.Set(ctx, prefix+"slot:"+s2.SlotKey, s2.UploadID, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, created, err := st.Create(ctx, s2); err != nil || !created {
		t.Fatalf("Create after a lone claim: %v, %v", created, err)
	}
	if id, err := st.LookupSlot(ctx, s2.SlotKey); err != nil || id != s2.UploadID {
		t.Errorf("LookupSlot after the Create: %q, %v", id, err)
	}
	checkShardedKeys(t, []*redis.Client{client}, prefix)
	// Delete removes what names the upload and leaves the rest.
	if err := client.Set(ctx, prefix+"slot:other", "someone-else", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{s.UploadID, s2.UploadID} {
		if err := st.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := client.Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 1 || keys[0] != prefix+"slot:other" {
		t.Errorf("keys after Delete: %q, %v; want only the other upload's mapping", keys, err)
	}
}

// TestCreateAtSlot checks auth.SlotCreator on both layouts, on one server
// and (sharded) on the Cluster.
func TestCreateAtSlot(t *testing.T) {
	srv := testredis.Start(t)
	single := newRedisClient(t, srv.Addr)
	t.Run("single-node layout", func(t *testing.T) {
		sessiontest.CheckSlotCreator(t, redisstore.New(single, redisstore.Options{KeyPrefix: "atslot1:"}))
	})
	t.Run("resolver, single-node layout", func(t *testing.T) {
		sessiontest.CheckSlotResolver(t, redisstore.New(single, redisstore.Options{KeyPrefix: "resolve1:"}))
	})
	t.Run("resolver, sharded layout", func(t *testing.T) {
		sessiontest.CheckSlotResolver(t, redisstore.New(single, redisstore.Options{KeyPrefix: "resolve2:", Sharded: true}))
	})
	t.Run("sharded layout, one server", func(t *testing.T) {
		sessiontest.CheckSlotCreator(t, redisstore.New(single, redisstore.Options{KeyPrefix: "atslot2:", Sharded: true}))
		checkShardedKeys(t, []*redis.Client{single}, "atslot2:")
	})
}

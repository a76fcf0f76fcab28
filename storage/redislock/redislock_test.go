package redislock

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/uploadgate/uploadgate/internal/testredis"
	"github.com/uploadgate/uploadgate/storage/lockertest"
)

// prefixes gives every Locker of a test run its own key space.
var prefixSeq atomic.Int64

func uniquePrefix() string {
	return fmt.Sprintf("test%d:", prefixSeq.Add(1))
}

func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func newLocker(t *testing.T, client redis.UniversalClient, opts Options) *Locker {
	t.Helper()
	l, err := New(client, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func lockOf(t *testing.T, l *Locker, id string) *lock {
	t.Helper()
	k, err := l.NewLock(id)
	if err != nil {
		t.Fatalf("NewLock: %v", err)
	}
	return k.(*lock)
}

func lockWithin(t *testing.T, k *lock, d time.Duration, requestRelease func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := k.Lock(ctx, requestRelease); err != nil {
		t.Fatalf("Lock %s: %v", k.id, err)
	}
}

// token returns the token of the current acquisition.
func (k *lock) token() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held == nil {
		return ""
	}
	return k.held.token
}

// signalAt returns a requestRelease that records when it was first called.
type signalAt struct {
	once sync.Once
	ch   chan struct{}
	at   time.Time
}

func newSignal() *signalAt { return &signalAt{ch: make(chan struct{})} }

func (s *signalAt) call() {
	s.once.Do(func() { s.at = time.Now(); close(s.ch) })
}

func (s *signalAt) wait(t *testing.T, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case <-s.ch:
		return s.at
	case <-time.After(within):
		t.Fatalf("%s: requestRelease was not called within %v", what, within)
		return time.Time{}
	}
}

func (s *signalAt) called() bool {
	select {
	case <-s.ch:
		return true
	default:
		return false
	}
}

// lockAsync runs k.Lock in a goroutine and reports its result.
func lockAsync(k *lock, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		done <- k.Lock(ctx, func() {})
	}()
	return done
}

func waitLocked(t *testing.T, done <-chan error, within time.Duration, what string) time.Time {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: Lock: %v", what, err)
		}
		return time.Now()
	case <-time.After(within):
		t.Fatalf("%s: Lock did not return within %v", what, within)
		return time.Time{}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// The contract, with all locks on one Locker.
func TestContract(t *testing.T) {
	srv := testredis.Start(t)
	lockertest.Run(t, func(t *testing.T) handler.Locker {
		return newLocker(t, newClient(t, srv.Addr), Options{KeyPrefix: uniquePrefix(), PollInterval: 100 * time.Millisecond})
	})
}

// twoInstances hands out locks from two Lockers in turn, as two gateway
// instances behind a load balancer would.
type twoInstances struct {
	ls [2]*Locker
	n  atomic.Int64
}

func (p *twoInstances) NewLock(id string) (handler.Lock, error) {
	return p.ls[p.n.Add(1)%2].NewLock(id)
}

// The contract across two Lockers (two clients, two subscriptions) sharing
// one Redis.
func TestContractTwoInstances(t *testing.T) {
	srv := testredis.Start(t)
	lockertest.Run(t, func(t *testing.T) handler.Locker {
		opts := Options{KeyPrefix: uniquePrefix(), PollInterval: 100 * time.Millisecond}
		return &twoInstances{ls: [2]*Locker{
			newLocker(t, newClient(t, srv.Addr), opts),
			newLocker(t, newClient(t, srv.Addr), opts),
		}}
	})
}

// A holds on instance A; B's Lock on instance B reaches A's requestRelease
// through pub/sub, and B gets the lock through the released notice. Polling
// and re-publishing are set far beyond the bound, so only pub/sub can meet it.
func TestReleaseRequestLatency(t *testing.T) {
	srv := testredis.Start(t)
	opts := Options{KeyPrefix: uniquePrefix(), PollInterval: 20 * time.Second, RepublishInterval: 20 * time.Second}
	a := newLocker(t, newClient(t, srv.Addr), opts)
	b := newLocker(t, newClient(t, srv.Addr), opts)
	measureHandOffs(t, a, b, "latency")
}

func measureHandOffs(t *testing.T, a, b *Locker, idPrefix string) {
	t.Helper()
	const runs, bound = 15, time.Second
	var asks, handOffs []time.Duration
	for i := range runs {
		id := fmt.Sprintf("%s-%d", idPrefix, i)
		ka, kb := lockOf(t, a, id), lockOf(t, b, id)
		ask := newSignal()
		lockWithin(t, ka, time.Second, ask.call)

		start := time.Now()
		done := lockAsync(kb, 10*time.Second)
		asked := ask.wait(t, 5*time.Second, "release request")
		if err := ka.Unlock(); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		acquired := waitLocked(t, done, 5*time.Second, "hand-off")
		if err := kb.Unlock(); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		asks = append(asks, asked.Sub(start))
		handOffs = append(handOffs, acquired.Sub(start))
	}
	t.Logf("over %d runs: request → holder's requestRelease median %v, max %v; Lock → acquired (incl. holder's Unlock) median %v, max %v",
		runs, median(asks), slices.Max(asks), median(handOffs), slices.Max(handOffs))
	if m := slices.Max(asks); m >= bound {
		t.Errorf("a release request took %v to reach the holder, want < %v", m, bound)
	}
	if m := slices.Max(handOffs); m >= bound {
		t.Errorf("a hand-off took %v, want < %v", m, bound)
	}
}

// A release request lost on its way to the holder's instance is published
// again, so the holder is still asked.
func TestLostReleaseRequestIsRepublished(t *testing.T) {
	srv := testredis.Start(t)
	prefix := uniquePrefix()
	var dropped atomic.Int64
	optsA := Options{KeyPrefix: prefix, dropMessage: func(channel, payload string) bool {
		// Drop the first release request; let the rest through.
		return channel == prefix+"release-request" && dropped.Add(1) == 1
	}}
	optsB := Options{KeyPrefix: prefix, PollInterval: 100 * time.Millisecond, RepublishInterval: 300 * time.Millisecond}
	a := newLocker(t, newClient(t, srv.Addr), optsA)
	b := newLocker(t, newClient(t, srv.Addr), optsB)

	ka, kb := lockOf(t, a, "lost-request"), lockOf(t, b, "lost-request")
	ask := newSignal()
	lockWithin(t, ka, time.Second, ask.call)
	start := time.Now()
	done := lockAsync(kb, 10*time.Second)
	asked := ask.wait(t, 3*time.Second, "re-published release request")
	if dropped.Load() < 2 {
		t.Fatalf("the holder saw %d release requests, want the dropped one and a re-published one", dropped.Load())
	}
	t.Logf("holder asked %v after the first (dropped) request", asked.Sub(start))
	if err := ka.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	waitLocked(t, done, 2*time.Second, "hand-off after a lost request")
	if err := kb.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

// When the acquirer's instance receives nothing (its released notices are
// lost), polling SET NX still hands the lock over within about a poll
// interval of the Unlock.
func TestLostReleasedNoticeFallsBackToPolling(t *testing.T) {
	srv := testredis.Start(t)
	prefix := uniquePrefix()
	const poll = 150 * time.Millisecond
	var dropped atomic.Int64
	optsB := Options{KeyPrefix: prefix, PollInterval: poll, dropMessage: func(channel, payload string) bool {
		dropped.Add(1)
		return true
	}}
	a := newLocker(t, newClient(t, srv.Addr), Options{KeyPrefix: prefix})
	b := newLocker(t, newClient(t, srv.Addr), optsB)

	var handOffs []time.Duration
	for i := range 5 {
		id := fmt.Sprintf("lost-released-%d", i)
		ka, kb := lockOf(t, a, id), lockOf(t, b, id)
		ask := newSignal()
		lockWithin(t, ka, time.Second, ask.call)
		done := lockAsync(kb, 10*time.Second)
		ask.wait(t, 3*time.Second, "release request")
		unlocked := time.Now()
		if err := ka.Unlock(); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		acquired := waitLocked(t, done, 3*time.Second, "hand-off by polling")
		handOffs = append(handOffs, acquired.Sub(unlocked))
		if err := kb.Unlock(); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	}
	if dropped.Load() == 0 {
		t.Fatal("the test hook dropped no message; the test proves nothing")
	}
	t.Logf("Unlock → acquired by polling: median %v, max %v", median(handOffs), slices.Max(handOffs))
	if m := slices.Max(handOffs); m > poll+500*time.Millisecond {
		t.Errorf("polling took %v after Unlock, want ≤ %v", m, poll+500*time.Millisecond)
	}
}

// The subscription is re-established after Redis restarts, and release
// requests are delivered again.
func TestResubscribesAfterRedisRestart(t *testing.T) {
	srv := testredis.Start(t)
	opts := Options{KeyPrefix: uniquePrefix(), PollInterval: 20 * time.Second, RepublishInterval: 20 * time.Second}
	a := newLocker(t, newClient(t, srv.Addr), opts)
	b := newLocker(t, newClient(t, srv.Addr), opts)
	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for a.subscriptions.Load() < 2 || b.subscriptions.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not subscribed again after a restart: %d and %d subscriptions", a.subscriptions.Load(), b.subscriptions.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	measureHandOffs(t, a, b, "restart")
}

// A holder whose client is gone (so its renewals fail) is asked to release,
// and loses the lock once its lease runs out, not before: another instance
// then gets it, and the dead holder's Unlock cannot delete the new key.
func TestDeadHolderLosesLockAfterLease(t *testing.T) {
	srv := testredis.Start(t)
	const lease, renew = 900 * time.Millisecond, 150 * time.Millisecond
	opts := Options{KeyPrefix: uniquePrefix(), Lease: lease, RenewInterval: renew, PollInterval: 50 * time.Millisecond}
	clientA := redis.NewClient(&redis.Options{Addr: srv.Addr})
	a := newLocker(t, clientA, opts)
	b := newLocker(t, newClient(t, srv.Addr), opts)
	raw := newClient(t, srv.Addr)

	ka, kb := lockOf(t, a, "dead"), lockOf(t, b, "dead")
	ask := newSignal()
	lockWithin(t, ka, time.Second, ask.call)
	// Kill A's connection to Redis: its renewals fail from now on.
	ctx := context.Background()
	pttlBefore, err := raw.PTTL(ctx, ka.key).Result()
	if err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	if err := clientA.Close(); err != nil {
		t.Fatal(err)
	}

	ask.wait(t, 2*renew+time.Second, "failed renewal")
	done := lockAsync(kb, lease+5*time.Second)
	acquired := waitLocked(t, done, lease+5*time.Second, "lock of a dead holder")
	waited := acquired.Sub(died)
	t.Logf("lease %v (TTL %v when the holder died): taken over after %v", lease, pttlBefore, waited)
	if waited < pttlBefore-100*time.Millisecond {
		t.Errorf("lock taken over %v after the holder died, before its lease ran out (TTL was %v)", waited, pttlBefore)
	}
	if waited > lease+time.Second {
		t.Errorf("lock taken over only %v after the holder died (lease %v)", waited, lease)
	}

	if err := ka.Unlock(); err == nil {
		t.Error("the dead holder's Unlock succeeded")
	}
	if got, err := raw.Get(ctx, kb.key).Result(); err != nil || got != kb.token() {
		t.Fatalf("after the dead holder's Unlock the key holds %q (%v), want the new holder's token", got, err)
	}
	if err := kb.Unlock(); err != nil {
		t.Fatalf("new holder's Unlock: %v", err)
	}
}

// Only the owner's Unlock deletes the key. A holder whose key was taken over
// is told by its next renewal and its Unlock leaves the new owner's key.
func TestOnlyOwnerUnlocks(t *testing.T) {
	srv := testredis.Start(t)
	const lease, renew = 900 * time.Millisecond, 100 * time.Millisecond
	a := newLocker(t, newClient(t, srv.Addr), Options{KeyPrefix: uniquePrefix(), Lease: lease, RenewInterval: renew})
	raw := newClient(t, srv.Addr)
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		steal func(key string) error
		want  string // the key's value after the old holder's Unlock; "" = absent
	}{
		{"taken", func(key string) error { return raw.Set(ctx, key, "someone-else", time.Minute).Err() }, "someone-else"},
		{"expired", func(key string) error { return raw.Del(ctx, key).Err() }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := lockOf(t, a, "owner-"+tc.name)
			ask := newSignal()
			lockWithin(t, k, time.Second, ask.call)
			if err := tc.steal(k.key); err != nil {
				t.Fatal(err)
			}
			ask.wait(t, 2*time.Second, "renewal finding the key "+tc.name)
			err := k.Unlock()
			if !errors.Is(err, ErrLockLost) {
				t.Fatalf("Unlock of a lost lock: got %v, want ErrLockLost", err)
			}
			got, err := raw.Get(ctx, k.key).Result()
			if errors.Is(err, redis.Nil) {
				got, err = "", nil
			}
			if err != nil || got != tc.want {
				t.Fatalf("key after Unlock: %q (%v), want %q", got, err, tc.want)
			}
		})
	}

	t.Run("NotLocked", func(t *testing.T) {
		k := lockOf(t, a, "owner-unlocked")
		if err := k.Unlock(); !errors.Is(err, ErrNotLocked) {
			t.Fatalf("Unlock without Lock: got %v, want ErrNotLocked", err)
		}
		lockWithin(t, k, time.Second, func() {})
		if err := k.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := k.Unlock(); !errors.Is(err, ErrNotLocked) {
			t.Fatalf("second Unlock: got %v, want ErrNotLocked", err)
		}
	})
}

// Renewals keep a held lock past several leases: its key never expires and
// nobody else can take it.
func TestRenewalKeepsLock(t *testing.T) {
	srv := testredis.Start(t)
	// A renewal may come up to half a second late (a loaded machine) before
	// the lease runs out.
	const lease, renew = 600 * time.Millisecond, 100 * time.Millisecond
	opts := Options{KeyPrefix: uniquePrefix(), Lease: lease, RenewInterval: renew}
	a := newLocker(t, newClient(t, srv.Addr), opts)
	b := newLocker(t, newClient(t, srv.Addr), opts)
	raw := newClient(t, srv.Addr)
	ctx := context.Background()

	ka := lockOf(t, a, "renew")
	ask := newSignal()
	lockWithin(t, ka, time.Second, ask.call)
	token := ka.token()
	end := time.Now().Add(5 * lease)
	for time.Now().Before(end) {
		got, err := raw.Get(ctx, ka.key).Result()
		if err != nil || got != token {
			t.Fatalf("key of a held lock: %q (%v), want its token", got, err)
		}
		time.Sleep(20 * time.Millisecond) // sampling the key, not synchronising
	}
	if ask.called() {
		t.Fatal("the holder was asked to release though nobody wanted the lock")
	}

	kb := lockOf(t, b, "renew")
	bctx, cancel := context.WithTimeout(ctx, lease)
	defer cancel()
	if err := kb.Lock(bctx, func() {}); !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("Lock of a renewed lock: got %v, want ErrLockTimeout", err)
	}
	if err := ka.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if n, err := raw.Exists(ctx, ka.key).Result(); err != nil || n != 0 {
		t.Fatalf("key after Unlock: exists=%d (%v)", n, err)
	}
}

// A Redis failure while acquiring is an error that wraps ErrUnavailable (503
// from tusd) and the cause, returned without waiting for the context.
func TestRedisDownWhileAcquiring(t *testing.T) {
	srv := testredis.Start(t)
	l := newLocker(t, newClient(t, srv.Addr), Options{KeyPrefix: uniquePrefix()})
	srv.Stop()

	k := lockOf(t, l, "down")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := k.Lock(ctx, func() {})
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Lock succeeded with Redis down")
	}
	if errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("got ErrLockTimeout, want an unavailable error: %v", err)
	}
	var herr handler.Error
	if !errors.As(err, &herr) || herr.HTTPResponse.StatusCode != http.StatusServiceUnavailable || herr.HTTPResponse.Header["Retry-After"] == "" {
		t.Fatalf("error %v carries no 503 with Retry-After for tusd", err)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error %v does not wrap ErrUnavailable and the cause", err)
	}
	if elapsed > 10*time.Second {
		t.Fatalf("Lock took %v to report Redis down", elapsed)
	}
	t.Logf("Redis down reported after %v: %v", elapsed, err)
}

// Close stops renewals and asks holders to release, leaves their keys to
// their Unlock (or the lease), and refuses new locks.
func TestClose(t *testing.T) {
	srv := testredis.Start(t)
	l, err := New(newClient(t, srv.Addr), Options{KeyPrefix: uniquePrefix()})
	if err != nil {
		t.Fatal(err)
	}
	raw := newClient(t, srv.Addr)
	ctx := context.Background()
	k := lockOf(t, l, "close")
	ask := newSignal()
	lockWithin(t, k, time.Second, ask.call)

	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if !ask.called() {
		t.Error("Close did not ask the holder to release")
	}
	if n, err := raw.Exists(ctx, k.key).Result(); err != nil || n != 1 {
		t.Fatalf("key after Close: exists=%d (%v), want it left to Unlock", n, err)
	}
	if err := lockOf(t, l, "other").Lock(ctx, func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close: got %v, want ErrClosed", err)
	}
	if err := k.Unlock(); err != nil {
		t.Fatalf("Unlock after Close: %v", err)
	}
	if n, err := raw.Exists(ctx, k.key).Result(); err != nil || n != 0 {
		t.Fatalf("key after Unlock: exists=%d (%v)", n, err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// New fails when Redis cannot confirm the subscription.
func TestNewNeedsRedis(t *testing.T) {
	srv := testredis.Start(t)
	addr := srv.Addr
	srv.Stop()
	client := newClient(t, addr)
	if l, err := New(client, Options{OpTimeout: 2 * time.Second}); err == nil {
		l.Close()
		t.Fatal("New succeeded without Redis")
	}
}

func TestOptionsValidated(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, opts := range []Options{
		{Lease: time.Second, RenewInterval: time.Second},
		{Lease: time.Second, RenewInterval: -time.Millisecond},
		{Lease: time.Microsecond},
		{PollInterval: -time.Second},
	} {
		if l, err := New(client, opts); err == nil {
			l.Close()
			t.Errorf("New accepted %+v", opts)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted a nil client")
	}
}

// Held sees a lock held by any instance, and its end.
func TestHeld(t *testing.T) {
	srv := testredis.Start(t)
	opts := Options{KeyPrefix: uniquePrefix()}
	a := newLocker(t, newClient(t, srv.Addr), opts)
	b := newLocker(t, newClient(t, srv.Addr), opts)
	ctx := context.Background()
	if held, err := b.Held(ctx, "h"); err != nil || held {
		t.Fatalf("Held before any lock: %v, %v; want false", held, err)
	}
	k := lockOf(t, a, "h")
	lockWithin(t, k, time.Second, func() {})
	if held, err := b.Held(ctx, "h"); err != nil || !held {
		t.Fatalf("Held on B while A holds the lock: %v, %v; want true", held, err)
	}
	if held, err := b.Held(ctx, "other"); err != nil || held {
		t.Fatalf("Held for another upload: %v, %v; want false", held, err)
	}
	if err := k.Unlock(); err != nil {
		t.Fatal(err)
	}
	if held, err := b.Held(ctx, "h"); err != nil || held {
		t.Fatalf("Held after Unlock: %v, %v; want false", held, err)
	}
	srv.Stop()
	if _, err := b.Held(ctx, "h"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Held with Redis down: %v; want ErrUnavailable", err)
	}
}

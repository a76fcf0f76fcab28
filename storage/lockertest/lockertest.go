// Package lockertest is a contract suite for tusd lockers (handler.Locker):
// the semantics of tusd's memorylocker, which every locker of the gateway
// must share.
package lockertest

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Timing of the suite. Waits that must end are bounded by waitLimit; waits
// that must time out use shortTimeout.
const (
	waitLimit    = 10 * time.Second
	shortTimeout = 300 * time.Millisecond
)

// Run runs the contract against the lockers that newLocker returns; every
// subtest asks for a fresh locker and uses its own upload IDs.
func Run(t *testing.T, newLocker func(t *testing.T) handler.Locker) {
	t.Run("Exclusive", func(t *testing.T) { testExclusive(t, newLocker(t)) })
	t.Run("HandOff", func(t *testing.T) { testHandOff(t, newLocker(t)) })
	t.Run("TimeoutIsErrLockTimeout", func(t *testing.T) { testTimeout(t, newLocker(t)) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceled(t, newLocker(t)) })
	t.Run("IndependentIDs", func(t *testing.T) { testIndependent(t, newLocker(t)) })
	t.Run("Serialised", func(t *testing.T) { testSerialised(t, newLocker(t)) })
	t.Run("LockAgainAfterUnlock", func(t *testing.T) { testRelock(t, newLocker(t)) })
	t.Run("SeveralWaitersAllGetIt", func(t *testing.T) { testSeveralWaiters(t, newLocker(t)) })
}

func newLock(t *testing.T, l handler.Locker, id string) handler.Lock {
	t.Helper()
	lock, err := l.NewLock(id)
	if err != nil {
		t.Fatalf("NewLock(%q): %v", id, err)
	}
	return lock
}

func mustLock(t *testing.T, lock handler.Lock, requestRelease func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := lock.Lock(ctx, requestRelease); err != nil {
		t.Fatalf("Lock: %v", err)
	}
}

func mustUnlock(t *testing.T, lock handler.Lock) {
	t.Helper()
	if err := lock.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

// signal returns a requestRelease that closes the returned channel on its
// first call.
func signal() (func(), <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }, ch
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s did not happen within %v", what, waitLimit)
	}
}

// A held lock cannot be taken, even after its holder was asked to release
// it: only Unlock frees it.
func testExclusive(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "exclusive")
	askA, askedA := signal()
	mustLock(t, a, askA)

	b := newLock(t, l, "exclusive")
	ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
	defer cancel()
	err := b.Lock(ctx, func() {})
	if err == nil {
		t.Fatal("a second Lock on a held ID succeeded")
	}
	if !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("second Lock: got %v, want handler.ErrLockTimeout", err)
	}
	waitFor(t, askedA, "the holder's requestRelease")
	mustUnlock(t, a)
}

// A second Lock asks the holder to release and gets the lock once (and not
// before) the holder unlocks.
func testHandOff(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "handoff")
	askA, askedA := signal()
	mustLock(t, a, askA)

	var unlocked atomic.Bool
	type result struct {
		err         error
		afterUnlock bool
	}
	done := make(chan result, 1)
	b := newLock(t, l, "handoff")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		err := b.Lock(ctx, func() {})
		done <- result{err, unlocked.Load()}
	}()

	waitFor(t, askedA, "the holder's requestRelease")
	select {
	case r := <-done:
		t.Fatalf("second Lock returned (%v) while the first was held", r.err)
	default:
	}
	unlocked.Store(true)
	mustUnlock(t, a)

	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("second Lock after Unlock: %v", r.err)
		}
		if !r.afterUnlock {
			t.Fatal("second Lock acquired before the holder unlocked")
		}
	case <-time.After(waitLimit):
		t.Fatalf("second Lock did not acquire within %v of Unlock", waitLimit)
	}
	mustUnlock(t, b)
}

// A Lock that cannot be had before its context's deadline returns
// handler.ErrLockTimeout, not much later than the deadline.
func testTimeout(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "timeout")
	mustLock(t, a, func() {})
	defer mustUnlock(t, a)

	b := newLock(t, l, "timeout")
	ctx, cancel := context.WithTimeout(context.Background(), shortTimeout)
	defer cancel()
	start := time.Now()
	err := b.Lock(ctx, func() {})
	elapsed := time.Since(start)
	if !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("got %v, want handler.ErrLockTimeout", err)
	}
	if elapsed < shortTimeout {
		t.Fatalf("Lock gave up after %v, before its deadline of %v", elapsed, shortTimeout)
	}
	if elapsed > shortTimeout+2*time.Second {
		t.Fatalf("Lock gave up %v after its deadline", elapsed-shortTimeout)
	}
}

// Canceling the waiter's context ends its wait with handler.ErrLockTimeout.
func testCanceled(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "canceled")
	askA, askedA := signal()
	mustLock(t, a, askA)
	defer mustUnlock(t, a)

	b := newLock(t, l, "canceled")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Lock(ctx, func() {}) }()
	waitFor(t, askedA, "the holder's requestRelease")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, handler.ErrLockTimeout) {
			t.Fatalf("got %v, want handler.ErrLockTimeout", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Lock did not return after its context was canceled")
	}
}

// Locks on different IDs neither block nor disturb each other.
func testIndependent(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "independent-a")
	askA, askedA := signal()
	mustLock(t, a, askA)

	b := newLock(t, l, "independent-b")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Lock(ctx, func() {}); err != nil {
		t.Fatalf("Lock on another ID: %v", err)
	}
	mustUnlock(t, b)
	select {
	case <-askedA:
		t.Fatal("a lock on another ID asked the holder to release")
	default:
	}
	mustUnlock(t, a)
}

// Many goroutines taking the same lock are serialised: a counter that only
// the lock protects ends right, nobody is ever inside with someone else, and
// the race detector sees nothing.
func testSerialised(t *testing.T, l handler.Locker) {
	const goroutines, rounds = 8, 15
	var (
		counter int // protected by the lock only
		inside  atomic.Int32
		wg      sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				lock, err := l.NewLock("serialised")
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				err = lock.Lock(ctx, func() {})
				cancel()
				if err != nil {
					t.Errorf("goroutine %d round %d: Lock: %v", g, r, err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("goroutine %d round %d: %d holders at once", g, r, n)
				}
				v := counter
				runtime.Gosched()
				counter = v + 1
				inside.Add(-1)
				if err := lock.Unlock(); err != nil {
					t.Errorf("goroutine %d round %d: Unlock: %v", g, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if counter != goroutines*rounds {
		t.Fatalf("counter = %d, want %d", counter, goroutines*rounds)
	}
}

// A lock can be taken again after Unlock, by the same lock object and by a
// new one, without waiting.
func testRelock(t *testing.T, l handler.Locker) {
	a := newLock(t, l, "relock")
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := a.Lock(ctx, func() {})
		cancel()
		if err != nil {
			t.Fatalf("Lock after Unlock (same object): %v", err)
		}
		mustUnlock(t, a)
	}
	b := newLock(t, l, "relock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Lock(ctx, func() {}); err != nil {
		t.Fatalf("Lock after Unlock (new object): %v", err)
	}
	mustUnlock(t, b)
}

// Several waiters on a held lock all get it in turn once the holder and each
// of them unlock, each asking the current holder to release.
func testSeveralWaiters(t *testing.T, l handler.Locker) {
	const waiters = 4
	a := newLock(t, l, "waiters")
	askA, askedA := signal()
	mustLock(t, a, askA)

	var holders atomic.Int32
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			lock, err := l.NewLock("waiters")
			if err != nil {
				t.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := lock.Lock(ctx, func() {}); err != nil {
				t.Errorf("waiter Lock: %v", err)
				return
			}
			if n := holders.Add(1); n != 1 {
				t.Errorf("%d holders at once", n)
			}
			holders.Add(-1)
			if err := lock.Unlock(); err != nil {
				t.Errorf("waiter Unlock: %v", err)
			}
		})
	}
	waitFor(t, askedA, "the holder's requestRelease")
	mustUnlock(t, a)
	wg.Wait()
}

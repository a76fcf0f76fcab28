package storage

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
)

// A read-only request finds the lock free and does not take it: a writer
// gets the lock at once while the read is under way.
func TestReadOnlyLockSkippedWhenFree(t *testing.T) {
	b, _ := newDiskBackend(t)
	ro, err := b.Lock(ReadOnly(context.Background()), "free", func() { t.Error("a read-only request that holds nothing was asked to release") })
	if err != nil {
		t.Fatalf("read-only lock: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w, err := b.Lock(ctx, "free", func() {})
	if err != nil {
		t.Fatalf("writer's lock while a read-only request runs: %v; want it at once", err)
	}
	if err := ro.Unlock(); err != nil {
		t.Fatalf("unlock of the skipped lock: %v", err)
	}
	// The read-only Unlock must not have released the writer's lock.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := b.Lock(ctx2, "free", func() {}); err == nil {
		t.Fatal("a second writer got the lock that the first still holds")
	}
	if err := w.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// A read-only request on a held lock takes it as tusd does: the holder is
// asked to release it (a reconnecting client's HEAD cuts its stale PATCH),
// and the read then holds the lock until its Unlock.
func TestReadOnlyLockHandsOffWhenHeld(t *testing.T) {
	b, _ := newDiskBackend(t)
	var asked atomic.Bool
	var held handler.Lock
	held, err := b.Lock(context.Background(), "busy", func() {
		asked.Store(true)
		go held.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ReadOnly(context.Background()), 2*time.Second)
	defer cancel()
	ro, err := b.Lock(ctx, "busy", func() {})
	if err != nil {
		t.Fatalf("read-only lock on a held upload: %v", err)
	}
	if !asked.Load() {
		t.Fatal("the holder was not asked to release the lock")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	// A writer now waits for (and asks) the read-only request, which holds the lock.
	if _, err := b.Lock(ctx2, "busy", func() {}); err == nil {
		t.Fatal("a writer got the lock while the read-only request held it")
	}
	if err := ro.Unlock(); err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), time.Second)
	defer cancel3()
	w, err := b.Lock(ctx3, "busy", func() {})
	if err != nil {
		t.Fatalf("lock after the read-only request's Unlock: %v", err)
	}
	w.Unlock()
}

// heldElsewhere is an in-process locker that reports its locks as held by
// another instance, as the Redis locker does for a lock held elsewhere.
type heldElsewhere struct {
	handler.Locker
	held bool
	err  error
}

func (h *heldElsewhere) Held(context.Context, string) (bool, error) { return h.held, h.err }

// For a shared locker, a lock held on another instance (or an answer that
// cannot be had) makes the read-only request take the lock.
func TestReadOnlyLockAsksSharedLocker(t *testing.T) {
	for _, tc := range []struct {
		name     string
		held     bool
		err      error
		wantWait bool
	}{
		{"free everywhere", false, nil, false},
		{"held on another instance", true, nil, true},
		{"locker unavailable", false, errors.New("connection refused"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &heldElsewhere{Locker: memorylocker.New(), held: tc.held, err: tc.err}
			l := newContendedLocker(inner)
			// Hold the lock in the inner locker directly, as another instance would.
			other, _ := inner.NewLock("x")
			if err := other.Lock(context.Background(), func() {}); err != nil {
				t.Fatal(err)
			}
			defer other.Unlock()
			k, _ := l.NewLock("x")
			ctx, cancel := context.WithTimeout(ReadOnly(context.Background()), 100*time.Millisecond)
			defer cancel()
			err := k.Lock(ctx, func() {})
			if waited := err != nil; waited != tc.wantWait {
				t.Fatalf("read-only Lock: %v; want waiting for the holder: %v", err, tc.wantWait)
			}
			if err != nil && !errors.Is(err, handler.ErrFileLocked) {
				t.Fatalf("read-only Lock timed out with %v, want ErrFileLocked (423)", err)
			}
			if err == nil {
				k.Unlock()
			}
		})
	}
}

// countingHeld counts the questions to a shared locker.
type countingHeld struct {
	handler.Locker
	asked atomic.Int64
}

func (c *countingHeld) Held(context.Context, string) (bool, error) {
	c.asked.Add(1)
	return false, nil
}

// A burst of read-only requests asks the shared locker once per heldTTL and
// upload, not once per request.
func TestReadOnlyLockAnswerCached(t *testing.T) {
	inner := &countingHeld{Locker: memorylocker.New()}
	l := newContendedLocker(inner)
	ctx := ReadOnly(context.Background())
	read := func(id string) {
		t.Helper()
		k, _ := l.NewLock(id)
		if err := k.Lock(ctx, func() {}); err != nil {
			t.Fatalf("read-only Lock: %v", err)
		}
		if err := k.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for range 100 {
		read("a")
	}
	read("b")
	if time.Since(start) < heldTTL {
		if n := inner.asked.Load(); n != 2 {
			t.Fatalf("101 reads of two uploads asked the locker %d times, want 2", n)
		}
	}
	time.Sleep(heldTTL)
	read("a")
	if n := inner.asked.Load(); n < 3 {
		t.Fatalf("a read after heldTTL did not ask the locker again (%d questions)", n)
	}
}

// A read-only request does not wait out a holder that keeps the lock (an
// instance that died with it, until its lease ends): after readWait it reads
// without the lock. A writer still waits and gets 423.
func TestReadOnlyLockGivesUpOnStuckHolder(t *testing.T) {
	b, _ := newDiskBackend(t)
	b.locker.(*contendedLocker).readWait = 100 * time.Millisecond
	held, err := b.Lock(context.Background(), "stuck", func() {}) // never lets go
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	ctx, cancel := context.WithTimeout(ReadOnly(context.Background()), 5*time.Second)
	defer cancel()
	start := time.Now()
	ro, err := b.Lock(ctx, "stuck", func() {})
	if err != nil {
		t.Fatalf("read-only lock on a stuck holder: %v; want to read without it", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("read-only lock gave up after %v, want about 100ms", waited)
	}
	if err := ro.Unlock(); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer wcancel()
	if _, err := b.Lock(wctx, "stuck", func() {}); !errors.Is(err, handler.ErrFileLocked) {
		t.Fatalf("writer on a stuck holder: %v, want ErrFileLocked", err)
	}
}

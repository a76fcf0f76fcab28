package storage

import (
	"context"
	"errors"
	"sync"

	"github.com/tus/tusd/v2/pkg/handler"
)

// readOnlyKey marks a request context as a read of an upload (see ReadOnly).
type readOnlyKey struct{}

// ReadOnly marks ctx as the context of a request that only reads an upload's
// state, such as a tus HEAD. tusd takes the upload's lock for a HEAD; a lock
// marked read-only is taken only when some request holds it (so that a
// reconnecting client's HEAD still cuts its own stale PATCH and answers the
// offset that PATCH saved) and is skipped when nobody does: concurrent HEADs
// then neither queue behind each other nor make a lock round trip to Redis.
func ReadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, readOnlyKey{}, true)
}

func isReadOnly(ctx context.Context) bool {
	v, _ := ctx.Value(readOnlyKey{}).(bool)
	return v
}

// HeldChecker is implemented by lockers shared between instances that can
// tell whether any instance holds an upload's lock.
type HeldChecker interface {
	Held(ctx context.Context, id string) (bool, error)
}

// contendedLocker wraps the locker that tusd and the gateway use. It answers
// a lock that cannot be had before the timeout with 423 Locked instead of
// tusd's 500 (tus-js-client retries a 423 but restarts an upload from byte 0
// after a 5xx on HEAD), counts the locks held in this process, and skips the
// lock of a read-only request when nobody holds it.
type contendedLocker struct {
	inner handler.Locker
	held  HeldChecker // nil: inner is local to this process

	mu    sync.Mutex
	local map[string]int // upload ID → locks held or being acquired here
}

func newContendedLocker(inner handler.Locker) *contendedLocker {
	l := &contendedLocker{inner: inner, local: make(map[string]int)}
	l.held, _ = inner.(HeldChecker)
	return l
}

func (l *contendedLocker) NewLock(id string) (handler.Lock, error) {
	lock, err := l.inner.NewLock(id)
	if err != nil {
		return nil, err
	}
	return &contendedLock{l: l, id: id, inner: lock}, nil
}

// enter and leave count a lock being acquired or held in this process.
func (l *contendedLocker) enter(id string) {
	l.mu.Lock()
	l.local[id]++
	l.mu.Unlock()
}

func (l *contendedLocker) leave(id string) {
	l.mu.Lock()
	if l.local[id] <= 1 {
		delete(l.local, id)
	} else {
		l.local[id]--
	}
	l.mu.Unlock()
}

// busy reports whether a request holds (or is acquiring) the lock of id, here
// or, for a shared locker, on any instance. When that cannot be known, it is
// busy: the caller then takes the lock as usual and meets the same error.
func (l *contendedLocker) busy(ctx context.Context, id string) bool {
	l.mu.Lock()
	n := l.local[id]
	l.mu.Unlock()
	if n > 0 {
		return true
	}
	if l.held == nil {
		return false
	}
	held, err := l.held.Held(ctx, id)
	return held || err != nil
}

type contendedLock struct {
	l     *contendedLocker
	id    string
	inner handler.Lock

	// state of the current Lock call, until Unlock
	skipped bool // a read-only request found the lock free and did not take it
	counted bool // counted in l.local
}

func (k *contendedLock) Lock(ctx context.Context, requestRelease func()) error {
	if isReadOnly(ctx) && !k.l.busy(ctx, k.id) {
		k.skipped = true
		return nil
	}
	k.l.enter(k.id)
	err := k.inner.Lock(ctx, requestRelease)
	if err != nil {
		k.l.leave(k.id)
		if errors.Is(err, handler.ErrLockTimeout) {
			return handler.ErrFileLocked
		}
		return err
	}
	k.counted = true
	return nil
}

func (k *contendedLock) Unlock() error {
	if k.skipped {
		k.skipped = false
		return nil
	}
	if k.counted {
		k.counted = false
		defer k.l.leave(k.id)
	}
	return k.inner.Unlock()
}

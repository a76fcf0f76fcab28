package storage

import (
	"context"
	"errors"
	"sync"
	"time"

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

	// readWait bounds how long a read-only request waits for a held lock.
	readWait time.Duration

	mu    sync.Mutex
	local map[string]int // upload ID → locks held or being acquired here
	// remote caches the shared locker's answers for heldTTL.
	remote map[string]heldAnswer
	// infos caches the state of uploads for read-only requests (see
	// infocache.go); nil with a shared locker. gen counts the locks taken
	// and released here.
	infos map[string]cachedInfo
	gen   uint64
	now   func() time.Time
}

// heldTTL is how long a shared locker's answer about a lock held elsewhere
// is believed. A lock taken elsewhere within that time may go unseen by a
// read-only request, which then reads without it: the writer that just
// started is not cut (a poller should not cut it anyway), and a stale writer
// of a dead connection is cut by its client's next PATCH instead, at worst
// answered 409 with the offset to continue from. A HEAD flood on one upload
// then costs Redis a few commands a second instead of one per HEAD.
const heldTTL = 250 * time.Millisecond

// readLockWait is how long a read-only request waits for a lock that a
// request holds. A hand-off takes milliseconds, or as long as the holder needs
// to save what it received (an S3 part); a lock whose holder died stays taken
// until its lease ends (10 s with Redis), which a HEAD need not wait for.
const readLockWait = 3 * time.Second

type heldAnswer struct {
	held bool
	at   time.Time
}

func newContendedLocker(inner handler.Locker) *contendedLocker {
	l := &contendedLocker{inner: inner, readWait: readLockWait, local: make(map[string]int), remote: make(map[string]heldAnswer), now: time.Now}
	l.held, _ = inner.(HeldChecker)
	if l.held == nil {
		l.infos = make(map[string]cachedInfo)
	}
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
// Either drops the upload's cached state: its holder may change it.
func (l *contendedLocker) enter(id string) {
	l.mu.Lock()
	l.local[id]++
	l.changed(id)
	l.mu.Unlock()
}

func (l *contendedLocker) leave(id string) {
	l.mu.Lock()
	l.changed(id)
	if l.local[id] <= 1 {
		delete(l.local, id)
	} else {
		l.local[id]--
	}
	l.mu.Unlock()
}

// busy reports whether a request holds (or is acquiring) the lock of id, here
// or, for a shared locker, on any instance (as the locker said within the
// last heldTTL). When that cannot be known, it is busy: the caller then takes
// the lock as usual and meets the same error.
func (l *contendedLocker) busy(ctx context.Context, id string) bool {
	now := time.Now()
	l.mu.Lock()
	n := l.local[id]
	a, cached := l.remote[id]
	l.mu.Unlock()
	if n > 0 {
		return true
	}
	if l.held == nil {
		return false
	}
	if cached && now.Sub(a.at) < heldTTL && !now.Before(a.at) {
		return a.held
	}
	held, err := l.held.Held(ctx, id)
	if err != nil {
		return true
	}
	l.mu.Lock()
	if len(l.remote) >= maxHeldAnswers {
		for k, v := range l.remote {
			if now.Sub(v.at) >= heldTTL || len(l.remote) >= maxHeldAnswers {
				delete(l.remote, k)
			}
		}
	}
	l.remote[id] = heldAnswer{held: held, at: now}
	l.mu.Unlock()
	return held
}

// maxHeldAnswers bounds the cache of answers; an arbitrary part of a full
// cache makes room.
const maxHeldAnswers = 4096

type contendedLock struct {
	l     *contendedLocker
	id    string
	inner handler.Lock

	// state of the current Lock call, until Unlock
	skipped bool // a read-only request found the lock free and did not take it
	counted bool // counted in l.local
}

func (k *contendedLock) Lock(ctx context.Context, requestRelease func()) error {
	readOnly := isReadOnly(ctx)
	if readOnly && !k.l.busy(ctx, k.id) {
		k.skipped = true
		return nil
	}
	lctx := ctx
	if readOnly {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, k.l.readWait)
		defer cancel()
	}
	k.l.enter(k.id)
	err := k.inner.Lock(lctx, requestRelease)
	if err != nil {
		k.l.leave(k.id)
		if readOnly && ctx.Err() == nil && errors.Is(err, handler.ErrLockTimeout) {
			// The holder was asked to give the upload up and did not within
			// readWait: an instance that died holding the lock (until its
			// lease ends), or a write still saving. A read need not wait:
			// it answers what is stored.
			k.skipped = true
			return nil
		}
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

package auth

import (
	"context"
	"time"
)

// Observer receives the duration of one call into a session store, by
// operation (session_create, session_get, session_lookup_slot,
// session_update, session_rebind, session_delete, session_expired,
// session_ping); the gateway's metrics record it.
type Observer func(op string, took time.Duration)

// Timed returns store with the duration of every call reported to observe.
func Timed(store Store, observe Observer) Store {
	t := timedSessionStore{inner: store, observe: observe}
	if sc, ok := store.(SlotCreator); ok {
		return timedSlotCreator{timedSessionStore: t, sc: sc}
	}
	return t
}

// timedSlotCreator is the timed store of a SlotCreator: it stays one, so
// that Sessions.Open still makes one call (one round trip to Redis) instead
// of a lookup and a create. CreateAtSlot is timed as session_create.
type timedSlotCreator struct {
	timedSessionStore
	sc SlotCreator
}

// ResolveSlot implements SlotResolver: the store's own, or its lookup and
// read, each timed as its operation.
func (s timedSessionStore) ResolveSlot(ctx context.Context, slotKey, ownID string) (Session, error) {
	if r, ok := s.inner.(SlotResolver); ok {
		defer since(s.observe, "session_resolve_slot", time.Now())
		return r.ResolveSlot(ctx, slotKey, ownID)
	}
	return lookupSlotSession(ctx, s, slotKey, ownID)
}

func (s timedSlotCreator) CreateAtSlot(ctx context.Context, sess Session) (Session, bool, string, error) {
	defer since(s.observe, "session_create", time.Now())
	return s.sc.CreateAtSlot(ctx, sess)
}

type timedSessionStore struct {
	inner   Store
	observe Observer
}

func (s timedSessionStore) Create(ctx context.Context, sess Session) (Session, bool, error) {
	defer since(s.observe, "session_create", time.Now())
	return s.inner.Create(ctx, sess)
}

func (s timedSessionStore) Get(ctx context.Context, uploadID string) (Session, error) {
	defer since(s.observe, "session_get", time.Now())
	return s.inner.Get(ctx, uploadID)
}

func (s timedSessionStore) LookupSlot(ctx context.Context, slotKey string) (string, error) {
	defer since(s.observe, "session_lookup_slot", time.Now())
	return s.inner.LookupSlot(ctx, slotKey)
}

func (s timedSessionStore) Update(ctx context.Context, uploadID string, fn func(*Session) error) (Session, error) {
	defer since(s.observe, "session_update", time.Now())
	return s.inner.Update(ctx, uploadID, fn)
}

func (s timedSessionStore) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*Session) error) (Session, error) {
	defer since(s.observe, "session_rebind", time.Now())
	return s.inner.Rebind(ctx, uploadID, slotKey, fn)
}

func (s timedSessionStore) Delete(ctx context.Context, uploadID string) error {
	defer since(s.observe, "session_delete", time.Now())
	return s.inner.Delete(ctx, uploadID)
}

func (s timedSessionStore) Expired(ctx context.Context, t time.Time, limit int) ([]Session, error) {
	defer since(s.observe, "session_expired", time.Now())
	return s.inner.Expired(ctx, t, limit)
}

func (s timedSessionStore) Ping(ctx context.Context) error {
	defer since(s.observe, "session_ping", time.Now())
	return s.inner.Ping(ctx)
}

func (s timedSessionStore) Close() error { return s.inner.Close() }

func since(observe Observer, op string, start time.Time) { observe(op, time.Since(start)) }

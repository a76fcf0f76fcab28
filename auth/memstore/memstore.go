// Package memstore keeps upload sessions in process memory: the auth.Store
// that unit tests use and the reference the other stores are compared with.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// Store is an auth.Store that keeps sessions in process memory. Nothing
// survives a restart, so it serves unit tests and is the reference that the
// other stores are compared with. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	closed   bool
	sessions map[string]auth.Session // upload ID → session
	slots    map[string]string       // slot key → upload ID
}

var _ auth.Store = (*Store)(nil)

// New returns an empty in-memory store.
func New() *Store {
	return &Store{
		sessions: make(map[string]auth.Session),
		slots:    make(map[string]string),
	}
}

// errStoreClosed is returned by every method of a closed Store.
var errStoreClosed = fmt.Errorf("memory session store is closed: %w", auth.ErrStoreUnavailable)

// lock takes the store's mutex unless ctx is done or the store is closed; on
// success the caller must unlock.
func (m *Store) lock(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("%s: %w", op, errStoreClosed)
	}
	return nil
}

// Create implements auth.Store.
func (m *Store) Create(ctx context.Context, s auth.Session) (auth.Session, bool, error) {
	if err := record.CheckNew(s); err != nil {
		return auth.Session{}, false, err
	}
	if err := m.lock(ctx, "create session"); err != nil {
		return auth.Session{}, false, err
	}
	defer m.mu.Unlock()
	if old, ok := m.sessions[s.UploadID]; ok {
		return old, false, nil
	}
	maps := record.StoresMapping(s)
	s = record.Normalize(s)
	m.sessions[s.UploadID] = s
	if _, mapped := m.slots[s.SlotKey]; !mapped && maps {
		m.slots[s.SlotKey] = s.UploadID
	}
	return s, true, nil
}

// Get implements auth.Store.
func (m *Store) Get(ctx context.Context, uploadID string) (auth.Session, error) {
	if err := m.lock(ctx, "get session"); err != nil {
		return auth.Session{}, err
	}
	defer m.mu.Unlock()
	s, ok := m.sessions[uploadID]
	if !ok {
		return auth.Session{}, fmt.Errorf("get session: %w", auth.ErrSessionNotFound)
	}
	return s, nil
}

// LookupSlot implements auth.Store.
func (m *Store) LookupSlot(ctx context.Context, slotKey string) (string, error) {
	if err := m.lock(ctx, "look up slot"); err != nil {
		return "", err
	}
	defer m.mu.Unlock()
	id, ok := m.slots[slotKey]
	if !ok {
		return "", fmt.Errorf("look up slot: %w", auth.ErrSessionNotFound)
	}
	return id, nil
}

// Update implements auth.Store.
func (m *Store) Update(ctx context.Context, uploadID string, fn func(*auth.Session) error) (auth.Session, error) {
	if err := m.lock(ctx, "update session"); err != nil {
		return auth.Session{}, err
	}
	defer m.mu.Unlock()
	s, err := m.apply(uploadID, fn)
	if err != nil {
		return auth.Session{}, fmt.Errorf("update session: %w", err)
	}
	return s, nil
}

// Rebind implements auth.Store.
func (m *Store) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*auth.Session) error) (auth.Session, error) {
	if slotKey == "" {
		return auth.Session{}, errors.New("rebind session: empty slot key")
	}
	if err := m.lock(ctx, "rebind session"); err != nil {
		return auth.Session{}, err
	}
	defer m.mu.Unlock()
	if _, ok := m.sessions[uploadID]; !ok {
		return auth.Session{}, fmt.Errorf("rebind session: %w", auth.ErrSessionNotFound)
	}
	if mapped, ok := m.slots[slotKey]; ok && mapped != uploadID {
		return auth.Session{}, fmt.Errorf("rebind session: %w", auth.ErrSlotTaken)
	}
	s, err := m.apply(uploadID, fn)
	if err != nil {
		return auth.Session{}, fmt.Errorf("rebind session: %w", err)
	}
	m.slots[slotKey] = uploadID
	return s, nil
}

// apply runs fn on a copy of the stored session and stores the result; the
// caller holds the mutex.
func (m *Store) apply(uploadID string, fn func(*auth.Session) error) (auth.Session, error) {
	s, ok := m.sessions[uploadID]
	if !ok {
		return auth.Session{}, auth.ErrSessionNotFound
	}
	if err := fn(&s); err != nil {
		return auth.Session{}, err
	}
	if s.UploadID != uploadID {
		return auth.Session{}, record.ErrUploadIDChanged
	}
	s = record.Normalize(s)
	m.sessions[uploadID] = s
	return s, nil
}

// Delete implements auth.Store.
func (m *Store) Delete(ctx context.Context, uploadID string) error {
	if err := m.lock(ctx, "delete session"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	delete(m.sessions, uploadID)
	for key, id := range m.slots {
		if id == uploadID {
			delete(m.slots, key)
		}
	}
	return nil
}

// Expired implements auth.Store.
func (m *Store) Expired(ctx context.Context, t time.Time, limit int) ([]auth.Session, error) {
	if err := m.lock(ctx, "list expired sessions"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if limit <= 0 {
		return nil, nil
	}
	var due []auth.Session
	for _, s := range m.sessions {
		if !s.SweepAt.IsZero() && s.SweepAt.Before(t) {
			due = append(due, s)
		}
	}
	slices.SortFunc(due, func(a, b auth.Session) int {
		if c := a.SweepAt.Compare(b.SweepAt); c != 0 {
			return c
		}
		return cmp.Compare(a.UploadID, b.UploadID)
	})
	if len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

// Ping implements auth.Store.
func (m *Store) Ping(ctx context.Context) error {
	if err := m.lock(ctx, "ping session store"); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Close implements auth.Store. Every later call fails with auth.ErrStoreUnavailable.
func (m *Store) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.sessions = nil
	m.slots = nil
	return nil
}

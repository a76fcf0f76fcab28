package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStore is a Store that keeps sessions in process memory. Nothing
// survives a restart, so it serves unit tests and is the reference that the
// other stores are compared with. It is safe for concurrent use.
type MemoryStore struct {
	mu       sync.Mutex
	closed   bool
	sessions map[string]Session // upload ID → session
	slots    map[string]string  // slot key → upload ID
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		sessions: make(map[string]Session),
		slots:    make(map[string]string),
	}
}

// errStoreClosed is returned by every method of a closed MemoryStore.
var errStoreClosed = fmt.Errorf("memory session store is closed: %w", ErrStoreUnavailable)

// lock takes the store's mutex unless ctx is done or the store is closed; on
// success the caller must unlock.
func (m *MemoryStore) lock(ctx context.Context, op string) error {
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

// Create implements Store.
func (m *MemoryStore) Create(ctx context.Context, s Session) (Session, bool, error) {
	if err := checkNewSession(s); err != nil {
		return Session{}, false, err
	}
	if err := m.lock(ctx, "create session"); err != nil {
		return Session{}, false, err
	}
	defer m.mu.Unlock()
	if old, ok := m.sessions[s.UploadID]; ok {
		return old, false, nil
	}
	s = normalizeSession(s)
	m.sessions[s.UploadID] = s
	if _, mapped := m.slots[s.SlotKey]; !mapped && mapsSlot(s) {
		m.slots[s.SlotKey] = s.UploadID
	}
	return s, true, nil
}

// Get implements Store.
func (m *MemoryStore) Get(ctx context.Context, uploadID string) (Session, error) {
	if err := m.lock(ctx, "get session"); err != nil {
		return Session{}, err
	}
	defer m.mu.Unlock()
	s, ok := m.sessions[uploadID]
	if !ok {
		return Session{}, fmt.Errorf("get session: %w", ErrSessionNotFound)
	}
	return s, nil
}

// LookupSlot implements Store.
func (m *MemoryStore) LookupSlot(ctx context.Context, slotKey string) (string, error) {
	if err := m.lock(ctx, "look up slot"); err != nil {
		return "", err
	}
	defer m.mu.Unlock()
	id, ok := m.slots[slotKey]
	if !ok {
		return "", fmt.Errorf("look up slot: %w", ErrSessionNotFound)
	}
	return id, nil
}

// Update implements Store.
func (m *MemoryStore) Update(ctx context.Context, uploadID string, fn func(*Session) error) (Session, error) {
	if err := m.lock(ctx, "update session"); err != nil {
		return Session{}, err
	}
	defer m.mu.Unlock()
	s, err := m.apply(uploadID, fn)
	if err != nil {
		return Session{}, fmt.Errorf("update session: %w", err)
	}
	return s, nil
}

// Rebind implements Store.
func (m *MemoryStore) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*Session) error) (Session, error) {
	if slotKey == "" {
		return Session{}, errors.New("rebind session: empty slot key")
	}
	if err := m.lock(ctx, "rebind session"); err != nil {
		return Session{}, err
	}
	defer m.mu.Unlock()
	if _, ok := m.sessions[uploadID]; !ok {
		return Session{}, fmt.Errorf("rebind session: %w", ErrSessionNotFound)
	}
	if mapped, ok := m.slots[slotKey]; ok && mapped != uploadID {
		return Session{}, fmt.Errorf("rebind session: %w", ErrSlotTaken)
	}
	s, err := m.apply(uploadID, fn)
	if err != nil {
		return Session{}, fmt.Errorf("rebind session: %w", err)
	}
	m.slots[slotKey] = uploadID
	return s, nil
}

// apply runs fn on a copy of the stored session and stores the result; the
// caller holds the mutex.
func (m *MemoryStore) apply(uploadID string, fn func(*Session) error) (Session, error) {
	s, ok := m.sessions[uploadID]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	if err := fn(&s); err != nil {
		return Session{}, err
	}
	if s.UploadID != uploadID {
		return Session{}, errUploadIDChanged
	}
	s = normalizeSession(s)
	m.sessions[uploadID] = s
	return s, nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(ctx context.Context, uploadID string) error {
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

// Expired implements Store.
func (m *MemoryStore) Expired(ctx context.Context, t time.Time, limit int) ([]Session, error) {
	if err := m.lock(ctx, "list expired sessions"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if limit <= 0 {
		return nil, nil
	}
	var due []Session
	for _, s := range m.sessions {
		if !s.SweepAt.IsZero() && s.SweepAt.Before(t) {
			due = append(due, s)
		}
	}
	slices.SortFunc(due, func(a, b Session) int {
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

// Ping implements Store.
func (m *MemoryStore) Ping(ctx context.Context) error {
	if err := m.lock(ctx, "ping session store"); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Close implements Store. Every later call fails with ErrStoreUnavailable.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.sessions = nil
	m.slots = nil
	return nil
}

// errUploadIDChanged is returned when an update function changes the upload ID.
var errUploadIDChanged = errors.New("the update changed the session's upload id")

// maxStoredUploadID bounds the length of an upload ID in a store (uploadgate's
// own IDs are at most 227 bytes).
const maxStoredUploadID = 1024

// checkNewSession rejects sessions that no store can key.
func checkNewSession(s Session) error {
	switch {
	case s.UploadID == "":
		return errors.New("create session: empty upload id")
	case len(s.UploadID) > maxStoredUploadID:
		return fmt.Errorf("create session: upload id longer than %d bytes", maxStoredUploadID)
	}
	return nil
}

// mapsSlot reports whether Create maps the slot of s.
func mapsSlot(s Session) bool {
	return s.Kind == KindWhole && s.SlotKey != ""
}

// normalizeSession strips monotonic clock readings so that a session reads
// back the same from every store (a serialised time has none).
func normalizeSession(s Session) Session {
	for _, t := range []*time.Time{
		&s.Created, &s.LastSeen, &s.IdleDeadline, &s.AbsDeadline,
		&s.FileExpires, &s.CompletedAt, &s.FirstCreated, &s.SweepAt,
	} {
		*t = t.Round(0)
	}
	return s
}

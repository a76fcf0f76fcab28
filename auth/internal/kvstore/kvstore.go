// Package kvstore is the session store of a single gateway, written once over
// any embedded, ordered key-value engine that commits a transaction durably:
// the key layout (the sessions, the slot mappings, the reverse slot index and
// the sweep index), the group commit of concurrent writes and the cache of
// decoded sessions. The engines (pebblestore, the default, and boltstore) are
// thin adapters of an Engine.
package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// Bucket names one of the store's key spaces.
type Bucket uint8

// The key spaces. Their values are part of the engines' on-disk layouts.
const (
	Sessions Bucket = iota // upload ID → session record (record.Encode)
	Slots                  // slot index key (record.SlotIndexKey) → upload ID
	Uploads                // len(upload ID) ‖ upload ID ‖ slot index key → nil (reverse of Slots, see below)
	Sweep                  // sweep time ‖ upload ID → nil
	numBuckets
)

// Buckets lists the key spaces, for engines that create or copy them.
var Buckets = [numBuckets]Bucket{Sessions, Slots, Uploads, Sweep}

// The reverse slot index lists the slots mapped to an upload, for Delete,
// except the slot its session names (SlotKey): that one Delete finds in the
// session record. Most uploads have no other slot, and so no reverse entry.
// A write that changes a session's SlotKey while the old slot stays mapped
// to the upload gives the old slot its reverse entry.

// Tx is a transaction of an Engine: a read-only one in View, a read-write
// one in Update. A read-write Tx reads its own writes.
type Tx interface {
	// Get returns the value of key in b, or nil when there is none. The value
	// is valid until the transaction ends and must not be changed.
	Get(b Bucket, key []byte) ([]byte, error)
	Put(b Bucket, key, value []byte) error
	Delete(b Bucket, key []byte) error
	// Scan calls fn with the entries of b whose key starts with prefix, in
	// key order, until fn returns false or an error. k and v are valid only
	// during the call, and fn must not write to b.
	Scan(b Bucket, prefix []byte, fn func(k, v []byte) (bool, error)) error
}

// Engine is an embedded key-value engine.
type Engine interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it durably (on
	// disk when Update returns nil). If fn fails, nothing of it is applied and
	// Update returns fn's error.
	Update(fn func(Tx) error) error
	// Close releases the engine.
	Close() error
}

// ErrClosed is returned by the calls made after Close.
var ErrClosed = errors.New("the session database is closed")

// Store is an auth.Store over an Engine. Every write is committed durably
// before the call returns. Writes that arrive while a commit is under way are
// committed together in the next transaction (group commit): each commit ends
// with a sync, so committing them one by one made concurrent creations queue
// behind each other's syncs. A write waits for no timer: alone, it is
// committed at once. Sessions are cached decoded, both those read and those
// written: Get and the writes that change a session read the cache instead of
// decoding the record. The cache is exact because this process is the
// database's only writer (the engines lock their files). A Store is safe for
// concurrent use.
type Store struct {
	eng Engine

	// writes carries write transactions to the committer (commitLoop); it is
	// unbuffered, so that the writers waiting at a commit are exactly those
	// the next commit takes.
	writes chan *write
	closed chan struct{}
	wg     sync.WaitGroup
	close  sync.Once

	cache sessionCache
	// commits counts write transactions (for tests of the grouping).
	commits atomic.Uint64
}

var (
	_ auth.Store        = (*Store)(nil)
	_ auth.SlotCreator  = (*Store)(nil)
	_ auth.SlotResolver = (*Store)(nil)
)

// New returns a Store over eng, which it owns from then on (Close closes it).
func New(eng Engine) *Store {
	st := &Store{
		eng:    eng,
		writes: make(chan *write),
		closed: make(chan struct{}),
		cache:  sessionCache{m: make(map[string]auth.Session)},
	}
	st.wg.Add(1)
	go st.commitLoop()
	return st
}

// buckets is a transaction as the store's writes see it. In a write
// transaction it also carries the sessions its writes have stored (nil for a
// deleted one) and the store's cache, so that a write reads the session it
// changes without decoding the record (see current).
type buckets struct {
	tx Tx

	written map[string]*auth.Session
	cache   *sessionCache
}

// current returns the stored session of an upload: as a write of this
// transaction left it, else as the cache has it, else decoded from the
// database. Only the committer may consult the cache here: it is the only
// writer, so the cache holds the committed session of every upload it has.
func (bk buckets) current(uploadID string) (auth.Session, bool, error) {
	if s, ok := bk.written[uploadID]; ok {
		if s == nil {
			return auth.Session{}, false, nil
		}
		return *s, true, nil
	}
	if bk.cache != nil {
		if s, ok, _ := bk.cache.get(uploadID); ok {
			return s, true, nil
		}
	}
	v, err := bk.tx.Get(Sessions, []byte(uploadID))
	if err != nil || v == nil {
		return auth.Session{}, false, err
	}
	s, err := record.Decode(uploadID, v)
	return s, err == nil, err
}

// view runs fn in a read-only transaction. Errors of fn are returned as they
// are; failures of the database itself are wrapped with auth.ErrStoreUnavailable.
func (st *Store) view(ctx context.Context, op string, fn func(buckets) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	select {
	case <-st.closed:
		return fmt.Errorf("%s: %w: %w", op, auth.ErrStoreUnavailable, ErrClosed)
	default:
	}
	var fnErr error
	err := st.eng.View(func(tx Tx) error {
		fnErr = fn(buckets{tx: tx})
		return fnErr
	})
	return txResult(op, err, fnErr)
}

// update runs fn in a read-write transaction, possibly together with other
// writers' fns (see commitLoop), and returns like view. fn may run more than
// once (if another fn of its group fails, the group is rolled back and run
// again without it), so it must set all of its results on every run. id is
// the upload whose session record fn may change (its cache entry is dropped).
func (st *Store) update(ctx context.Context, op, id string, fn func(buckets) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	w := &write{fn: fn, id: id, done: make(chan error, 1)}
	select {
	case st.writes <- w:
	case <-st.closed:
		return fmt.Errorf("%s: %w: %w", op, auth.ErrStoreUnavailable, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	// Once taken by the committer, the write is done whatever ctx says.
	return txResult(op, <-w.done, w.fnErr)
}

// txResult is the error of a transaction that ended with err, in which the
// caller's function returned fnErr.
func txResult(op string, err, fnErr error) error {
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fmt.Errorf("%s: %w", op, fnErr)
	default: // beginning or committing the transaction failed
		return fmt.Errorf("%s: %w: %w", op, auth.ErrStoreUnavailable, err)
	}
}

// write is one caller's write, on its way through the committer.
type write struct {
	fn    func(buckets) error
	id    string
	fnErr error      // what fn returned in its last run
	done  chan error // the transaction's outcome, once
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

// commitLoop commits the writes sent to st.writes until the store is closed:
// the first that arrives with every other writer already waiting.
func (st *Store) commitLoop() {
	defer st.wg.Done()
	for {
		var first *write
		select {
		case first = <-st.writes:
		case <-st.closed:
			return
		}
		group := []*write{first}
	gather:
		for len(group) < maxGroup {
			select {
			case w := <-st.writes:
				group = append(group, w)
			default:
				break gather
			}
		}
		st.commit(group)
	}
}

// errGroupMember rolls back a group in which one write's fn failed.
var errGroupMember = errors.New("a write of the group failed")

// commit runs the group's fns in one transaction and tells each writer the
// outcome. A fn that fails is run alone (its failure is its own: nothing of
// it is committed) and the rest of the group again without it.
func (st *Store) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		st.commits.Add(1)
		var written map[string]*auth.Session
		err := st.eng.Update(func(tx Tx) error {
			written = make(map[string]*auth.Session, len(group))
			bk := buckets{tx: tx, written: written, cache: &st.cache}
			for i, w := range group {
				if w.fnErr = w.fn(bk); w.fnErr != nil {
					failed = i
					if len(group) == 1 {
						return w.fnErr
					}
					return errGroupMember
				}
			}
			return nil
		})
		if failed < 0 || len(group) == 1 {
			if err == nil {
				st.cache.committed(group, written)
			}
			for _, w := range group {
				w.done <- err
			}
			return
		}
		st.commit(group[failed : failed+1])
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// Create implements auth.Store.
func (st *Store) Create(ctx context.Context, s auth.Session) (stored auth.Session, created bool, err error) {
	stored, created, _, err = st.create(ctx, s, false)
	return stored, created, err
}

// CreateAtSlot implements auth.SlotCreator: the slot check and the creation
// in one write transaction.
func (st *Store) CreateAtSlot(ctx context.Context, s auth.Session) (stored auth.Session, created bool, other string, err error) {
	return st.create(ctx, s, true)
}

// create is Create, and with atSlot CreateAtSlot.
func (st *Store) create(ctx context.Context, s auth.Session, atSlot bool) (stored auth.Session, created bool, other string, err error) {
	if err := record.CheckNew(s); err != nil {
		return auth.Session{}, false, "", err
	}
	maps := record.MapsSlot(s)
	key := record.SlotIndexKey(s.SlotKey)
	err = st.update(ctx, "create session", s.UploadID, func(bk buckets) error {
		stored, created, other = auth.Session{}, false, ""
		var mapped []byte // the upload the slot is mapped to
		if maps {
			if mapped, err = bk.tx.Get(Slots, key); err != nil {
				return err
			}
			if atSlot && mapped != nil && string(mapped) != s.UploadID {
				other = string(mapped)
				return nil
			}
		}
		var found bool
		if stored, found, err = bk.current(s.UploadID); err != nil || found {
			return err
		}
		if stored, err = putSession(bk, nil, s); err != nil {
			return err
		}
		created = true
		// A slot mapped already (to another upload, for Create) stays so. The
		// session's own slot needs no reverse index entry, and no mapping when
		// the session has the slot's own ID.
		if maps && mapped == nil && !s.OwnSlot {
			if err := bk.tx.Put(Slots, key, []byte(s.UploadID)); err != nil {
				return fmt.Errorf("write slot mapping: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return auth.Session{}, false, "", err
	}
	return stored, created, other, nil
}

// Get implements auth.Store.
func (st *Store) Get(ctx context.Context, uploadID string) (s auth.Session, err error) {
	if err := ctx.Err(); err != nil {
		return auth.Session{}, fmt.Errorf("get session: %w", err)
	}
	s, ok, gen := st.cache.get(uploadID)
	if ok {
		return s, nil
	}
	err = st.view(ctx, "get session", func(bk buckets) error {
		v, err := bk.tx.Get(Sessions, []byte(uploadID))
		if err != nil {
			return err
		}
		if v == nil {
			return auth.ErrSessionNotFound
		}
		s, err = record.Decode(uploadID, v)
		return err
	})
	if err != nil {
		return auth.Session{}, err
	}
	st.cache.put(s, gen)
	return s, nil
}

// LookupSlot implements auth.Store.
func (st *Store) LookupSlot(ctx context.Context, slotKey string) (uploadID string, err error) {
	err = st.view(ctx, "look up slot", func(bk buckets) error {
		v, err := bk.tx.Get(Slots, record.SlotIndexKey(slotKey))
		if err != nil {
			return err
		}
		if v == nil {
			return auth.ErrSessionNotFound
		}
		uploadID = string(v) // copies: v is only valid inside the transaction
		return nil
	})
	if err != nil {
		return "", err
	}
	return uploadID, nil
}

// ResolveSlot implements auth.SlotResolver: the slot's mapping and the
// session it leads to in one read transaction (the session from the cache
// when it is there).
func (st *Store) ResolveSlot(ctx context.Context, slotKey, ownID string) (s auth.Session, err error) {
	err = st.view(ctx, "resolve slot", func(bk buckets) error {
		id := ownID
		v, err := bk.tx.Get(Slots, record.SlotIndexKey(slotKey))
		if err != nil {
			return err
		}
		if v != nil {
			id = string(v)
		}
		if c, ok, _ := st.cache.get(id); ok {
			s = c
		} else {
			if v, err = bk.tx.Get(Sessions, []byte(id)); err != nil {
				return err
			}
			if v == nil {
				return auth.ErrSessionNotFound
			}
			if s, err = record.Decode(id, v); err != nil {
				return err
			}
		}
		if id == ownID && s.Kind != auth.KindWhole {
			return auth.ErrSessionNotFound
		}
		return nil
	})
	if err != nil {
		return auth.Session{}, err
	}
	return s, nil
}

// Update implements auth.Store.
func (st *Store) Update(ctx context.Context, uploadID string, fn func(*auth.Session) error) (s auth.Session, err error) {
	err = st.update(ctx, "update session", uploadID, func(bk buckets) error {
		s, err = modifySession(bk, uploadID, fn)
		return err
	})
	if err != nil {
		return auth.Session{}, err
	}
	return s, nil
}

// Rebind implements auth.Store.
func (st *Store) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*auth.Session) error) (s auth.Session, err error) {
	if slotKey == "" {
		return auth.Session{}, errors.New("rebind session: empty slot key")
	}
	err = st.update(ctx, "rebind session", uploadID, func(bk buckets) error {
		if _, found, err := bk.current(uploadID); err != nil || !found {
			if err == nil {
				err = auth.ErrSessionNotFound
			}
			return err
		}
		prev, err := bk.tx.Get(Slots, record.SlotIndexKey(slotKey))
		if err != nil {
			return err
		}
		if prev != nil && string(prev) != uploadID {
			return auth.ErrSlotTaken
		}
		if s, err = modifySession(bk, uploadID, fn); err != nil {
			return err
		}
		return mapSlot(bk, slotKey, s)
	})
	if err != nil {
		return auth.Session{}, err
	}
	return s, nil
}

// Delete implements auth.Store.
func (st *Store) Delete(ctx context.Context, uploadID string) error {
	return st.update(ctx, "delete session", uploadID, func(bk buckets) error {
		id := []byte(uploadID)
		old, found, err := bk.current(uploadID)
		if err != nil {
			return err
		}
		if found {
			if !old.SweepAt.IsZero() {
				if err := bk.tx.Delete(Sweep, sweepKey(old.SweepAt, uploadID)); err != nil {
					return fmt.Errorf("delete sweep entry: %w", err)
				}
			}
			if err := bk.tx.Delete(Sessions, id); err != nil {
				return fmt.Errorf("delete session record: %w", err)
			}
			bk.written[uploadID] = nil
			if old.SlotKey != "" {
				if err := unmapSlot(bk, record.SlotIndexKey(old.SlotKey), id); err != nil {
					return err
				}
			}
		}
		// Collect first, then delete: no engine lets a scan see its own deletes.
		prefix := uploadPrefix(uploadID)
		var keys [][]byte
		err = bk.tx.Scan(Uploads, prefix, func(k, _ []byte) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("read reverse slot mappings: %w", err)
		}
		for _, k := range keys {
			if err := unmapSlot(bk, k[len(prefix):], id); err != nil {
				return err
			}
			if err := bk.tx.Delete(Uploads, k); err != nil {
				return fmt.Errorf("delete reverse slot mapping: %w", err)
			}
		}
		return nil
	})
}

// unmapSlot deletes the mapping of a slot (by its index key) if it names id.
func unmapSlot(bk buckets, key, id []byte) error {
	v, err := bk.tx.Get(Slots, key)
	if err != nil || !bytes.Equal(v, id) {
		return err
	}
	if err := bk.tx.Delete(Slots, key); err != nil {
		return fmt.Errorf("delete slot mapping: %w", err)
	}
	return nil
}

// Expired implements auth.Store. It reads only the due part of the sweep index.
func (st *Store) Expired(ctx context.Context, t time.Time, limit int) (due []auth.Session, err error) {
	if limit <= 0 {
		return nil, nil
	}
	before := record.SweepNanos(t)
	err = st.view(ctx, "list expired sessions", func(bk buckets) error {
		due = due[:0]
		return bk.tx.Scan(Sweep, nil, func(k, _ []byte) (bool, error) {
			if len(k) < 8 {
				return false, errors.New("malformed sweep index entry")
			}
			if decodeSweepNanos(k) >= before {
				return false, nil
			}
			id := string(k[8:])
			v, err := bk.tx.Get(Sessions, k[8:])
			if err != nil || v == nil {
				return err == nil, err // no record cannot happen: every write keeps the index consistent
			}
			s, err := record.Decode(id, v)
			if err != nil {
				return false, err
			}
			if s.SweepAt.IsZero() || !bytes.Equal(sweepKey(s.SweepAt, s.UploadID), k) {
				return true, nil // likewise
			}
			due = append(due, s)
			return len(due) < limit, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return due, nil
}

// Ping implements auth.Store: it runs a read transaction.
func (st *Store) Ping(ctx context.Context) error {
	return st.view(ctx, "ping session store", func(buckets) error { return nil })
}

// Close implements auth.Store: it closes the engine, which releases its lock.
func (st *Store) Close() error {
	first := false
	st.close.Do(func() { close(st.closed); first = true })
	st.wg.Wait() // the commit under way ends first
	if !first {
		return nil
	}
	if err := st.eng.Close(); err != nil {
		return fmt.Errorf("close session database: %w", err)
	}
	return nil
}

// modifySession applies fn to the stored session and writes the result.
func modifySession(bk buckets, uploadID string, fn func(*auth.Session) error) (auth.Session, error) {
	old, found, err := bk.current(uploadID)
	if err != nil {
		return auth.Session{}, err
	}
	if !found {
		return auth.Session{}, auth.ErrSessionNotFound
	}
	s := old
	if err := fn(&s); err != nil {
		return auth.Session{}, err
	}
	if s.UploadID != uploadID {
		return auth.Session{}, record.ErrUploadIDChanged
	}
	return putSession(bk, &old, s)
}

// putSession writes s, replacing old (nil for a new session), and moves its
// sweep index entry. It returns s as it now reads back, and records it in
// bk.written.
func putSession(bk buckets, old *auth.Session, s auth.Session) (auth.Session, error) {
	s = record.Stored(s)
	v, err := record.Encode(s)
	if err != nil {
		return auth.Session{}, err
	}
	stored := s
	if old != nil && old.SlotKey != "" && old.SlotKey != s.SlotKey {
		// The old slot loses its place in the record: if it stays mapped
		// to the upload, the reverse index must list it.
		if err := indexReverse(bk, old.SlotKey, s.UploadID); err != nil {
			return auth.Session{}, err
		}
	}
	if old != nil && !old.SweepAt.IsZero() {
		if err := bk.tx.Delete(Sweep, sweepKey(old.SweepAt, old.UploadID)); err != nil {
			return auth.Session{}, fmt.Errorf("delete sweep entry: %w", err)
		}
	}
	if !s.SweepAt.IsZero() {
		if err := bk.tx.Put(Sweep, sweepKey(s.SweepAt, s.UploadID), nil); err != nil {
			return auth.Session{}, fmt.Errorf("write sweep entry: %w", err)
		}
	}
	if err := bk.tx.Put(Sessions, []byte(s.UploadID), v); err != nil {
		return auth.Session{}, fmt.Errorf("write session record: %w", err)
	}
	bk.written[s.UploadID] = &stored
	return stored, nil
}

// mapSlot maps slotKey to the upload of s, as stored, unless it is mapped
// already: to that upload (nothing to do) or to another upload
// (auth.ErrSlotTaken, nothing changed). A slot other than s.SlotKey gets its
// reverse index entry.
func mapSlot(bk buckets, slotKey string, s auth.Session) error {
	key := record.SlotIndexKey(slotKey)
	prev, err := bk.tx.Get(Slots, key)
	if err != nil {
		return err
	}
	if prev != nil {
		if string(prev) == s.UploadID {
			return nil
		}
		return auth.ErrSlotTaken
	}
	if err := bk.tx.Put(Slots, key, []byte(s.UploadID)); err != nil {
		return fmt.Errorf("write slot mapping: %w", err)
	}
	if slotKey == s.SlotKey {
		return nil
	}
	if err := bk.tx.Put(Uploads, append(uploadPrefix(s.UploadID), key...), nil); err != nil {
		return fmt.Errorf("write reverse slot mapping: %w", err)
	}
	return nil
}

// indexReverse gives slotKey its reverse index entry if it is mapped to
// uploadID.
func indexReverse(bk buckets, slotKey, uploadID string) error {
	key := record.SlotIndexKey(slotKey)
	v, err := bk.tx.Get(Slots, key)
	if err != nil || string(v) != uploadID {
		return err
	}
	if err := bk.tx.Put(Uploads, append(uploadPrefix(uploadID), key...), nil); err != nil {
		return fmt.Errorf("write reverse slot mapping: %w", err)
	}
	return nil
}

// UploadPrefix is the reverse-index prefix of an upload: its ID's length as
// two big-endian bytes, then the ID, so that no ID is a prefix of another's entries.
func uploadPrefix(uploadID string) []byte {
	p := make([]byte, 2, 2+len(uploadID)+64)
	binary.BigEndian.PutUint16(p, uint16(min(len(uploadID), record.MaxUploadID)))
	return append(p, uploadID...)
}

// ReverseKey is the reverse index key of a slot (its index key) mapped to an
// upload.
func ReverseKey(uploadID string, slotIndexKey []byte) []byte {
	return append(uploadPrefix(uploadID), slotIndexKey...)
}

// sweepKey is the sweep index key of a session: its SweepAt as 8 big-endian
// bytes of Unix nanoseconds with the sign bit flipped (so that byte order is
// time order, even before 1970), then the upload ID.
func sweepKey(at time.Time, uploadID string) []byte {
	k := make([]byte, 8, 8+len(uploadID))
	binary.BigEndian.PutUint64(k, record.SweepOrder(at))
	return append(k, uploadID...)
}

// SweepKey is sweepKey, for engines that migrate older layouts and for tests.
func SweepKey(at time.Time, uploadID string) []byte { return sweepKey(at, uploadID) }

func decodeSweepNanos(k []byte) int64 {
	return int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63))
}

// sessionCacheSize bounds the decoded sessions kept for Get (a few hundred
// bytes each); beyond it, an arbitrary entry makes room.
const sessionCacheSize = 8192

// sessionCache holds decoded sessions. After each commit the sessions it
// wrote replace their entries, and gen is bumped, so that a Get that read the
// database before the commit does not put the old record back.
type sessionCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]auth.Session
}

func (c *sessionCache) get(id string) (auth.Session, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[id]
	return s, ok, c.gen
}

// put caches s if no write was committed since gen.
func (c *sessionCache) put(s auth.Session, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	c.store(s)
}

// store caches s; if the cache is full, an arbitrary entry makes room.
func (c *sessionCache) store(s auth.Session) {
	if _, ok := c.m[s.UploadID]; !ok && len(c.m) >= sessionCacheSize {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[s.UploadID] = s
}

// committed records a committed transaction: the sessions its writes stored
// (written, nil for a deleted one) replace the cached ones, and any other
// session a write of group named is dropped.
func (c *sessionCache) committed(group []*write, written map[string]*auth.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, w := range group {
		if _, ok := written[w.id]; !ok {
			delete(c.m, w.id)
		}
	}
	for id, s := range written {
		if s == nil {
			delete(c.m, id)
		} else {
			c.store(*s)
		}
	}
}

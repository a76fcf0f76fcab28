// Package boltstore keeps upload sessions in a bbolt database file: the
// auth.Store of a single gateway, the default. It owns the file's layout
// (buckets, the sweep and reverse slot indexes, the schema version), the
// group commit of concurrent writes and the cache of decoded sessions.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/record"
)

// ErrInUse is returned by Open when another process (or another
// Store in this process) holds the session database open.
var ErrInUse = errors.New("session database is in use by another process")

// boltLockTimeout is how long Open waits for the database file's lock.
const boltLockTimeout = time.Second

// boltSchemaVersion is the layout of the buckets below; stored in the meta
// bucket. Open migrates a database of version 1 (JSON records, slot keys as
// hex text, a reverse slot index entry for every slot mapping) to it.
const boltSchemaVersion = "2"

// Bucket names and keys.
const (
	bucketMeta     = "meta"
	bucketSessions = "sessions"     // upload ID → session record (record.Encode)
	bucketSlots    = "slots"        // slot index key (record.SlotIndexKey) → upload ID
	bucketUploads  = "upload_slots" // len(upload ID) ‖ upload ID ‖ slot index key → nil (reverse of slots, see below)
	bucketSweep    = "sweep"        // sweep time ‖ upload ID → nil
	keyVersion     = "version"
)

// The reverse slot index lists the slots mapped to an upload, for Delete,
// except the slot its session names (SlotKey): that one Delete finds in the
// session record. Most uploads have no other slot, and so no reverse entry.
// A write that changes a session's SlotKey while the old slot stays mapped
// to the upload gives the old slot its reverse entry.

// Store is an auth.Store in a bbolt database file: the embedded, single-node
// default. Every write is committed and synced before the call returns.
// Writes that arrive while a commit is under way are committed together in
// the next transaction (group commit): bbolt runs one write transaction at a
// time and each ends with an fdatasync, so committing them one by one made
// concurrent creations queue behind each other's syncs. A write waits for no
// timer: alone, it is committed at once. Sessions are cached decoded, both
// those read and those written: Get and the writes that change a session read
// the cache instead of decoding the record. The cache is exact because this
// process is the database's only writer. The file is locked while open, so a
// second gateway on the same data directory fails to start instead of sharing
// it. A Store is safe for concurrent use.
type Store struct {
	db *bolt.DB

	// writes carries write transactions to the committer (commitLoop); it is
	// unbuffered, so that the writers waiting at a commit are exactly those
	// the next commit takes.
	writes chan *boltWrite
	closed chan struct{}
	wg     sync.WaitGroup
	close  sync.Once

	cache sessionCache
	// commits counts write transactions (for tests of the grouping).
	commits atomic.Uint64
}

var _ auth.Store = (*Store)(nil)

// Open opens or creates the session database at path (mode 0600).
// If another process holds it open, it fails within about a second with an
// error matching ErrInUse.
func Open(path string) (*Store, error) {
	// The free page list is not written with every commit (it is rebuilt by
	// a scan when the file is opened, as etcd does), and is kept as a map,
	// whose allocations do not grow with the file's fragmentation.
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        boltLockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open session database %s: %w (its lock was not released within %s)", path, ErrInUse, boltLockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open session database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketMeta, bucketSessions, bucketSlots, bucketUploads, bucketSweep} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		switch v := meta.Get([]byte(keyVersion)); {
		case v == nil:
			if err := meta.Put([]byte(keyVersion), []byte(boltSchemaVersion)); err != nil {
				return fmt.Errorf("write schema version: %w", err)
			}
		case string(v) == "1":
			if err := migrateV1(tx); err != nil {
				return fmt.Errorf("migrate schema version 1 to %s: %w", boltSchemaVersion, err)
			}
		case string(v) != boltSchemaVersion:
			return fmt.Errorf("unsupported schema version %q (this build reads %q)", v, boltSchemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open session database %s: %w", path, err)
	}
	b := &Store{
		db:     db,
		writes: make(chan *boltWrite),
		closed: make(chan struct{}),
		cache:  sessionCache{m: make(map[string]auth.Session)},
	}
	b.wg.Add(1)
	go b.commitLoop()
	return b, nil
}

// boltBuckets are the buckets of one transaction. In a write transaction they
// also carry the sessions its writes have stored (nil for a deleted one) and
// the store's cache, so that a write reads the session it changes without
// decoding the record (see current).
type boltBuckets struct {
	sessions, slots, uploads, sweep *bolt.Bucket

	written map[string]*auth.Session
	cache   *sessionCache
}

// current returns the stored session of an upload: as a write of this
// transaction left it, else as the cache has it, else decoded from the
// database. Only the committer may consult the cache here: it is the only
// writer, so the cache holds the committed session of every upload it has.
func (bk boltBuckets) current(uploadID string) (auth.Session, bool, error) {
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
	v := bk.sessions.Get([]byte(uploadID))
	if v == nil {
		return auth.Session{}, false, nil
	}
	s, err := record.Decode(uploadID, v)
	return s, err == nil, err
}

func openBuckets(tx *bolt.Tx) (boltBuckets, error) {
	b := boltBuckets{
		sessions: tx.Bucket([]byte(bucketSessions)),
		slots:    tx.Bucket([]byte(bucketSlots)),
		uploads:  tx.Bucket([]byte(bucketUploads)),
		sweep:    tx.Bucket([]byte(bucketSweep)),
	}
	if b.sessions == nil || b.slots == nil || b.uploads == nil || b.sweep == nil {
		return boltBuckets{}, errors.New("session database lacks its buckets")
	}
	return b, nil
}

// view runs fn in a read-only transaction. Errors of fn are returned as they
// are; failures of the database itself are wrapped with auth.ErrStoreUnavailable.
func (b *Store) view(ctx context.Context, op string, fn func(boltBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var fnErr error
	err := b.db.View(func(tx *bolt.Tx) error {
		bk, err := openBuckets(tx)
		if err != nil {
			fnErr = err
			return err
		}
		fnErr = fn(bk)
		return fnErr
	})
	return txResult(op, err, fnErr)
}

// update runs fn in a read-write transaction, possibly together with other
// writers' fns (see commitLoop), and returns like view. fn may run more than
// once (if another fn of its group fails, the group is rolled back and run
// again without it), so it must set all of its results on every run. id is
// the upload whose session record fn may change (its cache entry is dropped).
func (b *Store) update(ctx context.Context, op, id string, fn func(boltBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	w := &boltWrite{fn: fn, id: id, done: make(chan error, 1)}
	select {
	case b.writes <- w:
	case <-b.closed:
		return fmt.Errorf("%s: %w: %w", op, auth.ErrStoreUnavailable, bolterrors.ErrDatabaseNotOpen)
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

// boltWrite is one caller's write, on its way through the committer.
type boltWrite struct {
	fn    func(boltBuckets) error
	id    string
	fnErr error      // what fn returned in its last run
	done  chan error // the transaction's outcome, once
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 256

// commitLoop commits the writes sent to b.writes until the store is closed:
// the first that arrives with every other writer already waiting. bbolt's own
// DB.Batch groups too, but it holds every batch for MaxBatchDelay (10 ms by
// default; at zero, writes that arrive during a commit no longer share the
// next one), hands fn a bare *bolt.Tx without the session cache, and takes
// no context.
func (b *Store) commitLoop() {
	defer b.wg.Done()
	for {
		var first *boltWrite
		select {
		case first = <-b.writes:
		case <-b.closed:
			return
		}
		group := []*boltWrite{first}
	gather:
		for len(group) < maxGroup {
			select {
			case w := <-b.writes:
				group = append(group, w)
			default:
				break gather
			}
		}
		b.commit(group)
	}
}

// errGroupMember rolls back a group in which one write's fn failed.
var errGroupMember = errors.New("a write of the group failed")

// commit runs the group's fns in one transaction and tells each writer the
// outcome. A fn that fails is run alone (its failure is its own: nothing of
// it is committed) and the rest of the group again without it.
func (b *Store) commit(group []*boltWrite) {
	for len(group) > 0 {
		failed := -1
		b.commits.Add(1)
		var written map[string]*auth.Session
		err := b.db.Update(func(tx *bolt.Tx) error {
			bk, err := openBuckets(tx)
			if err != nil {
				for _, w := range group {
					w.fnErr = err
				}
				return err
			}
			written = make(map[string]*auth.Session, len(group))
			bk.written, bk.cache = written, &b.cache
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
				b.cache.committed(group, written)
			}
			for _, w := range group {
				w.done <- err
			}
			return
		}
		b.commit(group[failed : failed+1])
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// Create implements auth.Store.
func (b *Store) Create(ctx context.Context, s auth.Session) (stored auth.Session, created bool, err error) {
	if err := record.CheckNew(s); err != nil {
		return auth.Session{}, false, err
	}
	err = b.update(ctx, "create session", s.UploadID, func(bk boltBuckets) error {
		var found bool
		if stored, found, err = bk.current(s.UploadID); err != nil || found {
			created = false
			return err
		}
		if stored, err = putSession(bk, nil, s); err != nil {
			return err
		}
		created = true
		if record.MapsSlot(s) && bk.slots.Get(record.SlotIndexKey(s.SlotKey)) == nil {
			return mapSlot(bk, s.SlotKey, stored)
		}
		return nil
	})
	if err != nil {
		return auth.Session{}, false, err
	}
	return stored, created, nil
}

// Get implements auth.Store.
func (b *Store) Get(ctx context.Context, uploadID string) (s auth.Session, err error) {
	if err := ctx.Err(); err != nil {
		return auth.Session{}, fmt.Errorf("get session: %w", err)
	}
	s, ok, gen := b.cache.get(uploadID)
	if ok {
		return s, nil
	}
	err = b.viewBucket("get session", bucketSessions, func(bk *bolt.Bucket) error {
		v := bk.Get([]byte(uploadID))
		if v == nil {
			return auth.ErrSessionNotFound
		}
		s, err = record.Decode(uploadID, v)
		return err
	})
	if err != nil {
		return auth.Session{}, err
	}
	b.cache.put(s, gen)
	return s, nil
}

// viewBucket runs fn on one bucket in a read-only transaction (opening only
// the bucket needed is a measurable part of a HEAD).
func (b *Store) viewBucket(op, name string, fn func(*bolt.Bucket) error) error {
	var fnErr error
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(name))
		if bk == nil {
			fnErr = fmt.Errorf("session database lacks its %s bucket", name)
		} else {
			fnErr = fn(bk)
		}
		return fnErr
	})
	return txResult(op, err, fnErr)
}

// LookupSlot implements auth.Store.
func (b *Store) LookupSlot(ctx context.Context, slotKey string) (uploadID string, err error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("look up slot: %w", err)
	}
	err = b.viewBucket("look up slot", bucketSlots, func(bk *bolt.Bucket) error {
		v := bk.Get(record.SlotIndexKey(slotKey))
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

// Update implements auth.Store.
func (b *Store) Update(ctx context.Context, uploadID string, fn func(*auth.Session) error) (s auth.Session, err error) {
	err = b.update(ctx, "update session", uploadID, func(bk boltBuckets) error {
		s, err = modifySession(bk, uploadID, fn)
		return err
	})
	if err != nil {
		return auth.Session{}, err
	}
	return s, nil
}

// Rebind implements auth.Store.
func (b *Store) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*auth.Session) error) (s auth.Session, err error) {
	if slotKey == "" {
		return auth.Session{}, errors.New("rebind session: empty slot key")
	}
	err = b.update(ctx, "rebind session", uploadID, func(bk boltBuckets) error {
		if _, found, err := bk.current(uploadID); err != nil || !found {
			if err == nil {
				err = auth.ErrSessionNotFound
			}
			return err
		}
		if prev := bk.slots.Get(record.SlotIndexKey(slotKey)); prev != nil && string(prev) != uploadID {
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
func (b *Store) Delete(ctx context.Context, uploadID string) error {
	return b.update(ctx, "delete session", uploadID, func(bk boltBuckets) error {
		id := []byte(uploadID)
		old, found, err := bk.current(uploadID)
		if err != nil {
			return err
		}
		if found {
			if !old.SweepAt.IsZero() {
				if err := bk.sweep.Delete(sweepKey(old.SweepAt, uploadID)); err != nil {
					return fmt.Errorf("delete sweep entry: %w", err)
				}
			}
			if err := bk.sessions.Delete(id); err != nil {
				return fmt.Errorf("delete session record: %w", err)
			}
			bk.written[uploadID] = nil
			if old.SlotKey != "" {
				own := record.SlotIndexKey(old.SlotKey)
				if bytes.Equal(bk.slots.Get(own), id) {
					if err := bk.slots.Delete(own); err != nil {
						return fmt.Errorf("delete slot mapping: %w", err)
					}
				}
			}
		}
		// Collect first: deleting under a bbolt cursor skips entries.
		prefix := uploadPrefix(uploadID)
		var keys [][]byte
		c := bk.uploads.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			slotKey := k[len(prefix):]
			if bytes.Equal(bk.slots.Get(slotKey), id) {
				if err := bk.slots.Delete(slotKey); err != nil {
					return fmt.Errorf("delete slot mapping: %w", err)
				}
			}
			if err := bk.uploads.Delete(k); err != nil {
				return fmt.Errorf("delete reverse slot mapping: %w", err)
			}
		}
		return nil
	})
}

// Expired implements auth.Store. It reads only the due part of the sweep index.
func (b *Store) Expired(ctx context.Context, t time.Time, limit int) (due []auth.Session, err error) {
	if limit <= 0 {
		return nil, nil
	}
	before := record.SweepNanos(t)
	err = b.view(ctx, "list expired sessions", func(bk boltBuckets) error {
		c := bk.sweep.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 8 {
				return errors.New("malformed sweep index entry")
			}
			if decodeSweepNanos(k) >= before {
				break
			}
			v := bk.sessions.Get(k[8:])
			if v == nil {
				continue // cannot happen: every write keeps the index consistent
			}
			s, err := record.Decode(string(k[8:]), v)
			if err != nil {
				return err
			}
			if s.SweepAt.IsZero() || !bytes.Equal(sweepKey(s.SweepAt, s.UploadID), k) {
				continue // likewise
			}
			due = append(due, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return due, nil
}

// Ping implements auth.Store: it runs a read transaction.
func (b *Store) Ping(ctx context.Context) error {
	return b.view(ctx, "ping session store", func(boltBuckets) error { return nil })
}

// Close implements auth.Store: it closes the database and releases its lock.
func (b *Store) Close() error {
	b.close.Do(func() { close(b.closed) })
	b.wg.Wait() // the commit under way ends first
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close session database: %w", err)
	}
	return nil
}

// modifySession applies fn to the stored session and writes the result.
func modifySession(bk boltBuckets, uploadID string, fn func(*auth.Session) error) (auth.Session, error) {
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
func putSession(bk boltBuckets, old *auth.Session, s auth.Session) (auth.Session, error) {
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
		if err := bk.sweep.Delete(sweepKey(old.SweepAt, old.UploadID)); err != nil {
			return auth.Session{}, fmt.Errorf("delete sweep entry: %w", err)
		}
	}
	if !s.SweepAt.IsZero() {
		if err := bk.sweep.Put(sweepKey(s.SweepAt, s.UploadID), nil); err != nil {
			return auth.Session{}, fmt.Errorf("write sweep entry: %w", err)
		}
	}
	if err := bk.sessions.Put([]byte(s.UploadID), v); err != nil {
		return auth.Session{}, fmt.Errorf("write session record: %w", err)
	}
	bk.written[s.UploadID] = &stored
	return stored, nil
}

// mapSlot maps slotKey to the upload of s, as stored, unless it is mapped
// already: to that upload (nothing to do) or to another upload
// (auth.ErrSlotTaken, nothing changed). A slot other than s.SlotKey gets its
// reverse index entry.
func mapSlot(bk boltBuckets, slotKey string, s auth.Session) error {
	key := record.SlotIndexKey(slotKey)
	if prev := bk.slots.Get(key); prev != nil {
		if string(prev) == s.UploadID {
			return nil
		}
		return auth.ErrSlotTaken
	}
	if err := bk.slots.Put(key, []byte(s.UploadID)); err != nil {
		return fmt.Errorf("write slot mapping: %w", err)
	}
	if slotKey == s.SlotKey {
		return nil
	}
	if err := bk.uploads.Put(append(uploadPrefix(s.UploadID), key...), nil); err != nil {
		return fmt.Errorf("write reverse slot mapping: %w", err)
	}
	return nil
}

// indexReverse gives slotKey its reverse index entry if it is mapped to
// uploadID.
func indexReverse(bk boltBuckets, slotKey, uploadID string) error {
	key := record.SlotIndexKey(slotKey)
	if string(bk.slots.Get(key)) != uploadID {
		return nil
	}
	if err := bk.uploads.Put(append(uploadPrefix(uploadID), key...), nil); err != nil {
		return fmt.Errorf("write reverse slot mapping: %w", err)
	}
	return nil
}

// uploadPrefix is the reverse-index prefix of an upload: its ID's length as
// two big-endian bytes, then the ID, so that no ID is a prefix of another's entries.
func uploadPrefix(uploadID string) []byte {
	p := make([]byte, 2, 2+len(uploadID)+64)
	binary.BigEndian.PutUint16(p, uint16(min(len(uploadID), record.MaxUploadID)))
	return append(p, uploadID...)
}

// sweepKey is the sweep index key of a session: its SweepAt as 8 big-endian
// bytes of Unix nanoseconds with the sign bit flipped (so that byte order is
// time order, even before 1970), then the upload ID.
func sweepKey(at time.Time, uploadID string) []byte {
	k := make([]byte, 8, 8+len(uploadID))
	binary.BigEndian.PutUint64(k, record.SweepOrder(at))
	return append(k, uploadID...)
}

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
func (c *sessionCache) committed(group []*boltWrite, written map[string]*auth.Session) {
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

// migrateV1 rewrites a database of schema version 1 in tx: every session
// record in the binary encoding, slot keys as index keys, reverse index
// entries only for the slots that are not their session's own; then sets
// the schema version. It reads each bucket whole before it rewrites it.
func migrateV1(tx *bolt.Tx) error {
	bk, err := openBuckets(tx)
	if err != nil {
		return err
	}
	type kv struct{ k, v []byte }
	collect := func(b *bolt.Bucket) ([]kv, error) {
		var all []kv
		err := b.ForEach(func(k, v []byte) error {
			all = append(all, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		return all, err
	}
	sessions, err := collect(bk.sessions)
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	own := make(map[string]string, len(sessions)) // upload ID → its slot key
	for _, e := range sessions {
		s, err := record.Decode(string(e.k), e.v)
		if err != nil {
			return err
		}
		own[s.UploadID] = s.SlotKey
		v, err := record.Encode(record.Stored(s))
		if err != nil {
			return err
		}
		if err := bk.sessions.Put(e.k, v); err != nil {
			return fmt.Errorf("write session record: %w", err)
		}
	}
	slots, err := collect(bk.slots)
	if err != nil {
		return fmt.Errorf("read slot mappings: %w", err)
	}
	for _, name := range []string{bucketSlots, bucketUploads} {
		if err := tx.DeleteBucket([]byte(name)); err != nil {
			return fmt.Errorf("drop bucket %s: %w", name, err)
		}
		if _, err := tx.CreateBucket([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if bk, err = openBuckets(tx); err != nil {
		return err
	}
	for _, e := range slots {
		slotKey, id := string(e.k), string(e.v)
		key := record.SlotIndexKey(slotKey)
		if err := bk.slots.Put(key, e.v); err != nil {
			return fmt.Errorf("write slot mapping: %w", err)
		}
		if own[id] == slotKey {
			continue
		}
		if err := bk.uploads.Put(append(uploadPrefix(id), key...), nil); err != nil {
			return fmt.Errorf("write reverse slot mapping: %w", err)
		}
	}
	if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keyVersion), []byte(boltSchemaVersion)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

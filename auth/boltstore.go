package auth

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrStoreInUse is returned by OpenBoltStore when another process (or another
// BoltStore in this process) holds the session database open.
var ErrStoreInUse = errors.New("session database is in use by another process")

// boltLockTimeout is how long OpenBoltStore waits for the database file's lock.
const boltLockTimeout = time.Second

// boltSchemaVersion is the layout of the buckets below; stored in the meta bucket.
const boltSchemaVersion = "1"

// Bucket names and keys.
const (
	bucketMeta     = "meta"
	bucketSessions = "sessions"     // upload ID → session JSON
	bucketSlots    = "slots"        // slot key → upload ID
	bucketUploads  = "upload_slots" // len(upload ID) ‖ upload ID ‖ slot key → nil (reverse of slots)
	bucketSweep    = "sweep"        // sweep time ‖ upload ID → nil
	keyVersion     = "version"
)

// BoltStore is a Store in a bbolt database file: the embedded, single-node
// default. Every write is one read-write transaction, committed and synced
// before the call returns. The file is locked while open, so a second gateway
// on the same data directory fails to start instead of sharing it. A BoltStore
// is safe for concurrent use.
type BoltStore struct {
	db *bolt.DB
}

var _ Store = (*BoltStore)(nil)

// OpenBoltStore opens or creates the session database at path (mode 0600).
// If another process holds it open, it fails within about a second with an
// error matching ErrStoreInUse.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltLockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open session database %s: %w (its lock was not released within %s)", path, ErrStoreInUse, boltLockTimeout)
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
		case string(v) != boltSchemaVersion:
			return fmt.Errorf("unsupported schema version %q (this build reads %q)", v, boltSchemaVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open session database %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// boltBuckets are the buckets of one transaction.
type boltBuckets struct {
	sessions, slots, uploads, sweep *bolt.Bucket
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
// are; failures of the database itself are wrapped with ErrStoreUnavailable.
func (b *BoltStore) view(ctx context.Context, op string, fn func(boltBuckets) error) error {
	return b.run(ctx, op, false, fn)
}

// update runs fn in a read-write transaction, like view.
func (b *BoltStore) update(ctx context.Context, op string, fn func(boltBuckets) error) error {
	return b.run(ctx, op, true, fn)
}

func (b *BoltStore) run(ctx context.Context, op string, writable bool, fn func(boltBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var fnErr error
	txFn := func(tx *bolt.Tx) error {
		bk, err := openBuckets(tx)
		if err != nil {
			fnErr = err
			return err
		}
		fnErr = fn(bk)
		return fnErr
	}
	var err error
	if writable {
		err = b.db.Update(txFn)
	} else {
		err = b.db.View(txFn)
	}
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fmt.Errorf("%s: %w", op, fnErr)
	default: // beginning or committing the transaction failed
		return fmt.Errorf("%s: %w: %w", op, ErrStoreUnavailable, err)
	}
}

// Create implements Store.
func (b *BoltStore) Create(ctx context.Context, s Session) (stored Session, created bool, err error) {
	if err := checkNewSession(s); err != nil {
		return Session{}, false, err
	}
	err = b.update(ctx, "create session", func(bk boltBuckets) error {
		if v := bk.sessions.Get([]byte(s.UploadID)); v != nil {
			stored, err = decodeSession(v)
			return err
		}
		if stored, err = putSession(bk, nil, s); err != nil {
			return err
		}
		created = true
		if mapsSlot(s) && bk.slots.Get([]byte(s.SlotKey)) == nil {
			return mapSlot(bk, s.SlotKey, s.UploadID)
		}
		return nil
	})
	if err != nil {
		return Session{}, false, err
	}
	return stored, created, nil
}

// Get implements Store.
func (b *BoltStore) Get(ctx context.Context, uploadID string) (s Session, err error) {
	err = b.view(ctx, "get session", func(bk boltBuckets) error {
		v := bk.sessions.Get([]byte(uploadID))
		if v == nil {
			return ErrSessionNotFound
		}
		s, err = decodeSession(v)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

// LookupSlot implements Store.
func (b *BoltStore) LookupSlot(ctx context.Context, slotKey string) (uploadID string, err error) {
	err = b.view(ctx, "look up slot", func(bk boltBuckets) error {
		v := bk.slots.Get([]byte(slotKey))
		if v == nil {
			return ErrSessionNotFound
		}
		uploadID = string(v) // copies: v is only valid inside the transaction
		return nil
	})
	if err != nil {
		return "", err
	}
	return uploadID, nil
}

// Update implements Store.
func (b *BoltStore) Update(ctx context.Context, uploadID string, fn func(*Session) error) (s Session, err error) {
	err = b.update(ctx, "update session", func(bk boltBuckets) error {
		s, err = modifySession(bk, uploadID, fn)
		return err
	})
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

// Rebind implements Store.
func (b *BoltStore) Rebind(ctx context.Context, uploadID, slotKey string, fn func(*Session) error) (s Session, err error) {
	if slotKey == "" {
		return Session{}, errors.New("rebind session: empty slot key")
	}
	err = b.update(ctx, "rebind session", func(bk boltBuckets) error {
		if s, err = modifySession(bk, uploadID, fn); err != nil {
			return err
		}
		return mapSlot(bk, slotKey, uploadID)
	})
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

// Delete implements Store.
func (b *BoltStore) Delete(ctx context.Context, uploadID string) error {
	return b.update(ctx, "delete session", func(bk boltBuckets) error {
		id := []byte(uploadID)
		if v := bk.sessions.Get(id); v != nil {
			old, err := decodeSession(v)
			if err != nil {
				return err
			}
			if !old.SweepAt.IsZero() {
				if err := bk.sweep.Delete(sweepKey(old.SweepAt, uploadID)); err != nil {
					return fmt.Errorf("delete sweep entry: %w", err)
				}
			}
			if err := bk.sessions.Delete(id); err != nil {
				return fmt.Errorf("delete session record: %w", err)
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

// Expired implements Store. It reads only the due part of the sweep index.
func (b *BoltStore) Expired(ctx context.Context, t time.Time, limit int) (due []Session, err error) {
	if limit <= 0 {
		return nil, nil
	}
	before := sweepNanos(t)
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
			s, err := decodeSession(v)
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

// Ping implements Store: it runs a read transaction.
func (b *BoltStore) Ping(ctx context.Context) error {
	return b.view(ctx, "ping session store", func(boltBuckets) error { return nil })
}

// Close implements Store: it closes the database and releases its lock.
func (b *BoltStore) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close session database: %w", err)
	}
	return nil
}

// modifySession applies fn to the stored session and writes the result.
func modifySession(bk boltBuckets, uploadID string, fn func(*Session) error) (Session, error) {
	v := bk.sessions.Get([]byte(uploadID))
	if v == nil {
		return Session{}, ErrSessionNotFound
	}
	old, err := decodeSession(v)
	if err != nil {
		return Session{}, err
	}
	s := old
	if err := fn(&s); err != nil {
		return Session{}, err
	}
	if s.UploadID != uploadID {
		return Session{}, errUploadIDChanged
	}
	return putSession(bk, &old, s)
}

// putSession writes s, replacing old (nil for a new session), and moves its
// sweep index entry. It returns s as it now reads back.
func putSession(bk boltBuckets, old *Session, s Session) (Session, error) {
	v, err := json.Marshal(s)
	if err != nil {
		return Session{}, fmt.Errorf("encode session: %w", err)
	}
	stored, err := decodeSession(v)
	if err != nil {
		return Session{}, err
	}
	if old != nil && !old.SweepAt.IsZero() {
		if err := bk.sweep.Delete(sweepKey(old.SweepAt, old.UploadID)); err != nil {
			return Session{}, fmt.Errorf("delete sweep entry: %w", err)
		}
	}
	if !s.SweepAt.IsZero() {
		if err := bk.sweep.Put(sweepKey(s.SweepAt, s.UploadID), nil); err != nil {
			return Session{}, fmt.Errorf("write sweep entry: %w", err)
		}
	}
	if err := bk.sessions.Put([]byte(s.UploadID), v); err != nil {
		return Session{}, fmt.Errorf("write session record: %w", err)
	}
	return stored, nil
}

// mapSlot maps slotKey to uploadID, replacing an earlier mapping of the slot.
func mapSlot(bk boltBuckets, slotKey, uploadID string) error {
	key := []byte(slotKey)
	if prev := bk.slots.Get(key); prev != nil {
		if string(prev) == uploadID {
			return nil
		}
		if err := bk.uploads.Delete(append(uploadPrefix(string(prev)), key...)); err != nil {
			return fmt.Errorf("delete reverse slot mapping: %w", err)
		}
	}
	if err := bk.slots.Put(key, []byte(uploadID)); err != nil {
		return fmt.Errorf("write slot mapping: %w", err)
	}
	if err := bk.uploads.Put(append(uploadPrefix(uploadID), key...), nil); err != nil {
		return fmt.Errorf("write reverse slot mapping: %w", err)
	}
	return nil
}

func decodeSession(v []byte) (Session, error) {
	var s Session
	if err := json.Unmarshal(v, &s); err != nil {
		return Session{}, fmt.Errorf("decode session record: %w", err)
	}
	return s, nil
}

// uploadPrefix is the reverse-index prefix of an upload: its ID's length as
// two big-endian bytes, then the ID, so that no ID is a prefix of another's entries.
func uploadPrefix(uploadID string) []byte {
	p := make([]byte, 2, 2+len(uploadID)+64)
	binary.BigEndian.PutUint16(p, uint16(min(len(uploadID), maxStoredUploadID)))
	return append(p, uploadID...)
}

// sweepNanos is t in Unix nanoseconds, clamped to the range that UnixNano
// can represent (years 1677 to 2262).
func sweepNanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// sweepKey is the sweep index key of a session: its SweepAt as 8 big-endian
// bytes of Unix nanoseconds with the sign bit flipped (so that byte order is
// time order, even before 1970), then the upload ID.
func sweepKey(at time.Time, uploadID string) []byte {
	k := make([]byte, 8, 8+len(uploadID))
	binary.BigEndian.PutUint64(k, uint64(sweepNanos(at))^(1<<63))
	return append(k, uploadID...)
}

func decodeSweepNanos(k []byte) int64 {
	return int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63))
}

// Package boltstore keeps upload sessions in a bbolt database file: the
// embedded session store of releases before the Pebble one (pebblestore),
// which imports such a file at its first start. It owns the file's layout
// (one bucket per key space of kvstore, the schema version) and its
// migration from schema version 1; the sessions' logic is kvstore's.
package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/kvstore"
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
	bucketSessions = "sessions"     // kvstore.Sessions
	bucketSlots    = "slots"        // kvstore.Slots
	bucketUploads  = "upload_slots" // kvstore.Uploads
	bucketSweep    = "sweep"        // kvstore.Sweep
	keyVersion     = "version"
)

// bucketNames are the buckets of kvstore's key spaces, by kvstore.Bucket.
var bucketNames = [...]string{
	kvstore.Sessions: bucketSessions,
	kvstore.Slots:    bucketSlots,
	kvstore.Uploads:  bucketUploads,
	kvstore.Sweep:    bucketSweep,
}

// Store is an auth.Store in a bbolt database file (see kvstore.Store). The
// file is locked while open, so a second gateway on the same file fails to
// start instead of sharing it.
type Store struct {
	*kvstore.Store
	db *bolt.DB
}

var _ auth.Store = (*Store)(nil)

// Open opens or creates the session database at path (mode 0600).
// If another process holds it open, it fails within about a second with an
// error matching ErrInUse.
func Open(path string) (*Store, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	return &Store{Store: kvstore.New(engine{db}), db: db}, nil
}

// openDB opens the file, creates its buckets and migrates an older schema.
func openDB(path string) (*bolt.DB, error) {
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
	return db, nil
}

// Export opens the session database at path (migrating an older schema, as
// Open does), calls fn with every entry of every key space, in key order,
// and closes it. k and v are valid only during the call.
func Export(path string, fn func(b kvstore.Bucket, k, v []byte) error) error {
	db, err := openDB(path)
	if err != nil {
		return err
	}
	err = engine{db}.View(func(tx kvstore.Tx) error {
		for _, b := range kvstore.Buckets {
			if err := tx.Scan(b, nil, func(k, v []byte) (bool, error) { return true, fn(b, k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close session database: %w", cerr)
	}
	return err
}

// engine is a kvstore.Engine over a bbolt database.
type engine struct{ db *bolt.DB }

func (e engine) View(fn func(kvstore.Tx) error) error {
	return e.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e engine) Update(fn func(kvstore.Tx) error) error {
	return e.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (e engine) Close() error { return e.db.Close() }

// boltTx is a kvstore.Tx over a bbolt transaction.
type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(b kvstore.Bucket) (*bolt.Bucket, error) {
	if int(b) >= len(bucketNames) {
		return nil, fmt.Errorf("unknown key space %d", b)
	}
	bk := t.tx.Bucket([]byte(bucketNames[b]))
	if bk == nil {
		return nil, fmt.Errorf("session database lacks its %s bucket", bucketNames[b])
	}
	return bk, nil
}

func (t boltTx) Get(b kvstore.Bucket, key []byte) ([]byte, error) {
	bk, err := t.bucket(b)
	if err != nil {
		return nil, err
	}
	return bk.Get(key), nil
}

func (t boltTx) Put(b kvstore.Bucket, key, value []byte) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	return bk.Put(key, value)
}

func (t boltTx) Delete(b kvstore.Bucket, key []byte) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	return bk.Delete(key)
}

func (t boltTx) Scan(b kvstore.Bucket, prefix []byte, fn func(k, v []byte) (bool, error)) error {
	bk, err := t.bucket(b)
	if err != nil {
		return err
	}
	c := bk.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// migrateV1 rewrites a database of schema version 1 in tx: every session
// record in the binary encoding, slot keys as index keys, reverse index
// entries only for the slots that are not their session's own; then sets
// the schema version. It reads each bucket whole before it rewrites it.
func migrateV1(tx *bolt.Tx) error {
	bk := func(name string) *bolt.Bucket { return tx.Bucket([]byte(name)) }
	type kv struct{ k, v []byte }
	collect := func(b *bolt.Bucket) ([]kv, error) {
		var all []kv
		err := b.ForEach(func(k, v []byte) error {
			all = append(all, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		return all, err
	}
	sessions, err := collect(bk(bucketSessions))
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
		if err := bk(bucketSessions).Put(e.k, v); err != nil {
			return fmt.Errorf("write session record: %w", err)
		}
	}
	slots, err := collect(bk(bucketSlots))
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
	for _, e := range slots {
		slotKey, id := string(e.k), string(e.v)
		key := record.SlotIndexKey(slotKey)
		if err := bk(bucketSlots).Put(key, e.v); err != nil {
			return fmt.Errorf("write slot mapping: %w", err)
		}
		if own[id] == slotKey {
			continue
		}
		if err := bk(bucketUploads).Put(kvstore.ReverseKey(id, key), nil); err != nil {
			return fmt.Errorf("write reverse slot mapping: %w", err)
		}
	}
	if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keyVersion), []byte(boltSchemaVersion)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

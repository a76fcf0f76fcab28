// Package pebblestore keeps upload sessions in a Pebble database (a
// log-structured merge tree, CockroachDB's storage engine) in a directory:
// the auth.Store of a single gateway, the default. It owns the directory's
// layout (one key prefix per key space of kvstore, the schema version) and
// the import of the bbolt file of an earlier release (see Open); the
// sessions' logic is kvstore's.
//
// Why Pebble: a session write changes a few random keys (the session, its
// slot's mapping) and must be durable before the creation is answered. A
// B-tree (bbolt) rewrites the leaf pages of every key it changes and syncs
// twice per commit; Pebble appends the batch to its write-ahead log, syncs
// once per group of concurrent commits and sorts the keys into tables in the
// background. On the same load (BenchmarkPebbleStoreUpload and
// BenchmarkBoltStoreUpload, on a tmpfs) the store's CPU per upload fell
// from about 130 to about 55 µs (docs/performance.md).
package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/internal/kvstore"
)

// ErrInUse is returned by Open when another process (or another Store in
// this process) holds the session database open.
var ErrInUse = errors.New("session database is in use by another process")

// schemaVersion is the layout of the keys below, stored under keyVersion.
const schemaVersion = "1"

// Every key starts with the byte of its key space: kvstore's, and the meta
// space (the schema version, the import marker).
var prefixes = [...]byte{
	kvstore.Sessions: 's',
	kvstore.Slots:    'l',
	kvstore.Uploads:  'u',
	kvstore.Sweep:    'w',
}

const prefixMeta = 'm'

var (
	keyVersion  = []byte{prefixMeta, 'v'}
	keyImported = []byte{prefixMeta, 'i'} // the bbolt file imported, see Import
)

// cacheSize is the block cache: the sessions a gateway reads again are in
// kvstore's cache of decoded sessions already.
const cacheSize = 16 << 20

// Store is an auth.Store in a Pebble database (see kvstore.Store). The
// directory is locked while open, so a second gateway on the same directory
// fails to start instead of sharing it.
type Store struct {
	*kvstore.Store
	db *pebble.DB
}

var _ auth.Store = (*Store)(nil)

// Open opens or creates the session database in the directory dir (mode
// 0700). If another process holds it open, it fails at once with an error
// matching ErrInUse. log receives the database's error messages and the
// import's report (nil: none).
//
// A file at dir is the bbolt session database of an earlier release: Open
// moves it to dir+".bbolt", creates the directory, imports the file (see
// Import) and then renames it to dir+".bbolt-imported", which may be removed
// once the gateway runs. A start that stops half-way does the rest next time.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().IsRegular() {
		if err := os.Rename(dir, dir+legacySuffix); err != nil {
			return nil, fmt.Errorf("move the session file of an earlier release aside: %w", err)
		}
	}
	db, err := openDB(dir, log)
	if err != nil {
		return nil, err
	}
	if err := importLegacy(db, dir, log); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{Store: kvstore.New(engine{db}), db: db}, nil
}

// The names of an earlier release's session file, before and after its import.
const (
	legacySuffix   = ".bbolt"
	importedSuffix = ".bbolt-imported"
)

// importLegacy imports dir+legacySuffix if it exists, then renames it.
func importLegacy(db *pebble.DB, dir string, log *slog.Logger) error {
	file := dir + legacySuffix
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	start := time.Now()
	n, err := importBolt(db, file)
	if err != nil {
		return fmt.Errorf("import the session file of an earlier release %s: %w", file, err)
	}
	if err := os.Rename(file, dir+importedSuffix); err != nil {
		return fmt.Errorf("rename the imported session file: %w", err)
	}
	log.Info("imported the session file of an earlier release", "file", file, "sessions", n,
		"took", time.Since(start).Round(time.Millisecond), "kept_as", dir+importedSuffix)
	return nil
}

// importBolt copies every entry of a bbolt session file (schema 1 or 2; a
// version 1 file is migrated in place first) into db in one synced batch,
// with the marker that it was imported; a file imported already (the marker
// is there) is not read again. It returns the number of sessions copied.
func importBolt(db *pebble.DB, file string) (int, error) {
	if _, closer, err := db.Get(keyImported); err == nil {
		return 0, closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return 0, err
	}
	b := db.NewBatch()
	defer b.Close()
	n := 0
	err := boltstore.Export(file, func(bk kvstore.Bucket, k, v []byte) error {
		if bk == kvstore.Sessions {
			n++
		}
		return b.Set(key(bk, k), v, nil)
	})
	if err != nil {
		return 0, err
	}
	if err := b.Set(keyImported, []byte(filepath.Base(file)), nil); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return n, nil
}

func openDB(dir string, log *slog.Logger) (*pebble.DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open session database: %w", err)
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             logger{log},
	}
	// Most reads look for keys that are not there (a new upload's ID and
	// slot): bloom filters answer them without reading the tables' blocks.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if inUse(err) {
			return nil, fmt.Errorf("open session database %s: %w (%v)", dir, ErrInUse, err)
		}
		return nil, fmt.Errorf("open session database %s: %w", dir, err)
	}
	if err := checkSchema(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open session database %s: %w", dir, err)
	}
	return db, nil
}

// inUse reports whether Open failed on the directory's lock.
func inUse(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) && strings.Contains(err.Error(), "LOCK") ||
		strings.Contains(err.Error(), "lock held by current process")
}

// checkSchema writes the schema version into a new database and refuses one
// of another version.
func checkSchema(db *pebble.DB) error {
	v, closer, err := db.Get(keyVersion)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := db.Set(keyVersion, []byte(schemaVersion), pebble.Sync); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	defer closer.Close()
	if string(v) != schemaVersion {
		return fmt.Errorf("unsupported schema version %q (this build reads %q)", v, schemaVersion)
	}
	return nil
}

// engine is a kvstore.Engine over a Pebble database. A write transaction is
// an indexed batch (it reads its own writes), committed with a sync of the
// write-ahead log; Pebble syncs the batches of concurrent commits together.
type engine struct{ db *pebble.DB }

func (e engine) View(fn func(kvstore.Tx) error) error { return fn(tx{r: e.db}) }

func (e engine) Update(fn func(kvstore.Tx) error) error {
	b := e.db.NewIndexedBatch()
	defer b.Close()
	if err := fn(tx{r: b, w: b}); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (e engine) Close() error { return e.db.Close() }

// reader is what a Pebble database and an indexed batch both read with.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// tx is a kvstore.Tx: reads from r, writes to w (nil: read-only).
type tx struct {
	r reader
	w *pebble.Batch
}

var errReadOnly = errors.New("write in a read-only transaction")

func key(b kvstore.Bucket, k []byte) []byte {
	out := make([]byte, 1+len(k))
	out[0] = prefixes[b]
	copy(out[1:], k)
	return out
}

func (t tx) Get(b kvstore.Bucket, k []byte) ([]byte, error) {
	v, closer, err := t.r.Get(key(b, k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v = bytes.Clone(v)
	if v == nil {
		v = []byte{}
	}
	return v, closer.Close()
}

func (t tx) Put(b kvstore.Bucket, k, v []byte) error {
	if t.w == nil {
		return errReadOnly
	}
	return t.w.Set(key(b, k), v, nil)
}

func (t tx) Delete(b kvstore.Bucket, k []byte) error {
	if t.w == nil {
		return errReadOnly
	}
	return t.w.Delete(key(b, k), nil)
}

func (t tx) Scan(b kvstore.Bucket, prefix []byte, fn func(k, v []byte) (bool, error)) error {
	lower := key(b, prefix)
	it, err := t.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upperBound(lower)})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		more, err := fn(it.Key()[1:], v)
		if err != nil || !more {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// upperBound is the first key after every key that starts with prefix (nil:
// none; a prefix never is all 0xff here, since it starts with a letter).
func upperBound(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// logger passes Pebble's errors to log and drops its informational
// messages (each open lists the write-ahead logs it found). Pebble calls
// Fatalf only where it cannot go on.
type logger struct{ log *slog.Logger }

func (logger) Infof(string, ...any) {}
func (l logger) Errorf(format string, args ...any) {
	l.log.Error("session database: " + fmt.Sprintf(format, args...))
}
func (logger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("session database: "+format, args...))
}

// Stats describe a session database.
type Stats struct {
	// Sessions is the number of session records.
	Sessions int64
	// TableBytes is what the database's sorted tables take: what it keeps
	// for good, once it has settled (see Settle), and the deletions that
	// Pebble has yet to compact away (a table of deletions that a compaction
	// moved to the last level unchanged keeps them until a later compaction
	// drops them).
	TableBytes int64
	// DiskBytes is what all of the database's files take: besides its
	// tables, the write-ahead log (which holds the writes not yet in the
	// tables, up to a few MiB, and is then reused) and the manifests.
	DiskBytes int64
}

// Stats counts the sessions and the disk space of the open database.
func (s *Store) Stats() (Stats, error) { return stats(s.db) }

// Settle writes what the database holds in memory to its tables and
// compacts them all, so that TableBytes counts what it keeps, without
// superseded versions and deleted entries (Pebble does the same over time by
// itself).
func (s *Store) Settle(ctx context.Context) error {
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("flush session database: %w", err)
	}
	if err := s.db.Compact(ctx, []byte{0}, []byte{0xff}, false); err != nil {
		return fmt.Errorf("compact session database: %w", err)
	}
	return nil
}

// Inspect reads the Stats of the session database in dir, which no process
// may hold open.
func Inspect(dir string) (Stats, error) {
	db, err := openDB(dir, nil)
	if err != nil {
		return Stats{}, err
	}
	st, err := stats(db)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close session database: %w", cerr)
	}
	return st, err
}

func stats(db *pebble.DB) (Stats, error) {
	m := db.Metrics()
	st := Stats{TableBytes: int64(m.Table.Local.LiveSize), DiskBytes: int64(m.DiskSpaceUsage())}
	err := tx{r: db}.Scan(kvstore.Sessions, nil, func(_, _ []byte) (bool, error) {
		st.Sessions++
		return true, nil
	})
	return st, err
}

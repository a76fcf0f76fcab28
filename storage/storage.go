package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// Backends.
const (
	BackendDisk = "disk"
	BackendS3   = "s3"
)

// Config selects and configures a storage backend.
type Config struct {
	// Backend is "disk" (default).
	Backend string
	// DataDir is the gateway's data directory; the disk backend keeps uploads
	// in DataDir/uploads.
	DataDir string
	// S3 configures the s3 backend.
	S3 S3Config
	// Locker is shared by several instances (e.g. in Redis); nil is an
	// in-process locker, right for one instance.
	Locker handler.Locker
	// CreateLockTimeout bounds how long a creation waits for the upload's lock
	// (default DefaultLockTimeout).
	CreateLockTimeout time.Duration
	// WriteGrace is how long a write (a creation, a chunk, a completion, a
	// removal) goes on after its request ended early (default
	// DefaultWriteGrace); see WithGrace.
	WriteGrace time.Duration
	Logger     *slog.Logger
	// Observe, when set, receives the duration of every call that tusd makes
	// into the storage (Backend.Composer) and its locker.
	Observe Observer
}

// DefaultLockTimeout is how long a request waits for an upload's lock
// before it gives up; the gateway's default for every request too.
const DefaultLockTimeout = 20 * time.Second

// Backend is a configured storage backend.
type Backend struct {
	// Composer is handed to tusd.
	Composer *handler.StoreComposer
	core     handler.DataStore
	locker   handler.Locker
	ping     func(context.Context) error
	logger   *slog.Logger
	// s3 is the s3store of the s3 backend (nil for disk), for its metrics.
	s3 *s3store.S3Store
	// dir is the disk backend's upload directory ("" for S3).
	dir string
	// grace is the writes' grace period (Config.WriteGrace).
	grace time.Duration
}

// WriteGrace is how long a write goes on after its request ended early
// (Config.WriteGrace): for the callers' own writes on behalf of tusd.
func (b *Backend) WriteGrace() time.Duration { return b.grace }

// New builds the backend that cfg describes.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WriteGrace <= 0 {
		cfg.WriteGrace = DefaultWriteGrace
	}
	if cfg.CreateLockTimeout <= 0 {
		cfg.CreateLockTimeout = DefaultLockTimeout
	}
	var b *Backend
	var err error
	switch cfg.Backend {
	case "", BackendDisk:
		b, err = newDisk(cfg)
	case BackendS3:
		b, err = newS3(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown storage backend %q", cfg.Backend)
	}
	if err != nil {
		return nil, err
	}
	if cfg.Observe != nil {
		b.Composer = timed(b.Composer, cfg.Observe)
	}
	return b, nil
}

func newDisk(cfg Config) (*Backend, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("disk storage needs a data directory")
	}
	dir := filepath.Join(cfg.DataDir, "uploads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create upload directory: %w", err)
	}
	store := filestore.New(dir)
	store.DirModePerm = 0o700
	store.FileModePerm = 0o600
	b := assemble(cfg, store, func(ctx context.Context) error {
		f, err := os.CreateTemp(dir, ".ping-*")
		if err != nil {
			return fmt.Errorf("upload directory is not writable: %w", err)
		}
		name := f.Name()
		f.Close()
		return os.Remove(name)
	})
	b.dir = dir
	return b, nil
}

// tusStore is a tusd data store with every extension the gateway uses.
type tusStore interface {
	handler.DataStore
	handler.TerminaterDataStore
	handler.ConcaterDataStore
	handler.LengthDeferrerDataStore
	handler.ContentServerDataStore
}

// assemble builds the backend around store: the locker (cfg.Locker, else an
// in-process one) behind contendedLocker, and the guard in front of store.
func assemble(cfg Config, store tusStore, ping func(context.Context) error) *Backend {
	var locker handler.Locker = memorylocker.New()
	if cfg.Locker != nil {
		locker = cfg.Locker
	}
	contended := newContendedLocker(locker)
	composer := handler.NewStoreComposer()
	guarded := &guard{core: store, term: store, concat: store, length: store, content: store, locker: contended, timeout: cfg.CreateLockTimeout, grace: cfg.WriteGrace, log: cfg.Logger}
	guarded.useIn(composer)
	composer.UseLocker(contended)
	return &Backend{Composer: composer, core: guarded, locker: contended, logger: cfg.Logger, ping: ping, grace: cfg.WriteGrace}
}

// RegisterMetrics registers the backend's own metrics (s3store's request
// durations) with reg.
func (b *Backend) RegisterMetrics(reg prometheus.Registerer) {
	if b.s3 != nil {
		b.s3.RegisterMetrics(reg)
	}
}

// ServesContent reports whether downloads should be served by the store
// itself (object storage), rather than from a local file.
func (b *Backend) ServesContent() bool { return b.s3 != nil }

// Ping reports whether the storage can be written.
func (b *Backend) Ping(ctx context.Context) error { return b.ping(ctx) }

// Info returns the current state of an upload, or handler.ErrNotFound.
func (b *Backend) Info(ctx context.Context, id string) (handler.FileInfo, error) {
	up, err := b.core.GetUpload(ctx, id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(ctx)
}

// Upload returns the upload with id, or handler.ErrNotFound.
func (b *Backend) Upload(ctx context.Context, id string) (handler.Upload, error) {
	return b.core.GetUpload(ctx, id)
}

// Lock takes the upload's lock as tusd does, waiting until ctx ends. onRelease
// is called when another request asks for the lock.
func (b *Backend) Lock(ctx context.Context, id string, onRelease func()) (handler.Lock, error) {
	lock, err := b.locker.NewLock(id)
	if err != nil {
		return nil, fmt.Errorf("new lock: %w", err)
	}
	if err := lock.Lock(ctx, onRelease); err != nil {
		return nil, err
	}
	return lock, nil
}

// Terminate removes an upload and its data under its lock. A missing upload
// is not an error.
func (b *Backend) Terminate(ctx context.Context, id string) error {
	_, err := b.TerminateIf(ctx, id, nil)
	return err
}

// ErrCannotList is returned by Uploads for a store that cannot list its
// uploads (S3: a bucket lifecycle rule removes abandoned multipart uploads).
var ErrCannotList = errors.New("this storage cannot list its uploads")

// StoredUpload is an upload found in the storage by Uploads.
type StoredUpload struct {
	ID string
	// Modified is the last change of its data or of its state.
	Modified time.Time
}

// Uploads calls fn for each upload in the storage, in no particular order,
// until fn fails or ctx ends. An upload removed meanwhile may be skipped or
// listed. Only the disk backend can list (else ErrCannotList).
func (b *Backend) Uploads(ctx context.Context, fn func(StoredUpload) error) error {
	if b.dir == "" {
		return ErrCannotList
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || id == "" || strings.HasPrefix(id, ".") || !e.Type().IsRegular() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var modified time.Time
		for _, name := range []string{e.Name(), id} {
			fi, err := os.Stat(filepath.Join(b.dir, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("list uploads: %w", err)
			}
			if fi.ModTime().After(modified) {
				modified = fi.ModTime()
			}
		}
		if modified.IsZero() {
			continue // removed meanwhile
		}
		if err := fn(StoredUpload{ID: id, Modified: modified}); err != nil {
			return err
		}
	}
	return nil
}

// TerminateIf removes an upload under its lock if remove (nil: always),
// called with the upload's state once the lock is held, says so. It reports
// whether the upload was removed; a missing upload is not an error.
func (b *Backend) TerminateIf(ctx context.Context, id string, remove func(handler.FileInfo) (bool, error)) (bool, error) {
	lock, err := b.Lock(ctx, id, func() {})
	if err != nil {
		return false, fmt.Errorf("lock %s for clean-up: %w", id, err)
	}
	defer lock.Unlock()
	up, err := b.core.GetUpload(ctx, id)
	if errors.Is(err, handler.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get upload for clean-up: %w", err)
	}
	if remove != nil {
		info, err := up.GetInfo(ctx)
		if err != nil {
			return false, fmt.Errorf("read upload for clean-up: %w", err)
		}
		if ok, err := remove(info); !ok || err != nil {
			return false, err
		}
	}
	if err := b.Composer.Terminater.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		return false, fmt.Errorf("terminate upload: %w", err)
	}
	return true, nil
}

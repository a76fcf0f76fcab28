package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
)

// clock is a settable time for the info cache.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newCachedBackend is a disk backend with an upload "up" of 10 bytes, 3 of
// them written, and a clock for its info cache.
func newCachedBackend(t *testing.T) (*Backend, string, *clock) {
	t.Helper()
	b, dir := newDiskBackend(t)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	b.locker.(*contendedLocker).now = c.now
	writeUp(t, b)
	return b, dir, c
}

// writeUp creates the upload "up" of 10 bytes and writes 3.
func writeUp(t *testing.T, b *Backend) {
	t.Helper()
	ctx := context.Background()
	up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "up", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
}

func offsetOf(t *testing.T, ctx context.Context, b *Backend, id string) int64 {
	t.Helper()
	info, err := b.Info(ctx, id)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return info.Offset
}

// growBehindTheStore appends to the upload's data file without a lock, as
// nothing in the gateway does: only a read that does not use the cache sees it.
func growBehindTheStore(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "uploads", "up"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("d"); err != nil {
		t.Fatal(err)
	}
}

// A read-only request reads an upload's state once and then answers from the
// cache, for at most infoTTL; other requests always read the storage.
func TestReadOnlyInfoCachedForTTL(t *testing.T) {
	b, dir, c := newCachedBackend(t)
	ro := ReadOnly(context.Background())
	if got := offsetOf(t, ro, b, "up"); got != 3 {
		t.Fatalf("first read-only read: offset %d, want 3", got)
	}
	growBehindTheStore(t, dir)
	if got := offsetOf(t, ro, b, "up"); got != 3 {
		t.Errorf("read-only read within the TTL: offset %d, want the cached 3", got)
	}
	if got := offsetOf(t, context.Background(), b, "up"); got != 4 {
		t.Errorf("ordinary read: offset %d, want 4 from the storage", got)
	}
	c.t = c.t.Add(infoTTL)
	if got := offsetOf(t, ro, b, "up"); got != 4 {
		t.Errorf("read-only read after the TTL: offset %d, want 4", got)
	}
}

// Taking an upload's lock (every write holds it) drops its cached state, and
// nothing is cached or answered from the cache while a request holds it.
func TestReadOnlyInfoDroppedByLock(t *testing.T) {
	b, _, _ := newCachedBackend(t)
	ctx := context.Background()
	ro := ReadOnly(ctx)
	offsetOf(t, ro, b, "up") // cached: 3
	lock, err := b.Lock(ctx, "up", func() {})
	if err != nil {
		t.Fatal(err)
	}
	up, err := b.Upload(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 3, strings.NewReader("de")); err != nil {
		t.Fatal(err)
	}
	if got := offsetOf(t, ro, b, "up"); got != 5 {
		t.Errorf("read-only read while the writer holds the lock: offset %d, want 5", got)
	}
	if _, err := up.WriteChunk(ctx, 5, strings.NewReader("f")); err != nil {
		t.Fatal(err)
	}
	if got := offsetOf(t, ro, b, "up"); got != 6 {
		t.Errorf("second read-only read while the lock is held: offset %d, want 6 (nothing cached under a held lock)", got)
	}
	if _, err := up.WriteChunk(ctx, 6, strings.NewReader("g")); err != nil {
		t.Fatal(err)
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	if got := offsetOf(t, ro, b, "up"); got != 7 {
		t.Errorf("read-only read after the writer's unlock: offset %d, want 7", got)
	}
}

// A read that began before a lock was taken (and so may have read the state
// before a write) does not put what it read in the cache.
func TestReadOnlyInfoOfARaceNotCached(t *testing.T) {
	b, dir, _ := newCachedBackend(t)
	ctx := context.Background()
	up, err := b.core.GetUpload(ReadOnly(ctx), "up") // the read begins
	if err != nil {
		t.Fatal(err)
	}
	lock, err := b.Lock(ctx, "other", func() {}) // any lock taken meanwhile
	if err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	if _, err := up.GetInfo(ctx); err != nil { // the read ends
		t.Fatal(err)
	}
	growBehindTheStore(t, dir)
	if got := offsetOf(t, ReadOnly(ctx), b, "up"); got != 4 {
		t.Errorf("read-only read: offset %d, want 4 (the racing read must not have been cached)", got)
	}
}

// With a locker shared between instances (which write uploads without this
// process taking their locks) nothing is cached.
func TestReadOnlyInfoNotCachedWithSharedLocker(t *testing.T) {
	dir := t.TempDir()
	b, err := New(context.Background(), Config{DataDir: dir, Locker: &heldElsewhere{Locker: memorylocker.New()}, CreateLockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	writeUp(t, b)
	offsetOf(t, ReadOnly(ctx), b, "up")
	growBehindTheStore(t, dir)
	if got := offsetOf(t, ReadOnly(ctx), b, "up"); got != 4 {
		t.Errorf("read-only read with a shared locker: offset %d, want 4", got)
	}
}

// An upload whose state came from the cache still works as an upload.
func TestCachedUploadReadsTheStorage(t *testing.T) {
	b, _, _ := newCachedBackend(t)
	ro := ReadOnly(context.Background())
	offsetOf(t, ro, b, "up")
	up, err := b.Upload(ro, "up")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := up.(*cachedUpload); !ok {
		t.Fatalf("second read-only GetUpload returned %T, want the cached upload", up)
	}
	r, err := up.GetReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 8)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "abc" {
		t.Errorf("read %q through the cached upload, want abc", buf[:n])
	}
	if err := b.Composer.Terminater.AsTerminatableUpload(up).Terminate(context.Background()); err != nil {
		t.Fatalf("terminate through the cached upload: %v", err)
	}
}

// A write made without the upload's lock (tusd writes the final upload of a
// concatenation so) also drops the cached state, as do completing and
// terminating the upload.
func TestReadOnlyInfoDroppedByWriteWithoutLock(t *testing.T) {
	b, _, _ := newCachedBackend(t)
	ctx := context.Background()
	ro := ReadOnly(ctx)
	offsetOf(t, ro, b, "up") // cached: 3
	up, err := b.Upload(ctx, "up")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 3, strings.NewReader("defghij")); err != nil {
		t.Fatal(err)
	}
	if got := offsetOf(t, ro, b, "up"); got != 10 {
		t.Errorf("read-only read after a write without the lock: offset %d, want 10", got)
	}
	cached, err := b.Upload(ro, "up")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Composer.Terminater.AsTerminatableUpload(cached).Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Info(ro, "up"); err == nil {
		t.Error("read-only read after the upload was terminated found it")
	}
}

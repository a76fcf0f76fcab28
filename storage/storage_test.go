package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

func newDiskBackend(t *testing.T) (*Backend, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := New(context.Background(), Config{DataDir: dir, CreateLockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b, dir
}

// tusd's filestore truncates an upload that is created again with its ID;
// the guard refuses instead, and concurrent creations make one upload.
func TestCreateNeverTruncates(t *testing.T) {
	b, dir := newDiskBackend(t)
	ctx := context.Background()
	up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "abc", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader("12345")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "abc", Size: 10})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, ErrUploadExists) {
			t.Fatalf("second creation: %v, want ErrUploadExists", err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "uploads", "abc"))
	if err != nil || string(data) != "12345" {
		t.Fatalf("stored %q (%v) after repeated creations", data, err)
	}
	info, err := b.Info(ctx, "abc")
	if err != nil || info.Offset != 5 || info.Size != 10 {
		t.Fatalf("info %+v %v", info, err)
	}
}

func TestConcurrentFirstCreationsMakeOneUpload(t *testing.T) {
	b, _ := newDiskBackend(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "race", Size: 1})
			switch {
			case err == nil:
				mu.Lock()
				created++
				mu.Unlock()
			case !errors.Is(err, ErrUploadExists):
				t.Errorf("creation: %v", err)
			}
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d creations succeeded, want 1", created)
	}
}

// A lock that is not released in time is 423 Locked, not tusd's 500.
func TestLockTimeoutIsLocked(t *testing.T) {
	b, _ := newDiskBackend(t)
	held, err := b.Lock(context.Background(), "x", func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = b.Lock(ctx, "x", func() {})
	var he handler.Error
	if !errors.As(err, &he) || he.HTTPResponse.StatusCode != 423 {
		t.Fatalf("contended lock: %v, want a 423 error", err)
	}
}

// The holder is asked to release the lock when another request wants it
// (tusd's hand-off), and the waiter then gets it.
func TestLockHandOff(t *testing.T) {
	b, _ := newDiskBackend(t)
	released := make(chan struct{})
	var held handler.Lock
	held, err := b.Lock(context.Background(), "y", func() { go func() { held.Unlock(); close(released) }() })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	second, err := b.Lock(ctx, "y", func() {})
	if err != nil {
		t.Fatalf("hand-off failed: %v", err)
	}
	<-released
	second.Unlock()
}

func TestTerminateRemovesUpload(t *testing.T) {
	b, dir := newDiskBackend(t)
	ctx := context.Background()
	if _, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "gone", Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Terminate(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "uploads", "gone")); !os.IsNotExist(err) {
		t.Fatalf("data still there: %v", err)
	}
	if err := b.Terminate(ctx, "gone"); err != nil {
		t.Fatalf("terminating a missing upload: %v", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// Uploads lists the disk store's uploads with their last change, and
// nothing else that lies in its directory.
func TestDiskListsUploads(t *testing.T) {
	b, dir := newDiskBackend(t)
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	for _, id := range []string{"one", "two"} {
		up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(ctx, 0, strings.NewReader("ab")); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-72 * time.Hour)
	for _, name := range []string{"two", "two.info"} {
		if err := os.Chtimes(filepath.Join(dir, "uploads", name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "uploads", ".ping-1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uploads", "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	if err := b.Uploads(ctx, func(u StoredUpload) error { got[u.ID] = u.Modified; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["one"].Before(start) || !got["two"].Equal(old) {
		t.Fatalf("listed %v; want one (changed now) and two (changed at %v)", got, old)
	}
	if err := (&Backend{}).Uploads(ctx, func(StoredUpload) error { return nil }); !errors.Is(err, ErrCannotList) {
		t.Fatalf("a store without a directory lists: %v", err)
	}
}

// TerminateIf removes an upload only when asked, with its state in hand.
func TestTerminateIf(t *testing.T) {
	b, dir := newDiskBackend(t)
	ctx := context.Background()
	if _, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "up", Size: 5}); err != nil {
		t.Fatal(err)
	}
	var seen handler.FileInfo
	removed, err := b.TerminateIf(ctx, "up", func(info handler.FileInfo) (bool, error) { seen = info; return false, nil })
	if err != nil || removed || seen.ID != "up" || seen.Size != 5 {
		t.Fatalf("kept: removed %v, %v, saw %+v", removed, err, seen)
	}
	if _, err := os.Stat(filepath.Join(dir, "uploads", "up.info")); err != nil {
		t.Fatalf("upload kept by its predicate is gone: %v", err)
	}
	removed, err = b.TerminateIf(ctx, "up", func(handler.FileInfo) (bool, error) { return true, nil })
	if err != nil || !removed {
		t.Fatalf("removed %v, %v", removed, err)
	}
	if _, err := b.Info(ctx, "up"); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("after removal: %v", err)
	}
	if removed, err := b.TerminateIf(ctx, "up", nil); removed || err != nil {
		t.Fatalf("removing a missing upload: %v, %v", removed, err)
	}
}

// Package kvstoretest is the test suite of a kvstore engine's store: the
// session store contract (sessiontest) with the indexes and the cache checked
// after every test, and what the group commit, the cache, reopening and the
// file lock must do.
package kvstoretest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/internal/kvstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// Store is a kvstore.Store as an engine's package wraps it.
type Store interface {
	auth.Store
	auth.SlotCreator
	auth.SlotResolver
	CheckIndexes() error
	CheckCache() error
	Commits() uint64
	UpdateRaw(ctx context.Context, fn func(kvstore.Tx) error) error
}

// Opener opens an engine's store.
type Opener struct {
	// Name is the database's name in a directory (a file or a directory).
	Name string
	// OpenErr opens the store at path.
	OpenErr func(path string) (Store, error)
	// ErrInUse is what OpenErr's error matches when another store holds path.
	ErrInUse error
}

// Path is a new database path in a temporary directory of t.
func (o Opener) Path(t *testing.T) string { return filepath.Join(t.TempDir(), o.Name) }

// Open opens the store at path or fails t.
func (o Opener) Open(t *testing.T, path string) Store {
	t.Helper()
	st, err := o.OpenErr(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
}

// Run runs the suite.
func Run(t *testing.T, o Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Contract", testContract},
		{"SurvivesReopen", testSurvivesReopen},
		{"InUse", testInUse},
		{"Closed", testClosed},
		{"GroupCommit", testGroupCommit},
		{"CacheFollowsWrites", testCacheFollowsWrites},
		{"CacheKeepsWhatTheRecordHolds", testCacheKeepsWhatTheRecordHolds},
		{"SlotCreator", testSlotCreator},
		{"SlotResolver", testSlotResolver},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, o) })
	}
}

func testContract(t *testing.T, o Opener) {
	sessiontest.Run(t, func(t *testing.T) auth.Store {
		st := o.Open(t, o.Path(t))
		t.Cleanup(func() {
			if err := st.CheckIndexes(); err != nil {
				t.Errorf("indexes after the test: %v", err)
			}
			if err := st.CheckCache(); err != nil {
				t.Errorf("cache after the test: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	})
}

func testSurvivesReopen(t *testing.T, o Opener) {
	ctx := context.Background()
	path := o.Path(t)
	st := o.Open(t, path)
	a, b := sessiontest.Sample(1), sessiontest.Sample(2)
	for _, s := range []auth.Session{a, b} {
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	// a is re-bound to two new slots.
	for _, key := range []string{sessiontest.SlotKey(3), sessiontest.SlotKey(4)} {
		if _, err := st.Rebind(ctx, a.UploadID, key, func(s *auth.Session) error {
			s.Rebinds++
			return nil
		}); err != nil {
			t.Fatalf("Rebind: %v", err)
		}
	}
	a.Rebinds += 2
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st = o.Open(t, path)
	defer st.Close()
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes after reopen: %v", err)
	}
	sessiontest.CheckKept(t, st, "after reopen", []auth.Session{a, b}, map[string]string{
		sessiontest.SlotKey(1): a.UploadID,
		sessiontest.SlotKey(2): b.UploadID,
		sessiontest.SlotKey(3): a.UploadID,
		sessiontest.SlotKey(4): a.UploadID,
	})
	due, err := st.Expired(ctx, b.SweepAt.Add(time.Nanosecond), 10)
	if err != nil || len(due) != 2 || due[0].UploadID != a.UploadID || due[1].UploadID != b.UploadID {
		t.Errorf("Expired after reopen = %v, %v; want both, oldest first", due, err)
	}
	// Delete still finds every slot of a, including the one added by Rebind.
	if err := st.Delete(ctx, a.UploadID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes after reopen and Delete: %v", err)
	}
	for _, key := range []string{sessiontest.SlotKey(1), sessiontest.SlotKey(3), sessiontest.SlotKey(4)} {
		if _, err := st.LookupSlot(ctx, key); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("LookupSlot after Delete: err = %v, want ErrSessionNotFound", err)
		}
	}
	if got, err := st.LookupSlot(ctx, sessiontest.SlotKey(2)); err != nil || got != b.UploadID {
		t.Errorf("LookupSlot of the other upload's slot after Delete = %q, %v; want %q", got, err, b.UploadID)
	}
}

func testInUse(t *testing.T, o Opener) {
	path := o.Path(t)
	st := o.Open(t, path)
	defer st.Close()

	start := time.Now()
	second, err := o.OpenErr(path)
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open of an open database succeeded")
	}
	if !errors.Is(err, o.ErrInUse) {
		t.Errorf("err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("error %q does not say that the database is in use", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second open failed only after %s", elapsed)
	}
	// The first store is unaffected.
	if err := st.Ping(context.Background()); err != nil {
		t.Errorf("Ping of the first store: %v", err)
	}
}

func testClosed(t *testing.T, o Opener) {
	st := o.Open(t, o.Path(t))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := context.Background()
	if err := st.Ping(ctx); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("Ping after Close: err = %v, want ErrStoreUnavailable", err)
	}
	if _, err := st.Get(ctx, sessiontest.ID(1)); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("Get after Close: err = %v, want ErrStoreUnavailable", err)
	}
}

// Writes that wait while a commit is under way share the next transaction;
// a write that fails in such a group leaves nothing behind and costs the
// others nothing.
func testGroupCommit(t *testing.T, o Opener) {
	ctx := context.Background()
	st := o.Open(t, o.Path(t))
	defer st.Close()

	// Hold the committer in a write until the others are waiting.
	release := make(chan struct{})
	holding := make(chan struct{})
	go st.UpdateRaw(ctx, func(kvstore.Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	before := st.Commits()

	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created, err := st.Create(ctx, sessiontest.Sample(i+10))
			if err == nil && !created {
				err = errors.New("not created")
			}
			errs[i] = err
		}()
	}
	boom := errors.New("boom")
	var rawErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		rawErr = st.UpdateRaw(ctx, func(tx kvstore.Tx) error {
			if err := tx.Put(kvstore.Sessions, []byte("half-done"), []byte("{}")); err != nil {
				return err
			}
			return boom
		})
	}()
	time.Sleep(200 * time.Millisecond) // let them all queue
	close(release)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("Create %d: %v", i, err)
		}
	}
	if !errors.Is(rawErr, boom) {
		t.Errorf("failing write returned %v, want its own error", rawErr)
	}
	if _, err := st.Get(ctx, "half-done"); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("the failed write's record is there: %v", err)
	}
	for i := range n {
		if _, err := st.Get(ctx, sessiontest.Sample(i+10).UploadID); err != nil {
			t.Errorf("Get %d: %v", i, err)
		}
	}
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes: %v", err)
	}
	// One group (rolled back), the failing write alone, the group again.
	if got := st.Commits() - before; got > 3 {
		t.Errorf("%d writes took %d transactions, want them grouped (at most 3)", n+1, got)
	}
}

// The decoded-session cache never answers with a record older than the last
// write that returned.
func testCacheFollowsWrites(t *testing.T, o Opener) {
	ctx := context.Background()
	st := o.Open(t, o.Path(t))
	defer st.Close()
	s := sessiontest.Sample(1)
	if _, _, err := st.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64 // the highest Addrs whose Update returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := written.Load()
				got, err := st.Get(ctx, s.UploadID)
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				if int64(got.Addrs) < floor {
					t.Errorf("Get returned Addrs %d after an Update to %d had returned", got.Addrs, floor)
					return
				}
			}
		}()
	}
	for i := 1; i <= 300; i++ {
		if _, err := st.Update(ctx, s.UploadID, func(s *auth.Session) error {
			s.Addrs = i
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		written.Store(int64(i))
	}
	close(stop)
	wg.Wait()
	if err := st.Delete(ctx, s.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, s.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrSessionNotFound", err)
	}
}

// A session whose strings are not valid UTF-8 reads back byte for byte (the
// record keeps strings as bytes), from the cache as from the file.
func testCacheKeepsWhatTheRecordHolds(t *testing.T, o Opener) {
	ctx := context.Background()
	path := o.Path(t)
	st := o.Open(t, path)
	s := sessiontest.Sample(1)
	s.SlotPath, s.Type = "slot-1/caf\xe9.jpg", "image/\xff"
	created, _, err := st.Create(ctx, s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.SlotPath != s.SlotPath || created.Type != s.Type {
		t.Errorf("Create returned %q %q, want the strings as stored", created.SlotPath, created.Type)
	}
	updated, err := st.Update(ctx, s.UploadID, func(p *auth.Session) error { p.LastAddr = "\xfe"; return nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := st.CheckCache(); err != nil {
		t.Error(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = o.Open(t, path)
	defer st.Close()
	got, err := st.Get(ctx, s.UploadID)
	if err != nil {
		t.Fatalf("Get after reopening: %v", err)
	}
	if got != updated {
		t.Errorf("after reopening Get = %+v, want %+v", got, updated)
	}
}

func testSlotCreator(t *testing.T, o Opener) {
	checkNewStore(t, o, func(st Store) { sessiontest.CheckSlotCreator(t, st) })
}

func testSlotResolver(t *testing.T, o Opener) {
	checkNewStore(t, o, func(st Store) { sessiontest.CheckSlotResolver(t, st) })
}

// checkNewStore runs check on a new store, then checks its indexes.
func checkNewStore(t *testing.T, o Opener, check func(Store)) {
	t.Helper()
	st := o.Open(t, o.Path(t))
	defer st.Close()
	check(st)
	if err := st.CheckIndexes(); err != nil {
		t.Error(err)
	}
}

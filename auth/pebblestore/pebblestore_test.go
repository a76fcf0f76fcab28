package pebblestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/internal/kvstore/kvstoretest"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

var opener = kvstoretest.Opener{
	Name: "sessions.db",
	OpenErr: func(path string) (kvstoretest.Store, error) {
		st, err := pebblestore.Open(path, nil)
		if err != nil {
			return nil, err
		}
		return st, nil
	},
	ErrInUse: pebblestore.ErrInUse,
}

func TestPebbleStore(t *testing.T) { kvstoretest.Run(t, opener) }

// BenchmarkPebbleStoreUpload: see kvstoretest.BenchUpload.
func BenchmarkPebbleStoreUpload(b *testing.B) { kvstoretest.BenchUpload(b, opener) }

func TestPebbleStoreDirectoryMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessions.db")
	st, err := pebblestore.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Fatalf("session database directory mode %v, want no access for group and others", mode)
	}
}

func TestPebbleStoreBadPath(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pebblestore.Open(filepath.Join(parent, "sessions.db"), nil)
	if err == nil {
		t.Fatal("Open under a file succeeded")
	}
	if errors.Is(err, pebblestore.ErrInUse) {
		t.Errorf("a path under a file reported as in use: %v", err)
	}
}

// An earlier release's bbolt file at the database's path is imported at the
// first Open: every session, slot mapping (also a re-bound upload's old
// slots) and sweep entry, and kept beside as .bbolt-imported. The import is
// not repeated, and the imported database takes writes.
func TestPebbleStoreImportsBoltFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	old, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := sessiontest.Sample(1), sessiontest.Sample(2), sessiontest.Sample(3)
	c.SweepAt = time.Time{}
	for _, s := range []auth.Session{a, b, c} {
		if _, _, err := old.Create(ctx, s); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	for _, key := range []string{sessiontest.SlotKey(4), sessiontest.SlotKey(5)} {
		if _, err := old.Rebind(ctx, a.UploadID, key, func(s *auth.Session) error {
			s.Rebinds++
			s.SlotKey = key
			return nil
		}); err != nil {
			t.Fatalf("Rebind: %v", err)
		}
	}
	a.Rebinds += 2
	a.SlotKey = sessiontest.SlotKey(5)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	want := []auth.Session{a, b, c}
	slots := map[string]string{
		sessiontest.SlotKey(1): a.UploadID,
		sessiontest.SlotKey(2): b.UploadID,
		sessiontest.SlotKey(3): c.UploadID,
		sessiontest.SlotKey(4): a.UploadID,
		sessiontest.SlotKey(5): a.UploadID,
	}

	st, err := pebblestore.Open(path, nil)
	if err != nil {
		t.Fatalf("Open over the bbolt file: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("%s after the import: %v, %v; want the database directory", path, fi, err)
	}
	if _, err := os.Stat(path + ".bbolt-imported"); err != nil {
		t.Errorf("the imported file is not kept: %v", err)
	}
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes after the import: %v", err)
	}
	sessiontest.CheckKept(t, st, "after the import", want, slots)
	due, err := st.Expired(ctx, b.SweepAt.Add(time.Nanosecond), 10)
	if err != nil || len(due) != 2 || due[0].UploadID != a.UploadID || due[1].UploadID != b.UploadID {
		t.Errorf("Expired after the import = %v, %v; want a and b, oldest first", due, err)
	}
	// Delete finds every slot of a, also those that only the reverse index lists.
	if err := st.Delete(ctx, a.UploadID); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		key := sessiontest.SlotKey(i + 1)
		id, err := st.LookupSlot(ctx, key)
		switch {
		case slots[key] == a.UploadID && !errors.Is(err, auth.ErrSessionNotFound):
			t.Errorf("slot %d of the deleted upload: %q, %v", i+1, id, err)
		case slots[key] != a.UploadID && id != slots[key]:
			t.Errorf("slot %d: %q, %v; want %q", i+1, id, err, slots[key])
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening does not import again (the kept file would bring a back).
	if err := os.Rename(path+".bbolt-imported", path+".bbolt"); err != nil {
		t.Fatal(err)
	}
	st, err = pebblestore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Get(ctx, a.UploadID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("Get of the deleted upload after a second start: %v; want ErrSessionNotFound (imported once)", err)
	}
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes after reopening: %v", err)
	}
}

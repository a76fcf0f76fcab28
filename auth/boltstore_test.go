package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

func openBolt(t *testing.T, path string) *auth.BoltStore {
	t.Helper()
	st, err := auth.OpenBoltStore(path)
	if err != nil {
		t.Fatalf("OpenBoltStore: %v", err)
	}
	return st
}

func TestBoltStoreContract(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) auth.Store {
		st := openBolt(t, filepath.Join(t.TempDir(), "sessions.db"))
		t.Cleanup(func() {
			if err := st.CheckIndexes(); err != nil {
				t.Errorf("indexes after the test: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	})
}

func TestBoltStoreSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	st := openBolt(t, path)
	a, b := sessiontest.Sample(1), sessiontest.Sample(2)
	for _, s := range []auth.Session{a, b} {
		if _, _, err := st.Create(ctx, s); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	// a takes b's slot and a new one.
	for _, key := range []string{sessiontest.SlotKey(2), sessiontest.SlotKey(3)} {
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

	st = openBolt(t, path)
	defer st.Close()
	if err := st.CheckIndexes(); err != nil {
		t.Errorf("indexes after reopen: %v", err)
	}
	for _, want := range []auth.Session{a, b} {
		got, err := st.Get(ctx, want.UploadID)
		if err != nil {
			t.Fatalf("Get after reopen: %v", err)
		}
		if !sessiontest.Equal(got, want) {
			t.Errorf("after reopen\n%+v\nwant\n%+v", got, want)
		}
	}
	for key, want := range map[string]string{
		sessiontest.SlotKey(1): a.UploadID,
		sessiontest.SlotKey(2): a.UploadID,
		sessiontest.SlotKey(3): a.UploadID,
	} {
		if got, err := st.LookupSlot(ctx, key); err != nil || got != want {
			t.Errorf("LookupSlot after reopen = %q, %v; want %q", got, err, want)
		}
	}
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
	for _, key := range []string{sessiontest.SlotKey(1), sessiontest.SlotKey(2), sessiontest.SlotKey(3)} {
		if _, err := st.LookupSlot(ctx, key); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("LookupSlot after Delete: err = %v, want ErrSessionNotFound", err)
		}
	}
}

func TestBoltStoreFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	openBolt(t, path).Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Fatalf("session database mode %v, want no access for group and others", mode)
	}
}

func TestBoltStoreInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	st := openBolt(t, path)
	defer st.Close()

	start := time.Now()
	second, err := auth.OpenBoltStore(path)
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second OpenBoltStore of an open database succeeded")
	}
	if !errors.Is(err, auth.ErrStoreInUse) {
		t.Errorf("err = %v, want ErrStoreInUse", err)
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

func TestBoltStoreClosed(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "sessions.db"))
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

func TestBoltStoreBadPath(t *testing.T) {
	_, err := auth.OpenBoltStore(filepath.Join(t.TempDir(), "missing", "sessions.db"))
	if err == nil {
		t.Fatal("OpenBoltStore in a missing directory succeeded")
	}
	if errors.Is(err, auth.ErrStoreInUse) {
		t.Errorf("a missing directory reported as in use: %v", err)
	}
}

package boltstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/uploadgate/uploadgate/auth/boltstore"
)

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return st
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

func TestBoltStoreBadPath(t *testing.T) {
	_, err := boltstore.Open(filepath.Join(t.TempDir(), "missing", "sessions.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
	if errors.Is(err, boltstore.ErrInUse) {
		t.Errorf("a missing directory reported as in use: %v", err)
	}
}

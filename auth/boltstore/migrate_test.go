package boltstore_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// writeV1 writes a database as schema version 1 laid it out: JSON records,
// slot keys as hex text, a reverse entry for every slot mapping.
func writeV1(t *testing.T, path string, sessions []auth.Session, slots map[string]string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := map[string]*bolt.Bucket{}
		for _, name := range []string{"meta", "sessions", "slots", "upload_slots", "sweep"} {
			if b[name], err = tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := b["meta"].Put([]byte("version"), []byte("1")); err != nil {
			return err
		}
		for _, s := range sessions {
			v, err := json.Marshal(s)
			if err != nil {
				return err
			}
			if err := b["sessions"].Put([]byte(s.UploadID), v); err != nil {
				return err
			}
			if !s.SweepAt.IsZero() {
				k := binary.BigEndian.AppendUint64(nil, uint64(s.SweepAt.UnixNano())^(1<<63))
				if err := b["sweep"].Put(append(k, s.UploadID...), nil); err != nil {
					return err
				}
			}
		}
		for key, id := range slots {
			if err := b["slots"].Put([]byte(key), []byte(id)); err != nil {
				return err
			}
			rev := binary.BigEndian.AppendUint16(nil, uint16(len(id)))
			if err := b["upload_slots"].Put(append(append(rev, id...), key...), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Open migrates a database of schema version 1: its sessions, slot
// mappings and sweep index read as before, and Delete still removes every
// slot of an upload.
func TestBoltStoreMigratesSchemaV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	a, b := sessiontest.Sample(1), sessiontest.Sample(2)
	a.KeepFile, b.KeepFile = false, false // not in version 1
	moved := sessiontest.SlotKey(9)       // a was re-bound from slot 9 to its own
	writeV1(t, path, []auth.Session{a, b}, map[string]string{
		a.SlotKey: a.UploadID, moved: a.UploadID, b.SlotKey: b.UploadID,
		"odd slot key": b.UploadID,
	})
	st := openBolt(t, path)
	for _, want := range []auth.Session{a, b} {
		got, err := st.Get(ctx, want.UploadID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !sessiontest.Equal(got, want) {
			t.Errorf("migrated session:\n got %+v\nwant %+v", got, want)
		}
	}
	for key, want := range map[string]string{a.SlotKey: a.UploadID, moved: a.UploadID, b.SlotKey: b.UploadID, "odd slot key": b.UploadID} {
		if got, err := st.LookupSlot(ctx, key); err != nil || got != want {
			t.Errorf("LookupSlot(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	due, err := st.Expired(ctx, b.SweepAt.Add(1), 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("Expired = %d sessions, %v; want 2", len(due), err)
	}
	if err := st.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, a.UploadID); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{a.SlotKey, moved} {
		if _, err := st.LookupSlot(ctx, key); !errors.Is(err, auth.ErrSessionNotFound) {
			t.Errorf("slot of a deleted upload: %v, want ErrSessionNotFound", err)
		}
	}
	if err := st.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Opened again, it is version 2 and reads the same.
	st = openBolt(t, path)
	defer st.Close()
	if got, err := st.Get(ctx, b.UploadID); err != nil || !sessiontest.Equal(got, b) {
		t.Errorf("after reopening: %+v, %v", got, err)
	}
}

// A database of a schema version this build does not know (a newer one) is
// refused, not misread.
func TestBoltStoreRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("version"), []byte("3"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = boltstore.Open(path)
	if err == nil || !strings.Contains(err.Error(), `unsupported schema version "3"`) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

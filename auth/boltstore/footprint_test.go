package boltstore_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// footprintUploads is how many complete uploads the footprint tests store.
const footprintUploads = 4000

// footprintCeiling is the most bytes of pages in use that a complete upload
// may keep: a guard against growth (1,586 measured when it was set; the goal
// of 300 bytes needs a more compact record and fewer index entries).
const footprintCeiling = 2048

// TestBoltStoreFootprint measures the bytes that the database keeps per
// complete upload under the default policy (go test -run Footprint -v
// shows them): the file's size and the pages in use, each divided by the
// number of uploads.
func TestBoltStoreFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base, err := st.UsedBytes()
	if err != nil {
		t.Fatal(err)
	}
	clock := sessiontest.NewClock()
	m := auth.NewSessions(st, auth.DefaultPolicy(), clock.Now)
	sessiontest.CompleteUploads(t, m, footprintUploads)
	used, err := st.UsedBytes()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	perUpload := float64(used-base) / footprintUploads
	t.Logf("bbolt, %d complete uploads: %.0f bytes per upload in pages in use, file %d bytes (%.0f per upload)",
		footprintUploads, perUpload, fi.Size(), float64(fi.Size())/footprintUploads)
	if perUpload > footprintCeiling {
		t.Errorf("%.0f bytes per complete upload; want at most %d", perUpload, footprintCeiling)
	}
}

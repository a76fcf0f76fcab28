package boltstore_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// footprintUploads is how many complete uploads the footprint tests store.
const footprintUploads = 4000

// footprintCeiling is the most bytes of pages in use that a complete upload
// may keep: a guard against growth (1,586 with JSON records, 273 measured
// with the compact record and without the redundant reverse index entry).
const footprintCeiling = 300

// TestBoltStoreFootprint measures the bytes that the database keeps per
// complete upload under the default policy (go test -run Footprint -v
// shows them): the file's size and the pages in use, each divided by the
// number of uploads.
func TestBoltStoreFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	st, path := openFootprintStore(t)
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

// TestBoltStoreHistoryBound shows that under a history bound the database
// stops growing: rounds of complete uploads, each followed by the clean-up
// past the bound, leave the pages in use and the file where the first
// round left them (bbolt reuses the freed pages).
func TestBoltStoreHistoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	st, path := openFootprintStore(t)
	clock := sessiontest.NewClock()
	p := auth.DefaultPolicy()
	p.History = time.Hour
	m := auth.NewSessions(st, p, clock.Now)
	var firstUsed, firstFile int64
	const rounds, perRound = 6, footprintUploads / 4
	for r := range rounds {
		sessiontest.CompleteUploadsFrom(t, m, r*perRound, perRound)
		// Past the session's 72 hours, which the history never cuts short.
		clock.Advance(p.MaxTTL + time.Minute)
		forgot, kept := sessiontest.ForgetDue(t, m)
		if forgot != perRound || kept != perRound {
			t.Fatalf("round %d: forgot %d records (%d keeping their file), want %d", r, forgot, kept, perRound)
		}
		used, err := st.UsedBytes()
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after %d uploads and the clean-up: %d bytes of pages in use, file %d bytes", (r+1)*perRound, used, fi.Size())
		if r == 0 {
			firstUsed, firstFile = used, fi.Size()
			continue
		}
		if used > firstUsed+64<<10 || fi.Size() > firstFile {
			t.Errorf("round %d: %d bytes in use (first round %d), file %d bytes (first round %d): the database still grows",
				r, used, firstUsed, fi.Size(), firstFile)
		}
	}
	if err := st.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
}

// openFootprintStore opens a store in a new file, closed when the test ends.
func openFootprintStore(t *testing.T) (*boltstore.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessions.db")
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, path
}

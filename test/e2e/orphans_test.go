package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// uploadIDsOnDisk lists the upload IDs in s's disk store.
func (s *server) uploadIDsOnDisk(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".info"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// The operator's way out of a damaged session database (troubleshooting.md):
// stop, move sessions.db aside, start again. The uploads then have no
// session, and the clean-up, which works from the sessions, never finds
// them. At start the gateway looks through the storage: a partial upload
// that nothing has written for longer than any session lets an upload live
// is removed; a complete file stays downloadable.
func TestUploadsWithoutSessionAfterTheSessionDatabaseIsLost(t *testing.T) {
	s := startServer(t)
	c := &http.Client{Timeout: 30 * time.Second}

	partialSlot := s.sign(t, "v2", "partial.bin", 1000, "")
	created := sessCreate(t, c, partialSlot, "partial.bin", 1000, "")
	sessMustStatus(t, "creation", created, http.StatusCreated)
	loc := created.Header.Get("Location")
	sessMustStatus(t, "PATCH of 400 bytes", sessPatch(t, c, loc, 0, make([]byte, 400)), http.StatusNoContent)
	partial := uploadID(t, loc)

	before := s.uploadIDsOnDisk(t)
	data, sum := sessRandomBytes(t, 2000)
	doneSlot := s.sign(t, "v2", "done.bin", 2000, "")
	sessMustStatus(t, "PUT", sessSend(t, c, http.MethodPut, doneSlot.PutURL, nil, data), http.StatusCreated)
	var complete string
	for _, id := range s.uploadIDsOnDisk(t) {
		if !slices.Contains(before, id) {
			complete = id
		}
	}
	if complete == "" {
		t.Fatal("the PUT's upload is not on disk")
	}

	s.sessKill(t)
	if err := os.Rename(filepath.Join(s.DataDir, "sessions.db"), filepath.Join(s.DataDir, "sessions.db.damaged")); err != nil {
		t.Fatal(err)
	}
	// 23 days without a write: past the 14-day maximum age of an upload, the
	// 7-day retention and the day of margin.
	old := time.Now().Add(-23 * 24 * time.Hour)
	for _, id := range []string{partial, complete} {
		for _, name := range []string{id, id + ".info"} {
			if err := os.Chtimes(filepath.Join(s.DataDir, "uploads", name), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	s = sessRestart(t, s)

	deadline := time.Now().Add(15 * time.Second)
	for slices.Contains(s.uploadIDsOnDisk(t), partial) {
		if time.Now().After(deadline) {
			t.Fatalf("partial upload without a session still on disk 15 s after the start; log:\n%s", readLog(t, s))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ids := s.uploadIDsOnDisk(t); !slices.Equal(ids, []string{complete}) {
		t.Fatalf("uploads on disk %v, want only the complete file %s", ids, complete)
	}
	sessCheckDownload(t, doneSlot.GetURL, 2000, sum, "")
	if log := readLog(t, s); !strings.Contains(log, "removed an upload without a session") {
		t.Fatalf("no log line for the removal; log:\n%s", log)
	}
}

func readLog(t testing.TB, s *server) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

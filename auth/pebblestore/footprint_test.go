package pebblestore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/auth/sessiontest"
)

// footprintUploads is how many complete uploads the footprint tests store.
const footprintUploads = 4000

// footprintCeiling is the most bytes on disk that a complete upload may
// keep, once the database has settled: a guard against growth.
const footprintCeiling = 300

// TestPebbleStoreFootprint measures the bytes that the database keeps per
// complete upload under the default policy (go test -run Footprint -v
// shows them), before and after it settled.
func TestPebbleStoreFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	st := openFootprintStore(t)
	base := settledBytes(t, st)
	clock := sessiontest.NewClock()
	m := auth.NewSessions(st, sessiontest.Policy(), clock.Now)
	sessiontest.CompleteUploads(t, m, footprintUploads)
	used := settledBytes(t, st)
	perUpload := float64(used-base) / footprintUploads
	stats, err := st.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Pebble, %d complete uploads: %.0f bytes per upload in its tables, settled; all files %d bytes",
		footprintUploads, perUpload, stats.DiskBytes)
	if perUpload > footprintCeiling {
		t.Errorf("%.0f bytes per complete upload; want at most %d", perUpload, footprintCeiling)
	}
}

// TestPebbleStoreHistoryBound shows that under a history bound the database
// stops growing: rounds of complete uploads, each followed by the clean-up
// past the bound, leave the settled database where the first round left it,
// give or take the deletions of one round that Pebble may not have
// compacted away yet (a table of them moved to the last level unchanged).
func TestPebbleStoreHistoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("stores thousands of uploads")
	}
	st := openFootprintStore(t)
	clock := sessiontest.NewClock()
	p := sessiontest.Policy()
	p.History = time.Hour
	m := auth.NewSessions(st, p, clock.Now)
	var first int64
	const rounds, perRound = 6, footprintUploads / 4
	// At most the deletions of about one round wait to be compacted away
	// (about 100 KB for 1,000 uploads); six rounds of records kept would
	// take about 700 KB.
	const pending = 256 << 10
	for r := range rounds {
		sessiontest.CompleteUploadsFrom(t, m, r*perRound, perRound)
		// Past the session's 72 hours, which the history never cuts short.
		clock.Advance(p.MaxTTL + time.Minute)
		forgot, kept := sessiontest.ForgetDue(t, m)
		if forgot != perRound || kept != perRound {
			t.Fatalf("round %d: forgot %d records (%d keeping their file), want %d", r, forgot, kept, perRound)
		}
		used := settledBytes(t, st)
		stats, err := st.Stats()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after %d uploads and the clean-up: %d bytes of tables settled, %d sessions, all files %d bytes",
			(r+1)*perRound, used, stats.Sessions, stats.DiskBytes)
		if used > pending {
			t.Errorf("round %d: %d bytes of tables: records or deletions pile up", r, used)
		}
		if r == 0 {
			first = used
			continue
		}
		if used > first+pending/2 {
			t.Errorf("round %d: %d bytes (first round %d): the database still grows", r, used, first)
		}
	}
	if err := st.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
}

func settledBytes(t *testing.T, st *pebblestore.Store) int64 {
	t.Helper()
	if err := st.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats, err := st.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return stats.TableBytes
}

// openFootprintStore opens a store in a new directory, closed when the test ends.
func openFootprintStore(t *testing.T) *pebblestore.Store {
	t.Helper()
	st, err := pebblestore.Open(filepath.Join(t.TempDir(), "sessions.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

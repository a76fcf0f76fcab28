package gateway

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
)

// historyGateways runs test for a gateway whose sessions keep the record of
// a complete file kept for ever an hour (and at least until its session
// ends, 72 hours after it opened), in memory and in Pebble (the compact
// record as it is stored).
func historyGateways(t *testing.T, test func(t *testing.T, tg *testGateway)) {
	p := auth.DefaultPolicy()
	p.History = time.Hour
	t.Run("memory", func(t *testing.T) { test(t, newTestGateway(t, withPolicy(p))) })
	t.Run("pebble", func(t *testing.T) {
		st, err := pebblestore.Open(filepath.Join(t.TempDir(), "sessions.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		tg := newTestGateway(t, withStore(st, p))
		if tg.store != st {
			t.Fatal("the test gateway's sessions are not in the Pebble store")
		}
		test(t, tg)
	})
}

// pastHistory moves the clock past every record's history and runs the
// clean-up.
func (tg *testGateway) pastHistory() {
	tg.t.Helper()
	tg.clock.Advance(100 * time.Hour)
	if err := tg.gw.cleanup(context.Background()); err != nil {
		tg.t.Fatal(err)
	}
}

// wantDownload checks that url serves exactly file.
func (tg *testGateway) wantDownload(url, file string) {
	tg.t.Helper()
	res, body := tg.do(http.MethodGet, url, nil, nil)
	wantStatus(tg.t, res, http.StatusOK)
	if sha(body) != sha(file) {
		tg.t.Fatalf("GET %s: SHA-256 %s, want %s", url, sha(body), sha(file))
	}
}

// record returns the session record of an upload (found or not).
func (tg *testGateway) record(id string) (auth.Session, bool) {
	tg.t.Helper()
	s, err := tg.gw.cfg.Sessions.Authorize(context.Background(), id)
	switch {
	case err == nil, errors.Is(err, auth.ErrSessionExpired):
		return s, true
	case errors.Is(err, auth.ErrSessionNotFound):
		return s, false
	}
	tg.t.Fatal(err)
	return s, false
}

// Under a history bound, the clean-up forgets the record of a complete file
// whose upload ID the slot path derives, and keeps the file: its GET URL
// serves it as before, and a replayed PUT or tus creation with its slot
// (a v1 slot never expires) confirms it or is refused, never changes it.
func TestHistoryForgetsDerivedRecord(t *testing.T) {
	historyGateways(t, func(t *testing.T, tg *testGateway) {
		file := strings.Repeat("kept file ", 1000)
		slot := tg.sign(auth.ProtoV1, "kept.txt", int64(len(file)), nil)
		res, msg := tg.put(slot.PutURL, file, nil)
		wantStatusMsg(t, res, http.StatusCreated, msg)
		id := auth.DeriveUploadID(tg.gw.cfg.IDKey, slotPathOf(t, slot.GetURL))

		// Within the history (and the session) the record stays.
		tg.clock.Advance(71 * time.Hour)
		if err := tg.gw.cleanup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok := tg.record(id); !ok {
			t.Fatal("record forgotten within the history")
		}
		tg.pastHistory()
		if _, ok := tg.record(id); ok {
			t.Fatal("record kept past the history")
		}
		tg.wantDownload(slot.GetURL, file)
		if err := tg.gw.sweepOrphans(context.Background()); err != nil {
			t.Fatal(err)
		}
		tg.wantDownload(slot.GetURL, file)

		other := strings.Repeat("othe file ", 1000)
		res, _ = tg.put(slot.PutURL, other, nil)
		wantStatus(t, res, http.StatusConflict)
		tg.wantDownload(slot.GetURL, file)
		res, _ = tg.put(slot.PutURL, file[:10], map[string]string{"Content-Range": "bytes 0-9/" + strconv.Itoa(len(file))})
		wantStatus(t, res, http.StatusCreated)
		res, _ = tg.put(slot.PutURL, "X", map[string]string{"Content-Range": "bytes 0-0/" + strconv.Itoa(len(file))})
		wantStatus(t, res, http.StatusConflict)
		res, _ = tg.put(slot.PutURL, file, nil)
		wantStatus(t, res, http.StatusCreated)
		// The replay opened a record again: complete at once, so that the
		// upload URL cannot delete the file.
		s, ok := tg.record(id)
		if !ok || !s.Complete || !s.KeepFile {
			t.Fatalf("record after a replayed PUT: %+v (found %v), want complete and to be forgotten", s, ok)
		}
		wantStatus(t, tg.deleteUpload(tg.srv.URL+"/files/"+id), http.StatusForbidden)
		tg.wantDownload(slot.GetURL, file)

		// A replayed tus creation after the next history converges on the file.
		tg.pastHistory()
		if _, ok := tg.record(id); ok {
			t.Fatal("the replay's record kept past the history")
		}
		// (v1 signs the size: another length is another signature.)
		wantStatus(t, tg.tusCreate(slot, int64(len(file)+1), nil), http.StatusForbidden)
		cr := tg.tusCreate(slot, int64(len(file)), nil)
		wantStatus(t, cr, http.StatusCreated)
		if cr.Header.Get("Upload-Offset") != strconv.Itoa(len(file)) {
			t.Fatalf("replayed creation: Upload-Offset %q, want the file's length", cr.Header.Get("Upload-Offset"))
		}
		wantStatus(t, tg.deleteUpload(cr.Header.Get("Location")), http.StatusForbidden)
		// A PATCH past the end stores nothing (its body is bounded by the size).
		tg.patch(cr.Header.Get("Location"), int64(len(file)), "more")
		wantStatus(t, tg.patch(cr.Header.Get("Location"), 0, "X"), http.StatusConflict)
		tg.wantDownload(slot.GetURL, file)
	})
}

// Under a history bound, a re-bound upload keeps its record: its new GET
// URL serves it (the new slot does not derive its ID), its old one answers
// 410, and neither slot stores another file.
func TestHistoryKeepsReboundRecord(t *testing.T) {
	historyGateways(t, func(t *testing.T, tg *testGateway) {
		file := "0123456789abcdefghij"
		old := tg.sign(auth.ProtoV3, "a.bin", int64(len(file)), nil)
		res := tg.tusCreate(old, int64(len(file)), nil)
		wantStatus(t, res, http.StatusCreated)
		loc := res.Header.Get("Location")
		wantStatus(t, tg.patch(loc, 0, file[:7]), http.StatusNoContent)
		tg.clock.Advance(25 * time.Hour)
		fresh := tg.sign(auth.ProtoV1, "a.bin", int64(len(file)), nil)
		wantStatus(t, tg.tusCreate(fresh, int64(len(file)), map[string]string{resumeFromHeader: loc}), http.StatusCreated)
		wantStatus(t, tg.patch(loc, 7, file[7:]), http.StatusNoContent)

		tg.pastHistory()
		tg.pastHistory()
		s, ok := tg.record(idOf(loc))
		if !ok || !s.Complete || s.KeepFile || s.SlotPath == "" {
			t.Fatalf("record of a re-bound upload past the history: %+v (found %v)", s, ok)
		}
		tg.wantDownload(fresh.GetURL, file)
		if get, body := tg.do(http.MethodGet, old.GetURL, nil, nil); get.StatusCode != http.StatusGone {
			t.Fatalf("old slot's GET URL: %d %q, want 410", get.StatusCode, body)
		}
		other := "ABCDEFGHIJKLMNOPQRST"
		res, _ = tg.put(fresh.PutURL, other, nil)
		wantStatus(t, res, http.StatusConflict)
		res, _ = tg.put(fresh.PutURL, file, nil)
		wantStatus(t, res, http.StatusCreated)
		// The session ended: a tus creation renews it only for an incomplete
		// upload, as without a history bound.
		wantStatus(t, tg.tusCreate(fresh, int64(len(file)), nil), http.StatusConflict)
		tg.wantDownload(fresh.GetURL, file)
		if get, _ := tg.do(http.MethodGet, old.GetURL, nil, nil); get.StatusCode != http.StatusGone {
			t.Fatalf("old slot's GET URL after the replays: %d, want 410", get.StatusCode)
		}
	})
}

// Under a history bound, an upload that started over under a new ID (a
// retried PUT with other bytes) keeps its record, compact and without a
// sweep time: its GET URL serves it, and a replayed PUT with the first
// bytes is refused.
func TestHistoryKeepsRestartedRecord(t *testing.T) {
	historyGateways(t, func(t *testing.T, tg *testGateway) {
		file := strings.Repeat("final body ", 100)
		stale := strings.Repeat("stale body ", 100)
		slot := tg.sign(auth.ProtoV1, "restart.bin", int64(len(file)), nil)
		first := tg.interruptedPut(slot, int64(len(file)), stale[:500])
		res, msg := tg.put(slot.PutURL, file, nil)
		wantStatusMsg(t, res, http.StatusCreated, msg)
		id, err := tg.gw.cfg.Sessions.AuthorizeSlot(context.Background(), slotPathOf(t, slot.GetURL))
		if err != nil || id.UploadID == first {
			t.Fatalf("restarted upload: %v, ID %q (the first was %q)", err, id.UploadID, first)
		}

		tg.pastHistory()
		s, ok := tg.record(id.UploadID)
		if !ok || !s.Complete || s.KeepFile || !s.SweepAt.IsZero() || s.SlotPath != "" {
			t.Fatalf("record of a restarted upload past the history: %+v (found %v), want it kept, compact, never swept", s, ok)
		}
		tg.wantDownload(slot.GetURL, file)
		res, _ = tg.put(slot.PutURL, stale, nil)
		wantStatus(t, res, http.StatusConflict)
		res, _ = tg.put(slot.PutURL, file, nil)
		wantStatus(t, res, http.StatusCreated)
		tg.pastHistory()
		tg.wantDownload(slot.GetURL, file)
		if _, ok := tg.stored(first); ok {
			t.Fatal("the first upload was stored again")
		}
	})
}

func wantStatusMsg(t *testing.T, res *http.Response, want int, msg string) {
	t.Helper()
	if res.StatusCode != want {
		t.Fatalf("status %d (%s), want %d", res.StatusCode, msg, want)
	}
}

// deleteUpload sends a tus termination to an upload URL.
func (tg *testGateway) deleteUpload(location string) *http.Response {
	tg.t.Helper()
	res, _ := tg.do(http.MethodDelete, location, map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	return res
}

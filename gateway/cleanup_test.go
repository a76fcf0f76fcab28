package gateway

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// The clean-up removes incomplete uploads once their session ended and the
// retention passed, and complete files after their retention; nothing before.
func TestCleanupRemovesDueUploads(t *testing.T) {
	p := auth.DefaultPolicy()
	p.FileRetention = 48 * time.Hour
	tg := newTestGateway(t, withPolicy(p))
	ctx := context.Background()

	done := tg.sign(auth.ProtoV1, "done.txt", 4, nil)
	res, _ := tg.put(done.PutURL, "done", nil)
	wantStatus(t, res, http.StatusCreated)
	partial := tg.sign(auth.ProtoV1, "partial.bin", 10, nil)
	partialID := tg.interruptedPut(partial, 10, "01234")

	// A day later nothing is due: the partial upload's session just ended.
	tg.clock.Advance(25 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.stored(partialID); !ok {
		t.Fatal("partial data removed before the retention period")
	}
	get, _ := tg.do(http.MethodGet, done.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)

	// Past the file retention the complete file goes.
	tg.clock.Advance(24 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	get, _ = tg.do(http.MethodGet, done.GetURL, nil, nil)
	wantStatus(t, get, http.StatusNotFound)
	if _, ok := tg.stored(partialID); !ok {
		t.Fatal("partial data removed before the retention period")
	}

	// Past the retention (7 days after the session's end) the partial goes too.
	tg.clock.Advance(7 * 24 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.stored(partialID); ok {
		t.Fatal("partial data kept past the retention period")
	}
	if _, err := tg.gw.cfg.Sessions.Authorize(ctx, partialID); err == nil {
		t.Fatal("session of a removed upload still authorises")
	}
	if ids := tg.uploadFiles(); len(ids) != 0 {
		t.Fatalf("uploads left: %v", ids)
	}
}

// A JWT slot's expires claim (Prosody's http_file_share_expires_after) sets
// when the complete file is deleted.
func TestCleanupHonoursSlotExpiry(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	slot, err := auth.SignSlot(testSecret, auth.SignRequest{
		BaseURL: tg.srv.URL + "/upload/", Name: "shared.jpg", Size: 3, Type: strp("image/jpeg"), Protocol: auth.ProtoJWT,
		Now: tg.clock.Now(), FileExpires: tg.clock.Now().Add(7 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	res, msg := tg.put(slot.PutURL, "img", map[string]string{"Authorization": slot.Authorization, "Content-Type": "image/jpeg"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", res.StatusCode, msg)
	}
	tg.clock.Advance(6 * 24 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	get, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)
	tg.clock.Advance(2 * 24 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	get, _ = tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusNotFound)
}

// An upload whose completion the session store missed (completion only logs
// a store failure) is not removed as an incomplete upload: the clean-up
// finds it complete in the storage and records the completion.
func TestCleanupKeepsCompleteUploadWithoutCompletion(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	slot := tg.sign(auth.ProtoV1, "finished.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "0123456789"), http.StatusNoContent)
	id := idOf(loc)
	// As if the store had failed when the last byte arrived.
	lost, err := tg.store.Update(ctx, id, func(s *auth.Session) error {
		s.Complete, s.CompletedAt = false, time.Time{}
		s.SweepAt = s.Deadline().Add(auth.DefaultRetention)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// And an upload that really is incomplete, due at the same time.
	partial := tg.sign(auth.ProtoV1, "unfinished.bin", 10, nil)
	partialID := tg.interruptedPut(partial, 10, "01234")

	tg.clock.Advance(lost.SweepAt.Add(24 * time.Hour).Sub(tg.clock.Now()))
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if data, ok := tg.stored(id); !ok || data != "0123456789" {
		t.Fatalf("complete upload after the clean-up: %q, %v; want it kept", data, ok)
	}
	s, err := tg.store.Get(ctx, id)
	if err != nil || !s.Complete {
		t.Fatalf("session after the clean-up: complete %v, %v; want the completion recorded", s.Complete, err)
	}
	if _, ok := tg.stored(partialID); ok {
		t.Fatal("the incomplete upload was kept past its retention")
	}
	get, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)
}

// orphanedUploads makes two uploads whose session record is lost, one
// incomplete and one complete, and one incomplete upload that keeps its
// session. It returns their IDs and the complete file's GET URL.
func (tg *testGateway) orphanedUploads() (partial, complete, withSession, getURL string) {
	tg.t.Helper()
	ctx := context.Background()
	withSession = tg.interruptedPut(tg.sign(auth.ProtoV1, "kept.bin", 10, nil), 10, "01234")
	partial = tg.interruptedPut(tg.sign(auth.ProtoV1, "lost.bin", 10, nil), 10, "56789")
	before := tg.uploadFiles()
	done := tg.sign(auth.ProtoV1, "done.txt", 4, nil)
	res, _ := tg.put(done.PutURL, "done", nil)
	wantStatus(tg.t, res, http.StatusCreated)
	for _, id := range tg.uploadFiles() {
		if !slices.Contains(before, id) {
			complete = id
		}
	}
	for _, id := range []string{partial, complete} {
		if err := tg.store.Delete(ctx, id); err != nil {
			tg.t.Fatal(err)
		}
	}
	return partial, complete, withSession, done.GetURL
}

// An upload whose session record is lost is never found by the clean-up,
// which works from the sessions: the sweep removes its partial data once no
// session could still let it be resumed, and keeps complete files, which
// stay downloadable.
func TestSweepRemovesAbandonedUploadsWithoutSession(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	partial, complete, withSession, getURL := tg.orphanedUploads()
	p := tg.gw.cfg.Sessions.Policy()
	abandoned := p.MaxAge + p.Retention + orphanMargin

	tg.clock.Advance(abandoned - time.Hour)
	if err := tg.gw.sweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{partial, complete, withSession} {
		if _, ok := tg.stored(id); !ok {
			t.Fatalf("upload %s removed before it was abandoned", id)
		}
	}

	tg.clock.Advance(2 * time.Hour)
	if err := tg.gw.sweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.stored(partial); ok {
		t.Fatal("abandoned partial upload without a session kept")
	}
	if _, ok := tg.stored(withSession); !ok {
		t.Fatal("the sweep removed an upload that has a session (the clean-up's to remove)")
	}
	get, body := tg.do(http.MethodGet, getURL, nil, nil)
	wantStatus(t, get, http.StatusOK)
	if body != "done" {
		t.Fatalf("complete file without a session reads %q", body)
	}
	if ids := tg.uploadFiles(); len(ids) != 2 || !slices.Contains(ids, complete) || !slices.Contains(ids, withSession) {
		t.Fatalf("uploads left %v, want %s and %s", ids, complete, withSession)
	}
}

// Under a file retention, a complete file without a session goes that long
// after its last byte, as it would with its session.
func TestSweepHonoursFileRetention(t *testing.T) {
	p := auth.DefaultPolicy()
	p.FileRetention = 48 * time.Hour
	tg := newTestGateway(t, withPolicy(p))
	ctx := context.Background()
	partial, complete, _, getURL := tg.orphanedUploads()

	tg.clock.Advance(47 * time.Hour)
	if err := tg.gw.sweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	get, _ := tg.do(http.MethodGet, getURL, nil, nil)
	wantStatus(t, get, http.StatusOK)

	tg.clock.Advance(2 * time.Hour)
	if err := tg.gw.sweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	get, _ = tg.do(http.MethodGet, getURL, nil, nil)
	wantStatus(t, get, http.StatusNotFound)
	if _, ok := tg.stored(complete); ok {
		t.Fatal("complete file without a session kept past the file retention")
	}
	if _, ok := tg.stored(partial); !ok {
		t.Fatal("partial upload removed before it was abandoned")
	}
}

// A failing session store stops the sweep: nothing is removed on a guess.
func TestSweepRemovesNothingWhenTheSessionStoreFails(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	partial, _, _, _ := tg.orphanedUploads()
	p := tg.gw.cfg.Sessions.Policy()
	tg.clock.Advance(p.MaxAge + p.Retention + orphanMargin + time.Hour)
	tg.store.Close()
	if err := tg.gw.sweepOrphans(ctx); err == nil {
		t.Fatal("sweep with a closed session store reported no error")
	}
	if _, ok := tg.stored(partial); !ok {
		t.Fatal("the sweep removed an upload while the session store failed")
	}
}

// An upload whose removal fails does not stop the clean-up: the other due
// uploads go, the failure is returned, and the failed upload stays due for
// the next clean-up.
func TestCleanupGoesOnAfterAFailedRemoval(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	var ids []string
	for _, name := range []string{"a.bin", "b.bin", "c.bin"} {
		ids = append(ids, tg.interruptedPut(tg.sign(auth.ProtoV1, name, 10, nil), 10, "01234"))
	}
	p := tg.gw.cfg.Sessions.Policy()
	tg.clock.Advance(p.MaxAge + p.Retention + time.Hour)
	due, err := tg.gw.cfg.Sessions.Due(ctx, 10)
	if err != nil || len(due) != len(ids) {
		t.Fatalf("due: %d sessions, %v; want %d", len(due), err, len(ids))
	}
	// The data of the upload the clean-up takes first is a directory that
	// is not empty: the disk store cannot remove it.
	stuck := due[0].UploadID
	bin := filepath.Join(tg.dir, "uploads", stuck)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(bin, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}

	err = tg.gw.cleanup(ctx)
	if err == nil || !strings.Contains(err.Error(), logID(stuck)) {
		t.Fatalf("clean-up: %v; want the failed removal of %s", err, logID(stuck))
	}
	for _, id := range ids {
		if id == stuck {
			continue
		}
		if _, ok := tg.stored(id); ok {
			t.Errorf("upload %s kept: the clean-up stopped at the failed one", logID(id))
		}
		if _, err := tg.store.Get(ctx, id); err == nil {
			t.Errorf("session of %s kept", logID(id))
		}
	}
	if _, err := tg.store.Get(ctx, stuck); err != nil {
		t.Errorf("session of the upload that could not be removed: %v; want it kept for the next clean-up", err)
	}

	// Once the data can be removed, the next clean-up removes it.
	if err := os.RemoveAll(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("01234"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.store.Get(ctx, stuck); err == nil {
		t.Error("session kept after a clean-up that could remove its upload")
	}
	if ids := tg.uploadFiles(); len(ids) != 0 {
		t.Fatalf("uploads left: %v", ids)
	}
}

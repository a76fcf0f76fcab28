package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// Under a history bound, the clean-up forgets the session record of a
// complete file kept for ever and keeps the file: it stays downloadable at
// its slot, and a retry of the same PUT with its slot still answers 201 (v1
// and v2 slots never expire: the retry opens a new session, which the
// clean-up marks complete again); another body answers 409. (A retry with
// an expired JWT slot is refused for the slot's expiry, as it was before
// when the complete upload's session had ended.)
func TestHistoryForgetsRecordKeepsFile(t *testing.T) {
	p := auth.DefaultPolicy()
	p.History = time.Hour
	tg := newTestGateway(t, withPolicy(p))
	ctx := context.Background()

	slot := tg.sign(auth.ProtoV1, "kept.txt", 4, nil)
	res, _ := tg.put(slot.PutURL, "kept", nil)
	wantStatus(t, res, http.StatusCreated)
	id := auth.DeriveUploadID(tg.gw.cfg.IDKey, slotPathOf(t, slot.GetURL))

	// Within the history nothing goes.
	tg.clock.Advance(59 * time.Minute)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.cfg.Sessions.Authorize(ctx, id); errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatal("record forgotten within the history")
	}

	// Past it, the record goes and the file stays.
	tg.clock.Advance(2 * time.Minute)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.cfg.Sessions.Authorize(ctx, id); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("record kept past the history: %v", err)
	}
	if data, ok := tg.stored(id); !ok || data != "kept" {
		t.Fatalf("file after the record was forgotten = %q, %v", data, ok)
	}
	get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)
	if body != "kept" {
		t.Fatalf("download = %q", body)
	}
	if err := tg.gw.sweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.stored(id); !ok {
		t.Fatal("the orphan sweep removed a file kept for ever")
	}

	// Another body is refused; the same body is confirmed.
	res, _ = tg.put(slot.PutURL, "diff", nil)
	wantStatus(t, res, http.StatusConflict)
	res, _ = tg.put(slot.PutURL, "kept", nil)
	wantStatus(t, res, http.StatusCreated)

	// The retry's session is completed again by the clean-up, and
	// forgotten once more after the history.
	tg.clock.Advance(p.IdleTTL + p.Retention + time.Minute)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := tg.gw.cfg.Sessions.Authorize(ctx, id)
	if err != nil && !errors.Is(err, auth.ErrSessionExpired) || !s.Complete || !s.KeepFile {
		t.Fatalf("session after the retry = %+v, %v", s, err)
	}
	tg.clock.Advance(2 * time.Hour)
	if err := tg.gw.cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.gw.cfg.Sessions.Authorize(ctx, id); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("retry's record kept past the history: %v", err)
	}
	get, body = tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)
	if body != "kept" {
		t.Fatalf("download = %q", body)
	}
}

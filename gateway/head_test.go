package gateway

import (
	"bytes"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// lingering counts the goroutines that tusd keeps after a request to delay
// the cancellation of its context (GracefulRequestCompletionTimeout): the
// number of mentions of the function in the goroutines' stacks.
func lingering(t *testing.T) int {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		t.Fatal(err)
	}
	return strings.Count(buf.String(), "handler.newDelayedContext")
}

// A HEAD leaves nothing behind once it has been answered: tusd's 10 s grace
// period for writes kept every polling request (and its memory) for 10 s.
func TestHeadsDoNotLinger(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "poll.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "01234"), http.StatusNoContent)
	time.Sleep(2 * headGrace)
	before := lingering(t)
	const heads = 200
	for range heads {
		h := tg.head(loc)
		wantStatus(t, h, http.StatusOK)
		if h.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("HEAD: Upload-Offset %q, want 5", h.Header.Get("Upload-Offset"))
		}
	}
	var after int
	deadline := time.Now().Add(2 * time.Second)
	for {
		after = lingering(t)
		if after <= before || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after > before {
		t.Fatalf("%d goroutines of finished HEADs still wait %v after the last one (%d before)", after-before, 2*time.Second, before)
	}
	// A PATCH keeps its grace period (it may have bytes to save).
	wantStatus(t, tg.patch(loc, 5, "56789"), http.StatusNoContent)
	if n := lingering(t); n <= after {
		t.Fatalf("after a PATCH %d lingering goroutines, before %d: the test does not see tusd's grace period", n, after)
	}
}

// A signed HEAD or PATCH whose slot has expired, accepted because the
// upload's session is live, counts as a session accept (the alert on expired
// slots subtracts them), and one without a session does not.
func TestExpiredSlotAcceptsCounted(t *testing.T) {
	tg := newTestGateway(t)
	accepts := func() float64 { return value(t, tg.gw.metrics.sessionAccepts.WithLabelValues(doorPut)) }
	slot := tg.sign(auth.ProtoV3, "late.bin", 10, nil)
	tg.interruptedPut(slot, 10, "01234")
	tg.clock.Advance(10 * time.Minute) // the slot's 5 minutes are over, the session lives
	before := accepts()
	h, _ := tg.do(http.MethodHead, slot.PutURL, nil, nil)
	wantStatus(t, h, http.StatusOK)
	if got := accepts() - before; got != 1 {
		t.Fatalf("expired-slot HEAD accepted by the session counted %v times, want 1", got)
	}
	p, _ := tg.do(http.MethodPatch, slot.PutURL, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Offset": "5", "Content-Type": "application/offset+octet-stream",
	}, strings.NewReader("56789"))
	wantStatus(t, p, http.StatusNoContent)
	if got := accepts() - before; got != 2 {
		t.Fatalf("after the expired-slot PATCH: %v accepts, want 2", got)
	}
	other := tg.sign(auth.ProtoV3, "never.bin", 10, nil)
	tg.clock.Advance(10 * time.Minute)
	h, _ = tg.do(http.MethodHead, other.PutURL, nil, nil)
	if h.StatusCode == http.StatusOK {
		t.Fatalf("HEAD of an expired slot without an upload: %d", h.StatusCode)
	}
	if got := accepts() - before; got != 2 {
		t.Fatalf("a refused expired slot was counted as accepted (%v)", got)
	}
}

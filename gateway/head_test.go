package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/hooks"
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

// settle waits up to 2 s for the lingering goroutines to fall to before and
// returns their number.
func settle(t *testing.T, before int) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := lingering(t)
		if n <= before || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	time.Sleep(2 * shortGrace)
	before := lingering(t)
	const heads = 200
	for range heads {
		h := tg.head(loc)
		wantStatus(t, h, http.StatusOK)
		if h.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("HEAD: Upload-Offset %q, want 5", h.Header.Get("Upload-Offset"))
		}
	}
	after := settle(t, before)
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

// A creation without data leaves nothing behind once it has been answered
// either (32 connections creating uploads kept about 40,000 finished
// requests for tusd's 10 s), while a creation that carries data keeps its
// grace period, as a PATCH does.
func TestBodilessCreationsDoNotLinger(t *testing.T) {
	tg := newTestGateway(t)
	before := lingering(t)
	const creations = 100
	for i := range creations {
		slot := tg.sign(auth.ProtoV2, fmt.Sprintf("photo-%d.jpg", i), 10, nil)
		wantStatus(t, tg.tusCreate(slot, 10, nil), http.StatusCreated)
	}
	after := settle(t, before)
	if after > before {
		t.Fatalf("%d goroutines of finished creations still wait %v after the last one (%d before)", after-before, 2*time.Second, before)
	}
	slot := tg.sign(auth.ProtoV2, "with-data.jpg", 10, nil)
	res, _ := tg.do(http.MethodPost, slot.PutURL, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Content-Type": "application/offset+octet-stream",
	}, strings.NewReader("01234"))
	wantStatus(t, res, http.StatusCreated)
	if res.Header.Get("Upload-Offset") != "5" {
		t.Fatalf("creation with data: Upload-Offset %q, want 5", res.Header.Get("Upload-Offset"))
	}
	if n := lingering(t); n <= after {
		t.Fatalf("after a creation with data %d lingering goroutines, before %d: it lost its grace period", n, after)
	}
}

// The handler for requests without a body creates uploads, and finishes
// those of length 0: hooks get their post-create and post-finish events.
func TestBodilessCreationsReachHooks(t *testing.T) {
	h := &recordingHook{}
	tg := newTestGateway(t, func(c *Config) {
		c.Hooks = &HookConfig{Handler: h, Events: []hooks.HookType{hooks.HookPostCreate, hooks.HookPostFinish}}
	})
	slot := tg.sign(auth.ProtoV2, "empty.txt", 0, nil)
	wantStatus(t, tg.tusCreate(slot, 0, nil), http.StatusCreated)
	deadline := time.Now().Add(5 * time.Second)
	for _, event := range []hooks.HookType{hooks.HookPostCreate, hooks.HookPostFinish} {
		for {
			ev, ok := h.find(event)
			if ok {
				if ev.Event.Upload.Size != 0 || ev.Event.Upload.MetaData[MetaGetURL] != slot.GetURL {
					t.Errorf("%s: upload %+v; want the empty upload of %s", event, ev.Event.Upload, slot.GetURL)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event within 5 s for a creation without data", event)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

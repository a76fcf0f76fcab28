package gateway

import (
	"bytes"
	"fmt"
	"io"
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

// No request leaves anything behind once it has been answered: tusd kept
// every request's context and a goroutine for its grace period (10 s by
// default), which kept about 270 MiB of a polling load's HEADs and 180 MiB
// of 32 connections' creations. A write whose request ends early still gets
// its grace from the storage (storage.WithGrace).
func TestRequestsDoNotLinger(t *testing.T) {
	tg := newTestGateway(t)
	before := lingering(t)

	// While a request is in tusd, its delayed context's goroutine is seen:
	// the count below would see one that outlived its request.
	slot := tg.sign(auth.ProtoV1, "poll.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	pr, pw := io.Pipe()
	patched := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPatch, loc, pr)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", "0")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			patched <- nil
			return
		}
		res.Body.Close()
		patched <- res
	}()
	if _, err := pw.Write([]byte("01")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for lingering(t) <= before {
		if time.Now().After(deadline) {
			t.Fatal("no goroutine of tusd's delayed context seen during a PATCH: the test cannot see lingering requests")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pw.Write([]byte("234"))
	pw.Close()
	if res := <-patched; res == nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH through a pipe: %v", res)
	}

	for range 50 {
		h := tg.head(loc)
		wantStatus(t, h, http.StatusOK)
		if h.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("HEAD: Upload-Offset %q, want 5", h.Header.Get("Upload-Offset"))
		}
	}
	for i := range 20 {
		s := tg.sign(auth.ProtoV2, fmt.Sprintf("photo-%d.jpg", i), 10, nil)
		res := tg.tusCreate(s, 10, nil)
		wantStatus(t, res, http.StatusCreated)
		wantStatus(t, tg.patch(res.Header.Get("Location"), 0, "01234"), http.StatusNoContent)
		s = tg.sign(auth.ProtoV2, fmt.Sprintf("with-data-%d.jpg", i), 10, nil)
		res, _ = tg.do(http.MethodPost, s.PutURL, map[string]string{
			"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Content-Type": "application/offset+octet-stream",
		}, strings.NewReader("01234"))
		wantStatus(t, res, http.StatusCreated)
		if res.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("creation with data: Upload-Offset %q, want 5", res.Header.Get("Upload-Offset"))
		}
		s = tg.sign(auth.ProtoV2, fmt.Sprintf("put-%d.jpg", i), 10, nil)
		put, _ := tg.put(s.PutURL, "0123456789", nil)
		wantStatus(t, put, http.StatusCreated)
	}
	if after := settle(t, before); after > before {
		t.Fatalf("%d goroutines of finished requests still wait %v after the last one (%d before)", after-before, 2*time.Second, before)
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

// A creation of length 0 creates and finishes the upload at once: hooks get
// its post-create and post-finish events.
func TestEmptyUploadReachesHooks(t *testing.T) {
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
				t.Fatalf("no %s event within 5 s for an upload of length 0", event)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

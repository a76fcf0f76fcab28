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

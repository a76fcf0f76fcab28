package upload

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// body wraps data as a request body read in pieces of at most step bytes.
func testBody(t *testing.T, data string, step int) *Body {
	t.Helper()
	r := httptest.NewRequest(http.MethodPut, "/", iotest.HalfReader(strings.NewReader(data)))
	if step == 1 {
		r.Body = io.NopCloser(iotest.OneByteReader(strings.NewReader(data)))
	}
	return NewBody(httptest.NewRecorder(), r, 0)
}

func TestBodyBound(t *testing.T) {
	for _, step := range []int{1, 2} {
		// Exactly the bound: everything is handed on, then EOF.
		b := testBody(t, "hello", step)
		b.Bound(5)
		got, err := io.ReadAll(b)
		if err != nil || string(got) != "hello" {
			t.Fatalf("step %d, exact: %q, %v", step, got, err)
		}
		if b.Unread() {
			t.Fatal("a body read to its end is still unread")
		}

		// Longer than the bound: the byte that would reach the bound is held
		// back, and reading fails with ErrBodyTooLong.
		b = testBody(t, "hello world!", step)
		b.Bound(5)
		got, err = io.ReadAll(b)
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) || len(got) >= 5 {
			t.Fatalf("step %d, overlong: handed on %q, error %v", step, got, err)
		}

		// Shorter than the bound: all of it, then EOF.
		b = testBody(t, "hel", step)
		b.Bound(5)
		if got, err = io.ReadAll(b); err != nil || string(got) != "hel" {
			t.Fatalf("step %d, short: %q, %v", step, got, err)
		}
	}

	// A bound only ever goes down.
	b := testBody(t, "0123456789", 2)
	b.Bound(3)
	b.Bound(8)
	if got, err := io.ReadAll(b); !errors.Is(err, ErrBodyTooLong) || len(got) > 2 {
		t.Fatalf("raised bound: %q, %v", got, err)
	}
	// Bound zero: no byte at all.
	b = testBody(t, "x", 2)
	b.Bound(0)
	if got, err := io.ReadAll(b); !errors.Is(err, ErrBodyTooLong) || len(got) != 0 {
		t.Fatalf("bound 0: %q, %v", got, err)
	}
	// No bound: everything.
	b = testBody(t, strings.Repeat("z", 100000), 2)
	if got, err := io.ReadAll(b); err != nil || len(got) != 100000 {
		t.Fatalf("unbounded: %d bytes, %v", len(got), err)
	}
	// A nil *Body (a request without one) is safe.
	var nb *Body
	nb.Bound(1)
	if nb.Unread() || nb.TimedOut() {
		t.Fatal("nil body")
	}
}

type stallReader struct{}

func (stallReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func TestBodyRecordsTimeout(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, "/", nil)
	r.Body = io.NopCloser(stallReader{})
	b := NewBody(httptest.NewRecorder(), r, time.Second)
	if _, err := b.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	if !b.TimedOut() || b.Unread() {
		t.Fatalf("TimedOut %v Unread %v", b.TimedOut(), b.Unread())
	}
}

func TestOutcomeKinds(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   Kind
	}{
		{204, "", OK},
		{400, "ERR_UPLOAD_INTERRUPTED: upload has been interrupted by another request for this upload resource\n", Superseded},
		{400, "ERR_UNEXPECTED_EOF: server expected to receive more bytes\n", Interrupted},
		{500, "ERR_READ_TIMEOUT: timeout while reading request body\n", Timeout},
		{413, "ERR_UPLOAD_SIZE_EXCEEDED: upload's size exceeded\n", TooLarge},
		{503, "ERR_STORAGE_UNAVAILABLE: storage unavailable; retry later\n", Storage},
		{507, "ERR_INSUFFICIENT_STORAGE: the server has no room for this upload\n", Storage},
		{503, "ERR_SERVER_SHUTDOWN: request has been interrupted because the server is shutting down\n", Shutdown},
		{409, "ERR_MISMATCHED_OFFSET: mismatched offset\n", Conflict},
		{423, "ERR_UPLOAD_LOCKED: file currently locked\n", Locked},
		{500, "ERR_LOCK_TIMEOUT: failed to acquire lock before timeout\n", Locked},
		{404, "ERR_UPLOAD_NOT_FOUND: upload not found\n", NotFound},
		{400, "ERR_INVALID_OFFSET: missing or invalid Upload-Offset header\n", Invalid},
		{500, "ERR_INTERNAL_SERVER_ERROR: boom\n", Internal},
	} {
		c2 := &capture{real: httptest.NewRecorder(), header: http.Header{"Upload-Offset": {"7"}}}
		c2.WriteHeader(c.status)
		_, _ = c2.Write([]byte(c.body))
		o := c2.outcome(nil)
		if o.Kind != c.want || o.Status != c.status || o.Offset != 7 {
			t.Errorf("%d %q: kind %s status %d offset %d; want %s", c.status, c.body, o.Kind, o.Status, o.Offset, c.want)
		}
		if c.want != OK && (o.Reason == "" || strings.HasPrefix(o.Reason, "ERR_")) {
			t.Errorf("%q: reason %q", c.body, o.Reason)
		}
	}
}

// An informational answer reaches the client at once, amended by Inform, and
// its fields do not stay in the final answer's header; Inform can hold it back.
func TestCaptureInformational(t *testing.T) {
	rec := httptest.NewRecorder()
	sent := 0
	c := &capture{real: rec, header: http.Header{}, inform: func(h http.Header) bool {
		sent++
		h.Set("Upload-Limit", "max-size=5")
		return sent == 1
	}}
	c.header.Set("Location", "/files/x")
	c.WriteHeader(104)
	c.WriteHeader(104)
	if sent != 2 || rec.Code != 104 {
		t.Fatalf("104s: inform called %d times, recorder code %d", sent, rec.Code)
	}
	if rec.Header().Get("Location") != "" || rec.Header().Get("Upload-Limit") != "" {
		t.Fatalf("the 104's fields stayed: %v", rec.Header())
	}
	var w http.ResponseWriter = c
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok || u.Unwrap() != rec {
		t.Fatal("capture does not unwrap to the connection's writer")
	}
}

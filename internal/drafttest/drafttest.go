// Package drafttest is a client of the IETF resumable-upload draft
// (draft-ietf-httpbis-resumable-upload) for tests. Like Apple's URLSession it
// reads the 104 (Upload Resumption Supported) with httptrace: every
// informational response a request gets is recorded with its fields.
//
// Only tests import it.
package drafttest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Info is one informational (1xx) response a request received.
type Info struct {
	Code   int
	Header http.Header
}

// Answer is what a draft request got: the final response, or Err when there
// was none.
type Answer struct {
	Status int
	Header http.Header
	Body   string
	Infos  []Info
	Err    error
}

// Client sends draft requests, each on a connection of its own: a request
// cut off mid-body must not leave anything behind for the next one.
type Client struct {
	// Timeout bounds each request, body and answer included; 0 is 30s.
	Timeout time.Duration
}

// Send sends a request and records every 1xx; onInfo, when not nil, sees
// each as it arrives. A non-nil body is sent with Content-Length length, or
// chunked when length is -1.
func (c Client) Send(t testing.TB, method, url string, h http.Header, body io.Reader, length int64, onInfo func(Info)) Answer {
	t.Helper()
	var mu sync.Mutex
	var a Answer
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		in := Info{Code: code, Header: http.Header(hdr).Clone()}
		mu.Lock()
		a.Infos = append(a.Infos, in)
		mu.Unlock()
		if onInfo != nil {
			onInfo(in)
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	if body != nil {
		req.ContentLength = length
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		a.Err = err
		return a
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	a.Status, a.Header, a.Body = res.StatusCode, res.Header, string(data)
	return a
}

func (c Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return 30 * time.Second
	}
	return c.Timeout
}

// WaitOffset polls HEAD on a signed slot URL (the resume fallback, which
// takes no lock) until it answers 200 with Upload-Offset want: the slot's
// upload holds want bytes. It fails t when that has not happened after the
// duration within. authorization is the slot's Authorization field, if it
// has one.
func (c Client) WaitOffset(t testing.TB, slotURL, authorization string, want int64, within time.Duration) {
	t.Helper()
	h := http.Header{}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		a := c.Send(t, http.MethodHead, slotURL, h, nil, 0, nil)
		if a.Err != nil {
			last = a.Err.Error()
		} else {
			last = strconv.Itoa(a.Status) + " Upload-Offset " + a.Header.Get("Upload-Offset")
			if a.Status == http.StatusOK && a.Header.Get("Upload-Offset") == strconv.FormatInt(want, 10) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the slot's upload did not reach %d bytes within %v: %s", want, within, last)
}

// Header builds request fields from name, value pairs.
func Header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// CompleteField is the completeness field of interop version v and its value
// for complete: Upload-Incomplete in version 3, Upload-Complete from 4 on.
func CompleteField(v int, complete bool) (name, value string) {
	if v == 3 {
		if complete {
			return "Upload-Incomplete", "?0"
		}
		return "Upload-Incomplete", "?1"
	}
	if complete {
		return "Upload-Complete", "?1"
	}
	return "Upload-Complete", "?0"
}

// StatusResumptionSupported is the draft's informational status: 104
// (Upload Resumption Supported), with the upload URL in Location.
const StatusResumptionSupported = 104

// CutRequest is a request in flight whose connection breaks in the middle of
// the body, as a client's does whose network goes away.
type CutRequest struct {
	cut      chan struct{}
	cutOnce  sync.Once
	got104   chan Info
	finished chan struct{} // closed once answer is set
	answer   Answer
}

// SendCut starts a request with body data (Content-Length len(data)) in the
// background. The body stalls after part bytes until Cut is called, and
// then fails: the connection breaks. It is cut when t ends at the latest.
func (c Client) SendCut(t testing.TB, method, url string, h http.Header, data []byte, part int) *CutRequest {
	t.Helper()
	r := &CutRequest{cut: make(chan struct{}), got104: make(chan Info, 1), finished: make(chan struct{})}
	t.Cleanup(r.breakBody)
	body := &cutBody{data: data, part: part, cut: r.cut, wait: c.timeout()}
	go func() {
		defer close(r.finished)
		r.answer = c.Send(t, method, url, h, body, int64(len(data)), func(in Info) {
			if in.Code == StatusResumptionSupported {
				select {
				case r.got104 <- in:
				default:
				}
			}
		})
	}()
	return r
}

// Await104 returns the first 104 the request got. It fails t when the
// request ended without one, or none came within within.
func (r *CutRequest) Await104(t testing.TB, within time.Duration) Info {
	t.Helper()
	select {
	case in := <-r.got104:
		return in
	case <-r.finished:
		select {
		case in := <-r.got104:
			return in
		default:
		}
		a := r.answer
		t.Fatalf("the request ended without a 104: status %d, error %v, informational %+v, %q", a.Status, a.Err, a.Infos, a.Body)
	case <-time.After(within):
		t.Fatalf("no 104 within %v", within)
	}
	return Info{}
}

// Cut breaks the request's connection and returns what the request got.
func (r *CutRequest) Cut() Answer {
	r.breakBody()
	<-r.finished
	return r.answer
}

func (r *CutRequest) breakBody() { r.cutOnce.Do(func() { close(r.cut) }) }

// errCut is the error a cut body fails with.
var errCut = errors.New("the client's network went away")

// cutBody sends data[:part], then blocks until cut is closed (or wait has
// passed) and fails with errCut.
type cutBody struct {
	data []byte
	part int
	cut  <-chan struct{}
	wait time.Duration
	pos  int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.pos < b.part {
		n := copy(p, b.data[b.pos:b.part])
		b.pos += n
		return n, nil
	}
	select {
	case <-b.cut:
	case <-time.After(b.wait):
	}
	return 0, errCut
}

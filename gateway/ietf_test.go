package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// A client of the resumable-upload draft, as Apple's URLSession is one: it
// reads the 104 (Upload Resumption Supported) with httptrace.

// draftInfo is one informational response the client received.
type draftInfo struct {
	code   int
	header http.Header
}

// draftAnswer is what a draft request got.
type draftAnswer struct {
	status int
	header http.Header
	body   string
	infos  []draftInfo
	err    error
}

// draftSend sends a request and records every 1xx; onInfo (if not nil) runs
// for each. length -1 sends the body chunked.
func draftSend(t testing.TB, method, url string, h http.Header, body io.Reader, length int64, onInfo func(draftInfo)) draftAnswer {
	t.Helper()
	var mu sync.Mutex
	var a draftAnswer
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		in := draftInfo{code: code, header: http.Header(hdr).Clone()}
		mu.Lock()
		a.infos = append(a.infos, in)
		mu.Unlock()
		if onInfo != nil {
			onInfo(in)
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	if body != nil {
		req.ContentLength = length
	}
	// A fresh transport: a cut-off request must not leave anything behind
	// for the next one.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		a.err = err
		return a
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	a.status, a.header, a.body = res.StatusCode, res.Header, string(data)
	return a
}

// draftHeader builds request headers from name/value pairs.
func draftHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// completeFieldFor is the completeness field of interop version v and its
// value for "complete".
func completeFieldFor(v int, complete bool) (string, string) {
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

var errCut = errors.New("the client's network went away")

// cutBody sends data[:part], then blocks until cut is closed and fails: a
// client whose connection broke in the middle of the body.
type cutBody struct {
	data []byte
	part int
	pos  int
	cut  <-chan struct{}
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.pos < b.part {
		n := copy(p, b.data[b.pos:b.part])
		b.pos += n
		return n, nil
	}
	select {
	case <-b.cut:
	case <-time.After(20 * time.Second):
	}
	return 0, errCut
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// signedOffset polls HEAD on the signed slot URL (which takes no lock) until
// the stored offset is want.
func (tg *testGateway) signedOffset(slot auth.SignedSlot, want int64) {
	tg.t.Helper()
	h := map[string]string{}
	if slot.Authorization != "" {
		h["Authorization"] = slot.Authorization
	}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		res, _ := tg.do(http.MethodHead, slot.PutURL, h, nil)
		last = res.Status + " Upload-Offset " + res.Header.Get("Upload-Offset")
		if res.StatusCode == http.StatusOK && res.Header.Get("Upload-Offset") == strconv.FormatInt(want, 10) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tg.t.Fatalf("the slot's upload did not reach offset %d: %s", want, last)
}

// TestIETFDraftPutResume is the draft's example 1 against the PUT door: the
// creation PUT is cut off mid-body; the client takes the upload URL from the
// 104, asks it for the offset (HEAD) and appends the rest (PATCH).
func TestIETFDraftPutResume(t *testing.T) {
	tg := newTestGateway(t)
	const size = 3<<20 + 4321
	const part = 1<<20 + 17
	for _, tc := range []struct {
		v     int
		proto auth.Protocol
	}{{3, auth.ProtoV2}, {4, auth.ProtoV1}, {5, auth.ProtoJWT}, {6, auth.ProtoV2}, {6, auth.ProtoJWT}} {
		t.Run("interop"+strconv.Itoa(tc.v)+"-"+string(tc.proto), func(t *testing.T) {
			data := randomBytes(t, size)
			name := "clip-" + strconv.Itoa(tc.v) + string(tc.proto) + ".mp4"
			slot := tg.sign(tc.proto, name, size, strp("video/mp4"))
			field, yes := completeFieldFor(tc.v, true)
			h := draftHeader("Content-Type", "video/mp4", draftVersionField, strconv.Itoa(tc.v), field, yes)
			if slot.Authorization != "" {
				h.Set("Authorization", slot.Authorization)
			}

			cut := make(chan struct{})
			got104 := make(chan draftInfo, 1)
			done := make(chan draftAnswer, 1)
			go func() {
				done <- draftSend(t, http.MethodPut, slot.PutURL, h, &cutBody{data: data, part: part, cut: cut}, size, func(in draftInfo) {
					if in.code == statusResumptionSupported {
						select {
						case got104 <- in:
						default:
						}
					}
				})
			}()
			var info draftInfo
			select {
			case info = <-got104:
			case a := <-done:
				t.Fatalf("the PUT ended without a 104: %+v", a)
			case <-time.After(10 * time.Second):
				t.Fatal("no 104 within 10s")
			}
			loc := info.header.Get("Location")
			if !strings.HasPrefix(loc, tg.srv.URL+"/files/") {
				t.Fatalf("104 Location %q; want an upload URL under %s/files/", loc, tg.srv.URL)
			}
			if v := info.header.Get(draftVersionField); v != strconv.Itoa(tc.v) {
				t.Errorf("104 %s: %q; want %d", draftVersionField, v, tc.v)
			}
			if l := info.header.Get("Upload-Limit"); l != "max-size="+strconv.Itoa(size) {
				t.Errorf("104 Upload-Limit %q; want max-size=%d (the slot's size)", l, size)
			}
			tg.signedOffset(slot, part)
			close(cut)
			if a := <-done; a.err == nil {
				t.Fatalf("the cut-off PUT got an answer: %d %q", a.status, a.body)
			}

			// Offset retrieval.
			head := draftSend(t, http.MethodHead, loc, draftHeader(draftVersionField, strconv.Itoa(tc.v)), nil, 0, nil)
			if head.err != nil || head.status != http.StatusNoContent {
				t.Fatalf("HEAD %s: %v %d; want 204", loc, head.err, head.status)
			}
			no, noVal := completeFieldFor(tc.v, false)
			if head.header.Get("Upload-Offset") != strconv.Itoa(part) || head.header.Get(no) != noVal {
				t.Fatalf("HEAD: Upload-Offset %q, %s %q; want %d, %s", head.header.Get("Upload-Offset"), no, head.header.Get(no), part, noVal)
			}
			if head.header.Get("Tus-Resumable") != "" || head.header.Get("Cache-Control") != "no-store" {
				t.Errorf("HEAD: Tus-Resumable %q, Cache-Control %q; want none, no-store", head.header.Get("Tus-Resumable"), head.header.Get("Cache-Control"))
			}
			if l := head.header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(size)) {
				t.Errorf("HEAD Upload-Limit %q; want max-size=%d", l, size)
			}

			// Append.
			ph := draftHeader(draftVersionField, strconv.Itoa(tc.v), "Upload-Offset", strconv.Itoa(part), field, yes)
			if tc.v >= 6 {
				ph.Set("Content-Type", "application/partial-upload")
			}
			patch := draftSend(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if patch.err != nil || patch.status != http.StatusCreated {
				t.Fatalf("PATCH %s: %v %d %q; want 201", loc, patch.err, patch.status, patch.body)
			}
			if patch.header.Get("Upload-Offset") != strconv.Itoa(size) || patch.header.Get(field) != yes {
				t.Errorf("PATCH: Upload-Offset %q, %s %q; want %d, %s", patch.header.Get("Upload-Offset"), field, patch.header.Get(field), size, yes)
			}
			if len(patch.infos) != 0 {
				t.Errorf("PATCH got informational responses %+v", patch.infos)
			}

			res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, res, http.StatusOK)
			if sha(body) != sha(string(data)) {
				t.Fatalf("GET %s: %d bytes, not the file", slot.GetURL, len(body))
			}
			if ct := res.Header.Get("Content-Type"); ct != "video/mp4" {
				t.Errorf("GET Content-Type %q; want video/mp4", ct)
			}
			// HEAD now says complete.
			head = draftSend(t, http.MethodHead, loc, draftHeader(draftVersionField, strconv.Itoa(tc.v)), nil, 0, nil)
			if head.status != http.StatusNoContent || head.header.Get(field) != yes {
				t.Errorf("HEAD after completion: %d, %s %q; want 204, %s", head.status, field, head.header.Get(field), yes)
			}
		})
	}
}

// TestIETFDraftPutInOneGo: a draft PUT that is not interrupted gets its 104
// and then exactly 201, and the file is served.
func TestIETFDraftPutInOneGo(t *testing.T) {
	tg := newTestGateway(t)
	for _, v := range []int{3, 4, 5, 6} {
		t.Run("interop"+strconv.Itoa(v), func(t *testing.T) {
			data := randomBytes(t, 300<<10)
			slot := tg.sign(auth.ProtoV2, "photo"+strconv.Itoa(v)+".jpg", int64(len(data)), strp("image/jpeg"))
			field, yes := completeFieldFor(v, true)
			a := draftSend(t, http.MethodPut, slot.PutURL, draftHeader("Content-Type", "image/jpeg", draftVersionField, strconv.Itoa(v), field, yes),
				bytes.NewReader(data), int64(len(data)), nil)
			if a.err != nil || a.status != http.StatusCreated {
				t.Fatalf("PUT: %v %d %q; want 201", a.err, a.status, a.body)
			}
			if len(a.infos) != 1 || a.infos[0].code != statusResumptionSupported {
				t.Fatalf("informational responses %+v; want one 104", a.infos)
			}
			loc := a.infos[0].header.Get("Location")
			if loc == "" || a.header.Get("Location") != loc {
				t.Errorf("Location: 104 %q, 201 %q; want the same upload URL", loc, a.header.Get("Location"))
			}
			if a.header.Get("Upload-Offset") != strconv.Itoa(len(data)) || a.header.Get(field) != yes {
				t.Errorf("201: Upload-Offset %q, %s %q; want %d, %s", a.header.Get("Upload-Offset"), field, a.header.Get(field), len(data), yes)
			}
			res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, res, http.StatusOK)
			if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "image/jpeg" {
				t.Fatalf("GET: %d bytes, Content-Type %q; want the file as image/jpeg", len(body), res.Header.Get("Content-Type"))
			}
			// The client lost the 201 and PUTs again: still 201, and it learns
			// the upload URL (complete: no 104 needed).
			again := draftSend(t, http.MethodPut, slot.PutURL, draftHeader("Content-Type", "image/jpeg", draftVersionField, strconv.Itoa(v), field, yes),
				bytes.NewReader(data), int64(len(data)), nil)
			if again.status != http.StatusCreated || again.header.Get("Location") != loc {
				t.Errorf("repeated PUT: %d, Location %q; want 201, %q", again.status, again.header.Get("Location"), loc)
			}
		})
	}
}

// TestIETFDraftPlainPutNoInformational: old clients never see a 1xx, nor does
// a client of an interop version the gateway does not speak, nor one that
// sends no completeness field.
func TestIETFDraftPlainPutNoInformational(t *testing.T) {
	tg := newTestGateway(t)
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"plain", draftHeader("Content-Type", "text/plain")},
		{"interop 7", draftHeader("Content-Type", "text/plain", draftVersionField, "7", "Upload-Complete", "?1")},
		{"interop 8", draftHeader("Content-Type", "text/plain", draftVersionField, "8", "Upload-Complete", "?1")},
		{"no completeness field", draftHeader("Content-Type", "text/plain", draftVersionField, "6")},
		{"interop 3 with the field of 4", draftHeader("Content-Type", "text/plain", draftVersionField, "3", "Upload-Complete", "?1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, 200<<10)
			slot := tg.sign(auth.ProtoV2, strings.ReplaceAll(tc.name, " ", "-")+".txt", int64(len(data)), strp("text/plain"))
			a := draftSend(t, http.MethodPut, slot.PutURL, tc.h, bytes.NewReader(data), int64(len(data)), nil)
			if a.err != nil || a.status != http.StatusCreated {
				t.Fatalf("PUT: %v %d %q; want 201", a.err, a.status, a.body)
			}
			if len(a.infos) != 0 {
				t.Fatalf("PUT got informational responses %+v; want none", a.infos)
			}
			if a.header.Get("Location") != "" {
				t.Errorf("PUT answer has Location %q", a.header.Get("Location"))
			}
			// A plain retry of a cut-off plain PUT gets none either.
			res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, res, http.StatusOK)
			if sha(body) != sha(string(data)) {
				t.Fatal("GET: not the file")
			}
		})
	}
	t.Run("plain retry of a cut-off PUT", func(t *testing.T) {
		data := randomBytes(t, 1<<20)
		slot := tg.sign(auth.ProtoV2, "retry.bin", int64(len(data)), nil)
		cut := make(chan struct{})
		done := make(chan draftAnswer, 1)
		go func() {
			done <- draftSend(t, http.MethodPut, slot.PutURL, http.Header{}, &cutBody{data: data, part: 400 << 10, cut: cut}, int64(len(data)), nil)
		}()
		tg.signedOffset(slot, 400<<10)
		close(cut)
		if a := <-done; len(a.infos) != 0 {
			t.Fatalf("cut-off plain PUT got informational responses %+v", a.infos)
		}
		a := draftSend(t, http.MethodPut, slot.PutURL, http.Header{}, bytes.NewReader(data), int64(len(data)), nil)
		if a.status != http.StatusCreated || len(a.infos) != 0 {
			t.Fatalf("plain retry: %d, informational %+v; want 201 and none", a.status, a.infos)
		}
	})
}

// TestIETFDraftRetriedCreation: a draft client that lost the 104 of a cut-off
// creation (or never got it) sends the creation again; the existing upload is
// continued, and the retry names it in a 104 as well.
func TestIETFDraftRetriedCreation(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 2<<20)
	slot := tg.sign(auth.ProtoV2, "again.bin", int64(len(data)), nil)
	h := draftHeader(draftVersionField, "6", "Upload-Complete", "?1")
	cut := make(chan struct{})
	done := make(chan draftAnswer, 1)
	go func() {
		done <- draftSend(t, http.MethodPut, slot.PutURL, h, &cutBody{data: data, part: 700 << 10, cut: cut}, int64(len(data)), nil)
	}()
	tg.signedOffset(slot, 700<<10)
	close(cut)
	first := <-done
	if len(first.infos) != 1 {
		t.Fatalf("cut-off creation: informational %+v; want one 104", first.infos)
	}
	a := draftSend(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data), int64(len(data)), nil)
	if a.status != http.StatusCreated {
		t.Fatalf("retried creation: %d %q; want 201", a.status, a.body)
	}
	if len(a.infos) != 1 || a.infos[0].header.Get("Location") != first.infos[0].header.Get("Location") {
		t.Fatalf("retried creation: informational %+v; want one 104 naming %s", a.infos, first.infos[0].header.Get("Location"))
	}
	if a.header.Get("Upload-Complete") != "?1" {
		t.Errorf("retried creation: Upload-Complete %q; want ?1", a.header.Get("Upload-Complete"))
	}
	_, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	if sha(body) != sha(string(data)) {
		t.Fatal("GET: not the file")
	}
}

// TestIETFDraftIncompleteCreation is the draft's example 2 (interop 6): the
// upload is sent in parts, the first with the creation.
func TestIETFDraftIncompleteCreation(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 100<<10)
	slot := tg.sign(auth.ProtoJWT, "parts.pdf", int64(len(data)), strp("application/pdf"))
	base := draftHeader(draftVersionField, "6", "Authorization", slot.Authorization)

	// Without Upload-Length an incomplete creation cannot be checked against the slot.
	h := base.Clone()
	h.Set("Upload-Complete", "?0")
	h.Set("Content-Type", "application/pdf")
	if a := draftSend(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data[:1000]), 1000, nil); a.status != http.StatusLengthRequired || len(a.infos) != 0 {
		t.Fatalf("incomplete creation without Upload-Length: %d, informational %+v; want 411 and none", a.status, a.infos)
	}
	h.Set("Upload-Length", strconv.Itoa(len(data)))
	a := draftSend(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data[:25<<10]), 25<<10, nil)
	if a.status != http.StatusCreated || a.header.Get("Upload-Complete") != "?0" || a.header.Get("Upload-Offset") != strconv.Itoa(25<<10) {
		t.Fatalf("incomplete creation: %d, Upload-Complete %q, Upload-Offset %q; want 201, ?0, %d", a.status, a.header.Get("Upload-Complete"), a.header.Get("Upload-Offset"), 25<<10)
	}
	loc := a.header.Get("Location")
	if loc == "" {
		t.Fatal("incomplete creation: no Location")
	}
	if l := a.header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(len(data))+", expires=") {
		t.Errorf("Upload-Limit %q; want max-size=%d and expires", l, len(data))
	}
	res, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, res, http.StatusNotFound)

	patch := func(off, end int, complete string, ctype string) draftAnswer {
		ph := draftHeader(draftVersionField, "6", "Upload-Offset", strconv.Itoa(off), "Upload-Complete", complete)
		if ctype != "" {
			ph.Set("Content-Type", ctype)
		}
		return draftSend(t, http.MethodPatch, loc, ph, bytes.NewReader(data[off:end]), int64(end-off), nil)
	}
	// Interop 6 appends only application/partial-upload.
	if a := patch(25<<10, 50<<10, "?0", ""); a.status != http.StatusBadRequest {
		t.Fatalf("PATCH without application/partial-upload: %d; want 400", a.status)
	}
	// A wrong offset: 409 with the right one.
	if a := patch(30<<10, 50<<10, "?0", "application/partial-upload"); a.status != http.StatusConflict || a.header.Get("Upload-Offset") != strconv.Itoa(25<<10) || a.header.Get("Upload-Complete") != "?0" {
		t.Fatalf("PATCH at a wrong offset: %d, Upload-Offset %q, Upload-Complete %q; want 409, %d, ?0", a.status, a.header.Get("Upload-Offset"), a.header.Get("Upload-Complete"), 25<<10)
	}
	if a := patch(25<<10, 50<<10, "?0", "application/partial-upload"); a.status != http.StatusCreated || a.header.Get("Upload-Complete") != "?0" || a.header.Get("Upload-Offset") != strconv.Itoa(50<<10) {
		t.Fatalf("PATCH of a middle part: %d, Upload-Complete %q, Upload-Offset %q; want 201, ?0, %d", a.status, a.header.Get("Upload-Complete"), a.header.Get("Upload-Offset"), 50<<10)
	}
	// Upload-Complete: ?1 on a part that does not end the upload: refused
	// (the part is kept, as the offset says).
	if a := patch(50<<10, 60<<10, "?1", "application/partial-upload"); a.status != http.StatusBadRequest || a.header.Get("Upload-Offset") != strconv.Itoa(60<<10) {
		t.Fatalf("PATCH claiming the end too early: %d, Upload-Offset %q; want 400, %d", a.status, a.header.Get("Upload-Offset"), 60<<10)
	}
	if a := patch(60<<10, len(data), "?1", "application/partial-upload"); a.status != http.StatusCreated || a.header.Get("Upload-Complete") != "?1" {
		t.Fatalf("last PATCH: %d %q, Upload-Complete %q; want 201, ?1", a.status, a.body, a.header.Get("Upload-Complete"))
	}
	// A complete upload is not modified: 400.
	if a := patch(len(data), len(data), "?1", "application/partial-upload"); a.status != http.StatusBadRequest {
		t.Fatalf("PATCH of the complete upload: %d; want 400", a.status)
	}
	res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, res, http.StatusOK)
	if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("GET: %d bytes, Content-Type %q; want the file as application/pdf", len(body), res.Header.Get("Content-Type"))
	}
}

// TestIETFDraftRefusals: fields the draft forbids, wrong lengths, and the
// Upload-Limit on OPTIONS and on 413.
func TestIETFDraftRefusals(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.MaxSize = 1 << 20 })
	data := randomBytes(t, 5000)
	slot := tg.sign(auth.ProtoV2, "r.bin", int64(len(data)), nil)
	v6 := func(kv ...string) http.Header { return draftHeader(append([]string{draftVersionField, "6"}, kv...)...) }

	for _, tc := range []struct {
		name string
		h    http.Header
		n    int
		want int
	}{
		{"bad completeness value", v6("Upload-Complete", "yes"), len(data), http.StatusBadRequest},
		{"Upload-Length differs from Content-Length", v6("Upload-Complete", "?1", "Upload-Length", "4999"), len(data), http.StatusBadRequest},
		{"Content-Range", v6("Upload-Complete", "?1", "Content-Range", "bytes 0-4999/5000"), len(data), http.StatusBadRequest},
		{"length other than signed", v6("Upload-Complete", "?1"), len(data) - 1, http.StatusForbidden},
	} {
		a := draftSend(t, http.MethodPut, slot.PutURL, tc.h, bytes.NewReader(data[:tc.n]), int64(tc.n), nil)
		if a.status != tc.want || len(a.infos) != 0 {
			t.Errorf("%s: %d %q, informational %+v; want %d and none", tc.name, a.status, a.body, a.infos, tc.want)
		}
	}

	// Larger than the gateway's maximum: 413 with Upload-Limit.
	big := tg.sign(auth.ProtoJWT, "big.bin", 2<<20, nil)
	a := draftSend(t, http.MethodPut, big.PutURL, v6("Upload-Complete", "?1", "Authorization", big.Authorization), bytes.NewReader(make([]byte, 2<<20)), 2<<20, nil)
	if a.status != http.StatusRequestEntityTooLarge || a.header.Get("Upload-Limit") != "max-size=1048576" || len(a.infos) != 0 {
		t.Errorf("PUT over --max-size: %d, Upload-Limit %q, informational %+v; want 413, max-size=1048576, none", a.status, a.header.Get("Upload-Limit"), a.infos)
	}

	// OPTIONS on the slot URL states the slot's size: from the JWT, or from
	// the slot's upload once it exists; else the gateway's maximum.
	jwtSlot := tg.sign(auth.ProtoJWT, "o.bin", 4242, nil)
	if a := draftSend(t, http.MethodOptions, jwtSlot.PutURL, v6("Authorization", jwtSlot.Authorization), nil, 0, nil); a.header.Get("Upload-Limit") != "max-size=4242" {
		t.Errorf("OPTIONS on a JWT slot: %d, Upload-Limit %q; want max-size=4242", a.status, a.header.Get("Upload-Limit"))
	}
	if a := draftSend(t, http.MethodOptions, slot.PutURL, v6(), nil, 0, nil); a.header.Get("Upload-Limit") != "max-size=1048576" {
		t.Errorf("OPTIONS on a new v2 slot: %d, Upload-Limit %q; want max-size=1048576", a.status, a.header.Get("Upload-Limit"))
	}
	put := draftSend(t, http.MethodPut, slot.PutURL, v6("Upload-Complete", "?0", "Upload-Length", "5000"), bytes.NewReader(data[:100]), 100, nil)
	if put.status != http.StatusCreated {
		t.Fatalf("incomplete creation: %d %q", put.status, put.body)
	}
	if a := draftSend(t, http.MethodOptions, slot.PutURL, v6(), nil, 0, nil); a.header.Get("Upload-Limit") != "max-size=5000" {
		t.Errorf("OPTIONS on a v2 slot with an upload: %d, Upload-Limit %q; want max-size=5000", a.status, a.header.Get("Upload-Limit"))
	}
	forged := strings.Replace(slot.PutURL, "v2=", "v2=00", 1)
	if a := draftSend(t, http.MethodOptions, forged, v6(), nil, 0, nil); a.header.Get("Upload-Limit") != "max-size=1048576" {
		t.Errorf("OPTIONS with a forged signature: Upload-Limit %q; want the gateway's maximum only", a.header.Get("Upload-Limit"))
	}

	// Offset retrieval and cancellation carry no offset, completeness or length.
	loc := put.header.Get("Location")
	for _, tc := range []struct {
		method string
		h      http.Header
	}{
		{http.MethodHead, v6("Upload-Offset", "0")},
		{http.MethodHead, v6("Upload-Complete", "?0")},
		{http.MethodHead, v6("Upload-Length", "5000")},
		{http.MethodDelete, v6("Upload-Offset", "0")},
		{http.MethodDelete, draftHeader(draftVersionField, "3", "Upload-Incomplete", "?1")},
	} {
		if a := draftSend(t, tc.method, loc, tc.h, nil, 0, nil); a.status != http.StatusBadRequest {
			t.Errorf("%s with %v: %d; want 400", tc.method, tc.h, a.status)
		}
	}
	// Too much for the recorded length: 400 (drafts -02 to -05), offset kept.
	ph := v6("Upload-Offset", "100", "Upload-Complete", "?1", "Content-Type", "application/partial-upload")
	if a := draftSend(t, http.MethodPatch, loc, ph, bytes.NewReader(make([]byte, 5000)), 5000, nil); a.status != http.StatusBadRequest || a.header.Get("Upload-Offset") != "100" {
		t.Errorf("PATCH past the length: %d, Upload-Offset %q; want 400, 100", a.status, a.header.Get("Upload-Offset"))
	}
	// Cancellation.
	if a := draftSend(t, http.MethodDelete, loc, v6(), nil, 0, nil); a.status != http.StatusNoContent {
		t.Errorf("DELETE: %d; want 204", a.status)
	}
	if a := draftSend(t, http.MethodHead, loc, v6(), nil, 0, nil); a.status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d; want 404", a.status)
	}
}

// TestIETFDraftTusDoor: tus-js-client's draft mode ("ietf-draft-05", interop
// 6) creates at the slot URL by POST with Upload-Length and Upload-Metadata
// and no content, then appends.
func TestIETFDraftTusDoor(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 64<<10)
	slot := tg.sign(auth.ProtoV2, "t.webp", int64(len(data)), strp("image/webp"))
	h := draftHeader(draftVersionField, "6", "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", metadataHeader(map[string]string{"filename": "t.webp", "filetype": "image/webp"}))
	a := draftSend(t, http.MethodPost, slot.PutURL, h, nil, 0, nil)
	if a.status != http.StatusCreated || a.header.Get("Upload-Complete") != "?0" || a.header.Get("Upload-Offset") != "0" {
		t.Fatalf("POST: %d %q, Upload-Complete %q, Upload-Offset %q; want 201, ?0, 0", a.status, a.body, a.header.Get("Upload-Complete"), a.header.Get("Upload-Offset"))
	}
	loc := a.header.Get("Location")
	if len(a.infos) != 1 || a.infos[0].header.Get("Location") != loc || a.infos[0].header.Get("Upload-Limit") != "max-size="+strconv.Itoa(len(data)) {
		t.Errorf("POST informational %+v; want one 104 with Location %s and the slot's size", a.infos, loc)
	}
	ph := draftHeader(draftVersionField, "6", "Upload-Offset", "0", "Upload-Complete", "?1", "Content-Type", "application/partial-upload")
	if p := draftSend(t, http.MethodPatch, loc, ph, bytes.NewReader(data), int64(len(data)), nil); p.status != http.StatusCreated || p.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("PATCH: %d %q; want 201 with Upload-Offset %d", p.status, p.body, len(data))
	}
	res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, res, http.StatusOK)
	if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "image/webp" {
		t.Fatalf("GET: %d bytes, Content-Type %q; want the file as image/webp", len(body), res.Header.Get("Content-Type"))
	}
	// The signed type comes from the metadata, not from what tusd would take
	// (Content-Type): a creation that claims another type is refused.
	other := tg.sign(auth.ProtoV2, "u.webp", 10, strp("image/webp"))
	h2 := draftHeader(draftVersionField, "6", "Upload-Complete", "?1", "Content-Type", "text/html",
		"Upload-Metadata", metadataHeader(map[string]string{"filetype": "text/html"}))
	if a := draftSend(t, http.MethodPost, other.PutURL, h2, strings.NewReader("<b>html</b"), 10, nil); a.status != http.StatusForbidden || len(a.infos) != 0 {
		t.Errorf("POST claiming another type: %d, informational %+v; want 403 and none", a.status, a.infos)
	}
	// A one-request creation states its length by Content-Length alone.
	h3 := draftHeader(draftVersionField, "6", "Upload-Complete", "?1", "Upload-Metadata", metadataHeader(map[string]string{"filetype": "image/webp"}))
	if a := draftSend(t, http.MethodPost, other.PutURL, h3, strings.NewReader("0123456789"), 10, nil); a.status != http.StatusCreated || a.header.Get("Upload-Complete") != "?1" {
		t.Errorf("POST with the whole file: %d %q, Upload-Complete %q; want 201, ?1", a.status, a.body, a.header.Get("Upload-Complete"))
	}
	if res, body := tg.do(http.MethodGet, other.GetURL, nil, nil); res.StatusCode != http.StatusOK || body != "0123456789" || res.Header.Get("Content-Type") != "image/webp" {
		t.Errorf("GET: %d %q %q", res.StatusCode, body, res.Header.Get("Content-Type"))
	}
	// Concatenation is tus 1.0 only.
	h4 := draftHeader(draftVersionField, "6", "Upload-Complete", "?0", "Upload-Length", "10", "Upload-Concat", "partial")
	if a := draftSend(t, http.MethodPost, other.PutURL, h4, nil, 0, nil); a.status != http.StatusBadRequest {
		t.Errorf("draft POST with Upload-Concat: %d; want 400", a.status)
	}
}

// TestIETFDraftWriterStatuses: a draft client resumes after a 5xx but gives
// up after a 4xx, so tus's 423 ("retry") reaches it as 503; an upload whose
// session ended is 404, the draft's word for it.
func TestIETFDraftWriterStatuses(t *testing.T) {
	tg := newTestGateway(t)
	for _, tc := range []struct {
		kind       draftKind
		code, want int
	}{
		{draftUpload, http.StatusLocked, http.StatusServiceUnavailable},
		{draftPut, http.StatusLocked, http.StatusServiceUnavailable},
		{draftUpload, http.StatusGone, http.StatusNotFound},
		{draftUpload, http.StatusForbidden, http.StatusForbidden},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodHead, "/files/x", nil)
		d := &draftWriter{ResponseWriter: rec, g: tg.gw, r: r, v: 6, kind: tc.kind, size: -1}
		d.WriteHeader(tc.code)
		if rec.Code != tc.want {
			t.Errorf("kind %d: %d became %d; want %d", tc.kind, tc.code, rec.Code, tc.want)
		}
		if tc.want == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Errorf("kind %d: 503 without Retry-After", tc.kind)
		}
	}
}

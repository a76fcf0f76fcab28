package gateway

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/internal/drafttest"
)

// draftClient is a client of the resumable-upload draft, as Apple's
// URLSession is one: it reads the 104 (Upload Resumption Supported) with
// httptrace.
var draftClient = drafttest.Client{Timeout: 30 * time.Second}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
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
			field, yes := drafttest.CompleteField(tc.v, true)
			h := drafttest.Header("Content-Type", "video/mp4", draftVersionField, strconv.Itoa(tc.v), field, yes)
			if slot.Authorization != "" {
				h.Set("Authorization", slot.Authorization)
			}

			put := draftClient.SendCut(t, http.MethodPut, slot.PutURL, h, data, part)
			info := put.Await104(t, 10*time.Second)
			loc := info.Header.Get("Location")
			if !strings.HasPrefix(loc, tg.srv.URL+"/files/") {
				t.Fatalf("104 Location %q; want an upload URL under %s/files/", loc, tg.srv.URL)
			}
			if v := info.Header.Get(draftVersionField); v != strconv.Itoa(tc.v) {
				t.Errorf("104 %s: %q; want %d", draftVersionField, v, tc.v)
			}
			if l := info.Header.Get("Upload-Limit"); l != "max-size="+strconv.Itoa(size) {
				t.Errorf("104 Upload-Limit %q; want max-size=%d (the slot's size)", l, size)
			}
			draftClient.WaitOffset(t, slot.PutURL, slot.Authorization, part, 10*time.Second)
			if a := put.Cut(); a.Err == nil {
				t.Fatalf("the cut-off PUT got an answer: %d %q", a.Status, a.Body)
			}

			// Offset retrieval.
			head := draftClient.Send(t, http.MethodHead, loc, drafttest.Header(draftVersionField, strconv.Itoa(tc.v)), nil, 0, nil)
			if head.Err != nil || head.Status != http.StatusNoContent {
				t.Fatalf("HEAD %s: %v %d; want 204", loc, head.Err, head.Status)
			}
			no, noVal := drafttest.CompleteField(tc.v, false)
			if head.Header.Get("Upload-Offset") != strconv.Itoa(part) || head.Header.Get(no) != noVal {
				t.Fatalf("HEAD: Upload-Offset %q, %s %q; want %d, %s", head.Header.Get("Upload-Offset"), no, head.Header.Get(no), part, noVal)
			}
			if head.Header.Get("Tus-Resumable") != "" || head.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("HEAD: Tus-Resumable %q, Cache-Control %q; want none, no-store", head.Header.Get("Tus-Resumable"), head.Header.Get("Cache-Control"))
			}
			if l := head.Header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(size)) {
				t.Errorf("HEAD Upload-Limit %q; want max-size=%d", l, size)
			}

			// Append.
			ph := drafttest.Header(draftVersionField, strconv.Itoa(tc.v), "Upload-Offset", strconv.Itoa(part), field, yes)
			if tc.v >= 6 {
				ph.Set("Content-Type", "application/partial-upload")
			}
			patch := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if patch.Err != nil || patch.Status != http.StatusCreated {
				t.Fatalf("PATCH %s: %v %d %q; want 201", loc, patch.Err, patch.Status, patch.Body)
			}
			if patch.Header.Get("Upload-Offset") != strconv.Itoa(size) || patch.Header.Get(field) != yes {
				t.Errorf("PATCH: Upload-Offset %q, %s %q; want %d, %s", patch.Header.Get("Upload-Offset"), field, patch.Header.Get(field), size, yes)
			}
			if len(patch.Infos) != 0 {
				t.Errorf("PATCH got informational responses %+v", patch.Infos)
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
			head = draftClient.Send(t, http.MethodHead, loc, drafttest.Header(draftVersionField, strconv.Itoa(tc.v)), nil, 0, nil)
			if head.Status != http.StatusNoContent || head.Header.Get(field) != yes {
				t.Errorf("HEAD after completion: %d, %s %q; want 204, %s", head.Status, field, head.Header.Get(field), yes)
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
			field, yes := drafttest.CompleteField(v, true)
			a := draftClient.Send(t, http.MethodPut, slot.PutURL, drafttest.Header("Content-Type", "image/jpeg", draftVersionField, strconv.Itoa(v), field, yes),
				bytes.NewReader(data), int64(len(data)), nil)
			if a.Err != nil || a.Status != http.StatusCreated {
				t.Fatalf("PUT: %v %d %q; want 201", a.Err, a.Status, a.Body)
			}
			if len(a.Infos) != 1 || a.Infos[0].Code != statusResumptionSupported {
				t.Fatalf("informational responses %+v; want one 104", a.Infos)
			}
			loc := a.Infos[0].Header.Get("Location")
			if loc == "" || a.Header.Get("Location") != loc {
				t.Errorf("Location: 104 %q, 201 %q; want the same upload URL", loc, a.Header.Get("Location"))
			}
			if a.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) || a.Header.Get(field) != yes {
				t.Errorf("201: Upload-Offset %q, %s %q; want %d, %s", a.Header.Get("Upload-Offset"), field, a.Header.Get(field), len(data), yes)
			}
			res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, res, http.StatusOK)
			if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "image/jpeg" {
				t.Fatalf("GET: %d bytes, Content-Type %q; want the file as image/jpeg", len(body), res.Header.Get("Content-Type"))
			}
			// The client lost the 201 and PUTs again: still 201, and it learns
			// the upload URL (complete: no 104 needed).
			again := draftClient.Send(t, http.MethodPut, slot.PutURL, drafttest.Header("Content-Type", "image/jpeg", draftVersionField, strconv.Itoa(v), field, yes),
				bytes.NewReader(data), int64(len(data)), nil)
			if again.Status != http.StatusCreated || again.Header.Get("Location") != loc {
				t.Errorf("repeated PUT: %d, Location %q; want 201, %q", again.Status, again.Header.Get("Location"), loc)
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
		{"plain", drafttest.Header("Content-Type", "text/plain")},
		{"interop 9", drafttest.Header("Content-Type", "text/plain", draftVersionField, "9", "Upload-Complete", "?1")},
		{"interop 2", drafttest.Header("Content-Type", "text/plain", draftVersionField, "2", "Upload-Incomplete", "?0")},
		{"interop 8 without the field", drafttest.Header("Content-Type", "text/plain", draftVersionField, "8")},
		{"no completeness field", drafttest.Header("Content-Type", "text/plain", draftVersionField, "6")},
		{"interop 3 with the field of 4", drafttest.Header("Content-Type", "text/plain", draftVersionField, "3", "Upload-Complete", "?1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, 200<<10)
			slot := tg.sign(auth.ProtoV2, strings.ReplaceAll(tc.name, " ", "-")+".txt", int64(len(data)), strp("text/plain"))
			a := draftClient.Send(t, http.MethodPut, slot.PutURL, tc.h, bytes.NewReader(data), int64(len(data)), nil)
			if a.Err != nil || a.Status != http.StatusCreated {
				t.Fatalf("PUT: %v %d %q; want 201", a.Err, a.Status, a.Body)
			}
			if len(a.Infos) != 0 {
				t.Fatalf("PUT got informational responses %+v; want none", a.Infos)
			}
			if a.Header.Get("Location") != "" {
				t.Errorf("PUT answer has Location %q", a.Header.Get("Location"))
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
		put := draftClient.SendCut(t, http.MethodPut, slot.PutURL, http.Header{}, data, 400<<10)
		draftClient.WaitOffset(t, slot.PutURL, slot.Authorization, 400<<10, 10*time.Second)
		if a := put.Cut(); len(a.Infos) != 0 {
			t.Fatalf("cut-off plain PUT got informational responses %+v", a.Infos)
		}
		a := draftClient.Send(t, http.MethodPut, slot.PutURL, http.Header{}, bytes.NewReader(data), int64(len(data)), nil)
		if a.Status != http.StatusCreated || len(a.Infos) != 0 {
			t.Fatalf("plain retry: %d, informational %+v; want 201 and none", a.Status, a.Infos)
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
	h := drafttest.Header(draftVersionField, "6", "Upload-Complete", "?1")
	put := draftClient.SendCut(t, http.MethodPut, slot.PutURL, h, data, 700<<10)
	draftClient.WaitOffset(t, slot.PutURL, slot.Authorization, 700<<10, 10*time.Second)
	first := put.Cut()
	if len(first.Infos) != 1 {
		t.Fatalf("cut-off creation: informational %+v; want one 104", first.Infos)
	}
	a := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data), int64(len(data)), nil)
	if a.Status != http.StatusCreated {
		t.Fatalf("retried creation: %d %q; want 201", a.Status, a.Body)
	}
	if len(a.Infos) != 1 || a.Infos[0].Header.Get("Location") != first.Infos[0].Header.Get("Location") {
		t.Fatalf("retried creation: informational %+v; want one 104 naming %s", a.Infos, first.Infos[0].Header.Get("Location"))
	}
	if a.Header.Get("Upload-Complete") != "?1" {
		t.Errorf("retried creation: Upload-Complete %q; want ?1", a.Header.Get("Upload-Complete"))
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
	base := drafttest.Header(draftVersionField, "6", "Authorization", slot.Authorization)

	// Without Upload-Length an incomplete creation cannot be checked against the slot.
	h := base.Clone()
	h.Set("Upload-Complete", "?0")
	h.Set("Content-Type", "application/pdf")
	if a := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data[:1000]), 1000, nil); a.Status != http.StatusLengthRequired || len(a.Infos) != 0 {
		t.Fatalf("incomplete creation without Upload-Length: %d, informational %+v; want 411 and none", a.Status, a.Infos)
	}
	h.Set("Upload-Length", strconv.Itoa(len(data)))
	a := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data[:25<<10]), 25<<10, nil)
	if a.Status != http.StatusCreated || a.Header.Get("Upload-Complete") != "?0" || a.Header.Get("Upload-Offset") != strconv.Itoa(25<<10) {
		t.Fatalf("incomplete creation: %d, Upload-Complete %q, Upload-Offset %q; want 201, ?0, %d", a.Status, a.Header.Get("Upload-Complete"), a.Header.Get("Upload-Offset"), 25<<10)
	}
	loc := a.Header.Get("Location")
	if loc == "" {
		t.Fatal("incomplete creation: no Location")
	}
	if l := a.Header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(len(data))+", expires=") {
		t.Errorf("Upload-Limit %q; want max-size=%d and expires", l, len(data))
	}
	res, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, res, http.StatusNotFound)

	patch := func(off, end int, complete string, ctype string) drafttest.Answer {
		ph := drafttest.Header(draftVersionField, "6", "Upload-Offset", strconv.Itoa(off), "Upload-Complete", complete)
		if ctype != "" {
			ph.Set("Content-Type", ctype)
		}
		return draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[off:end]), int64(end-off), nil)
	}
	// Interop 6 appends only application/partial-upload.
	if a := patch(25<<10, 50<<10, "?0", ""); a.Status != http.StatusBadRequest {
		t.Fatalf("PATCH without application/partial-upload: %d; want 400", a.Status)
	}
	// A wrong offset: 409 with the right one.
	if a := patch(30<<10, 50<<10, "?0", "application/partial-upload"); a.Status != http.StatusConflict || a.Header.Get("Upload-Offset") != strconv.Itoa(25<<10) || a.Header.Get("Upload-Complete") != "?0" {
		t.Fatalf("PATCH at a wrong offset: %d, Upload-Offset %q, Upload-Complete %q; want 409, %d, ?0", a.Status, a.Header.Get("Upload-Offset"), a.Header.Get("Upload-Complete"), 25<<10)
	}
	if a := patch(25<<10, 50<<10, "?0", "application/partial-upload"); a.Status != http.StatusCreated || a.Header.Get("Upload-Complete") != "?0" || a.Header.Get("Upload-Offset") != strconv.Itoa(50<<10) {
		t.Fatalf("PATCH of a middle part: %d, Upload-Complete %q, Upload-Offset %q; want 201, ?0, %d", a.Status, a.Header.Get("Upload-Complete"), a.Header.Get("Upload-Offset"), 50<<10)
	}
	// Upload-Complete: ?1 on a part that does not end the upload: refused
	// (the part is kept, as the offset says).
	if a := patch(50<<10, 60<<10, "?1", "application/partial-upload"); a.Status != http.StatusBadRequest || a.Header.Get("Upload-Offset") != strconv.Itoa(60<<10) {
		t.Fatalf("PATCH claiming the end too early: %d, Upload-Offset %q; want 400, %d", a.Status, a.Header.Get("Upload-Offset"), 60<<10)
	}
	if a := patch(60<<10, len(data), "?1", "application/partial-upload"); a.Status != http.StatusCreated || a.Header.Get("Upload-Complete") != "?1" {
		t.Fatalf("last PATCH: %d %q, Upload-Complete %q; want 201, ?1", a.Status, a.Body, a.Header.Get("Upload-Complete"))
	}
	// A complete upload is not modified: 400.
	if a := patch(len(data), len(data), "?1", "application/partial-upload"); a.Status != http.StatusBadRequest {
		t.Fatalf("PATCH of the complete upload: %d; want 400", a.Status)
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
	v6 := func(kv ...string) http.Header {
		return drafttest.Header(append([]string{draftVersionField, "6"}, kv...)...)
	}

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
		a := draftClient.Send(t, http.MethodPut, slot.PutURL, tc.h, bytes.NewReader(data[:tc.n]), int64(tc.n), nil)
		if a.Status != tc.want || len(a.Infos) != 0 {
			t.Errorf("%s: %d %q, informational %+v; want %d and none", tc.name, a.Status, a.Body, a.Infos, tc.want)
		}
	}

	// Larger than the gateway's maximum: 413 with Upload-Limit.
	big := tg.sign(auth.ProtoJWT, "big.bin", 2<<20, nil)
	a := draftClient.Send(t, http.MethodPut, big.PutURL, v6("Upload-Complete", "?1", "Authorization", big.Authorization), bytes.NewReader(make([]byte, 2<<20)), 2<<20, nil)
	if a.Status != http.StatusRequestEntityTooLarge || a.Header.Get("Upload-Limit") != "max-size=1048576" || len(a.Infos) != 0 {
		t.Errorf("PUT over --max-size: %d, Upload-Limit %q, informational %+v; want 413, max-size=1048576, none", a.Status, a.Header.Get("Upload-Limit"), a.Infos)
	}

	// OPTIONS on the slot URL states the slot's size: from the JWT, or from
	// the slot's upload once it exists; else the gateway's maximum.
	jwtSlot := tg.sign(auth.ProtoJWT, "o.bin", 4242, nil)
	if a := draftClient.Send(t, http.MethodOptions, jwtSlot.PutURL, v6("Authorization", jwtSlot.Authorization), nil, 0, nil); a.Header.Get("Upload-Limit") != "max-size=4242" {
		t.Errorf("OPTIONS on a JWT slot: %d, Upload-Limit %q; want max-size=4242", a.Status, a.Header.Get("Upload-Limit"))
	}
	if a := draftClient.Send(t, http.MethodOptions, slot.PutURL, v6(), nil, 0, nil); a.Header.Get("Upload-Limit") != "max-size=1048576" {
		t.Errorf("OPTIONS on a new v2 slot: %d, Upload-Limit %q; want max-size=1048576", a.Status, a.Header.Get("Upload-Limit"))
	}
	put := draftClient.Send(t, http.MethodPut, slot.PutURL, v6("Upload-Complete", "?0", "Upload-Length", "5000"), bytes.NewReader(data[:100]), 100, nil)
	if put.Status != http.StatusCreated {
		t.Fatalf("incomplete creation: %d %q", put.Status, put.Body)
	}
	if a := draftClient.Send(t, http.MethodOptions, slot.PutURL, v6(), nil, 0, nil); a.Header.Get("Upload-Limit") != "max-size=5000" {
		t.Errorf("OPTIONS on a v2 slot with an upload: %d, Upload-Limit %q; want max-size=5000", a.Status, a.Header.Get("Upload-Limit"))
	}
	forged := strings.Replace(slot.PutURL, "v2=", "v2=00", 1)
	if a := draftClient.Send(t, http.MethodOptions, forged, v6(), nil, 0, nil); a.Header.Get("Upload-Limit") != "max-size=1048576" {
		t.Errorf("OPTIONS with a forged signature: Upload-Limit %q; want the gateway's maximum only", a.Header.Get("Upload-Limit"))
	}

	// Offset retrieval and cancellation carry no offset, completeness or length.
	loc := put.Header.Get("Location")
	for _, tc := range []struct {
		method string
		h      http.Header
	}{
		{http.MethodHead, v6("Upload-Offset", "0")},
		{http.MethodHead, v6("Upload-Complete", "?0")},
		{http.MethodHead, v6("Upload-Length", "5000")},
		{http.MethodDelete, v6("Upload-Offset", "0")},
		{http.MethodDelete, drafttest.Header(draftVersionField, "3", "Upload-Incomplete", "?1")},
	} {
		if a := draftClient.Send(t, tc.method, loc, tc.h, nil, 0, nil); a.Status != http.StatusBadRequest {
			t.Errorf("%s with %v: %d; want 400", tc.method, tc.h, a.Status)
		}
	}
	// Too much for the recorded length: 400 (drafts -02 to -05), offset kept.
	ph := v6("Upload-Offset", "100", "Upload-Complete", "?1", "Content-Type", "application/partial-upload")
	if a := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(make([]byte, 5000)), 5000, nil); a.Status != http.StatusBadRequest || a.Header.Get("Upload-Offset") != "100" {
		t.Errorf("PATCH past the length: %d, Upload-Offset %q; want 400, 100", a.Status, a.Header.Get("Upload-Offset"))
	}
	// Cancellation.
	if a := draftClient.Send(t, http.MethodDelete, loc, v6(), nil, 0, nil); a.Status != http.StatusNoContent {
		t.Errorf("DELETE: %d; want 204", a.Status)
	}
	if a := draftClient.Send(t, http.MethodHead, loc, v6(), nil, 0, nil); a.Status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d; want 404", a.Status)
	}
}

// TestIETFDraftTusDoor: tus-js-client's draft mode ("ietf-draft-05", interop
// 6) creates at the slot URL by POST with Upload-Length and Upload-Metadata
// and no content, then appends.
func TestIETFDraftTusDoor(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 64<<10)
	slot := tg.sign(auth.ProtoV2, "t.webp", int64(len(data)), strp("image/webp"))
	h := drafttest.Header(draftVersionField, "6", "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", handler.SerializeMetadataHeader(map[string]string{"filename": "t.webp", "filetype": "image/webp"}))
	a := draftClient.Send(t, http.MethodPost, slot.PutURL, h, nil, 0, nil)
	if a.Status != http.StatusCreated || a.Header.Get("Upload-Complete") != "?0" || a.Header.Get("Upload-Offset") != "0" {
		t.Fatalf("POST: %d %q, Upload-Complete %q, Upload-Offset %q; want 201, ?0, 0", a.Status, a.Body, a.Header.Get("Upload-Complete"), a.Header.Get("Upload-Offset"))
	}
	loc := a.Header.Get("Location")
	if len(a.Infos) != 1 || a.Infos[0].Header.Get("Location") != loc || a.Infos[0].Header.Get("Upload-Limit") != "max-size="+strconv.Itoa(len(data)) {
		t.Errorf("POST informational %+v; want one 104 with Location %s and the slot's size", a.Infos, loc)
	}
	ph := drafttest.Header(draftVersionField, "6", "Upload-Offset", "0", "Upload-Complete", "?1", "Content-Type", "application/partial-upload")
	if p := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data), int64(len(data)), nil); p.Status != http.StatusCreated || p.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("PATCH: %d %q; want 201 with Upload-Offset %d", p.Status, p.Body, len(data))
	}
	res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, res, http.StatusOK)
	if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "image/webp" {
		t.Fatalf("GET: %d bytes, Content-Type %q; want the file as image/webp", len(body), res.Header.Get("Content-Type"))
	}
	// The signed type comes from the metadata, not from what tusd would take
	// (Content-Type): a creation that claims another type is refused.
	other := tg.sign(auth.ProtoV2, "u.webp", 10, strp("image/webp"))
	h2 := drafttest.Header(draftVersionField, "6", "Upload-Complete", "?1", "Content-Type", "text/html",
		"Upload-Metadata", handler.SerializeMetadataHeader(map[string]string{"filetype": "text/html"}))
	if a := draftClient.Send(t, http.MethodPost, other.PutURL, h2, strings.NewReader("<b>html</b"), 10, nil); a.Status != http.StatusForbidden || len(a.Infos) != 0 {
		t.Errorf("POST claiming another type: %d, informational %+v; want 403 and none", a.Status, a.Infos)
	}
	// A one-request creation states its length by Content-Length alone.
	h3 := drafttest.Header(draftVersionField, "6", "Upload-Complete", "?1", "Upload-Metadata", handler.SerializeMetadataHeader(map[string]string{"filetype": "image/webp"}))
	if a := draftClient.Send(t, http.MethodPost, other.PutURL, h3, strings.NewReader("0123456789"), 10, nil); a.Status != http.StatusCreated || a.Header.Get("Upload-Complete") != "?1" {
		t.Errorf("POST with the whole file: %d %q, Upload-Complete %q; want 201, ?1", a.Status, a.Body, a.Header.Get("Upload-Complete"))
	}
	if res, body := tg.do(http.MethodGet, other.GetURL, nil, nil); res.StatusCode != http.StatusOK || body != "0123456789" || res.Header.Get("Content-Type") != "image/webp" {
		t.Errorf("GET: %d %q %q", res.StatusCode, body, res.Header.Get("Content-Type"))
	}
	// Concatenation is tus 1.0 only.
	h4 := drafttest.Header(draftVersionField, "6", "Upload-Complete", "?0", "Upload-Length", "10", "Upload-Concat", "partial")
	if a := draftClient.Send(t, http.MethodPost, other.PutURL, h4, nil, 0, nil); a.Status != http.StatusBadRequest {
		t.Errorf("draft POST with Upload-Concat: %d; want 400", a.Status)
	}
}

// TestIETFDraftStatuses: a draft client resumes after a 5xx but gives
// up after a 4xx, so tus's 423 ("retry") reaches it as 503; an upload whose
// session ended is 404, the draft's word for it.
func TestIETFDraftStatuses(t *testing.T) {
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
		r := httptest.NewRequest(http.MethodHead, "/files/x", nil)
		d := &draftReq{g: tg.gw, r: r, v: 6, kind: tc.kind, size: -1}
		h := http.Header{}
		if got, _ := d.finish(h, tc.code); got != tc.want {
			t.Errorf("kind %d: %d became %d; want %d", tc.kind, tc.code, got, tc.want)
		}
		if tc.want == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
			t.Errorf("kind %d: 503 without Retry-After", tc.kind)
		}
	}
}

package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/internal/drafttest"
)

// Interop versions 7 and 8, written from the draft's text (-08 for 7, -11 for
// 8): the sequence URLSession on iOS 26.2 sends (PUT with Upload-Complete: ?1
// and Upload-Length), cut off mid-body; HEAD; PATCH from the offset.

// draft7Problem decodes the problem details of an answer.
func draft7Problem(t *testing.T, a drafttest.Answer) map[string]any {
	t.Helper()
	if ct := a.Header.Get("Content-Type"); ct != problemJSON {
		t.Fatalf("answer %d Content-Type %q; want %s (body %q)", a.Status, ct, problemJSON, a.Body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(a.Body), &p); err != nil {
		t.Fatalf("problem details %q: %v", a.Body, err)
	}
	return p
}

func TestIETFDraft7PutResume(t *testing.T) {
	tg := newTestGateway(t)
	const size = 2<<20 + 4321
	const part = 700<<10 + 17
	for _, tc := range []struct {
		v     int
		proto auth.Protocol
	}{{7, auth.ProtoV2}, {8, auth.ProtoV2}, {8, auth.ProtoJWT}} {
		t.Run("interop"+strconv.Itoa(tc.v)+"-"+string(tc.proto), func(t *testing.T) {
			vs := strconv.Itoa(tc.v)
			data := randomBytes(t, size)
			slot := tg.sign(tc.proto, "clip7-"+vs+string(tc.proto)+".mov", size, strp("video/quicktime"))
			h := drafttest.Header("Content-Type", "video/quicktime", draftVersionField, vs, "Upload-Complete", "?1", "Upload-Length", strconv.Itoa(size))
			if slot.Authorization != "" {
				h.Set("Authorization", slot.Authorization)
			}
			put := draftClient.SendCut(t, http.MethodPut, slot.PutURL, h, data, part)
			info := put.Await104(t, 10*time.Second)
			loc := info.Header.Get("Location")
			if !strings.HasPrefix(loc, tg.srv.URL+"/files/") || info.Header.Get(draftVersionField) != vs {
				t.Fatalf("104: Location %q, version %q", loc, info.Header.Get(draftVersionField))
			}
			if l := info.Header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(size)+", max-age=") {
				t.Errorf("104 Upload-Limit %q; want max-size=%d, max-age=…", l, size)
			}
			draftClient.WaitOffset(t, slot.PutURL, slot.Authorization, part, 10*time.Second)
			if a := put.Cut(); a.Err == nil {
				t.Fatalf("the cut-off PUT got an answer: %d", a.Status)
			}

			vh := drafttest.Header(draftVersionField, vs)
			head := draftClient.Send(t, http.MethodHead, loc, vh, nil, 0, nil)
			if head.Status != http.StatusNoContent || head.Header.Get("Upload-Offset") != strconv.Itoa(part) ||
				head.Header.Get("Upload-Complete") != "?0" || head.Header.Get("Upload-Length") != strconv.Itoa(size) ||
				head.Header.Get("Cache-Control") != "no-store" || head.Header.Get("Tus-Resumable") != "" {
				t.Fatalf("HEAD: %d %v", head.Status, head.Header)
			}
			if l := head.Header.Get("Upload-Limit"); !strings.HasPrefix(l, "max-size="+strconv.Itoa(size)+", max-age=") {
				t.Errorf("HEAD Upload-Limit %q", l)
			}

			// A wrong offset: 409, the right offset, the problem type.
			ph := drafttest.Header(draftVersionField, vs, "Upload-Offset", strconv.Itoa(part+1), "Upload-Complete", "?1", "Content-Type", partialUpload)
			bad := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part+1:]), int64(size-part-1), nil)
			if bad.Status != http.StatusConflict || bad.Header.Get("Upload-Offset") != strconv.Itoa(part) || bad.Header.Get("Upload-Complete") != "?0" {
				t.Fatalf("PATCH at a wrong offset: %d %v %q", bad.Status, bad.Header, bad.Body)
			}
			p := draft7Problem(t, bad)
			if p["type"] != problemMismatchedOffset || p["expected-offset"] != float64(part) || p["provided-offset"] != float64(part+1) {
				t.Errorf("409 problem %v", p)
			}
			// A length that does not add up: 400 inconsistent-upload-length.
			ph.Set("Upload-Offset", strconv.Itoa(part))
			short := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:size-1]), int64(size-part-1), nil)
			if short.Status != http.StatusBadRequest || draft7Problem(t, short)["type"] != problemInconsistent || short.Header.Get("Upload-Complete") != "?0" {
				t.Fatalf("PATCH of a wrong length: %d %v %q", short.Status, short.Header, short.Body)
			}
			ph.Set("Upload-Length", strconv.Itoa(size+1))
			ul := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if ul.Status != http.StatusBadRequest || draft7Problem(t, ul)["type"] != problemInconsistent {
				t.Fatalf("PATCH with another Upload-Length: %d %q", ul.Status, ul.Body)
			}
			ph.Del("Upload-Length")
			// Without application/partial-upload: 415.
			ph.Set("Content-Type", "application/offset+octet-stream")
			wrongType := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if wrongType.Status != http.StatusUnsupportedMediaType || wrongType.Header.Get("Accept-Patch") != partialUpload {
				t.Fatalf("PATCH without %s: %d %v", partialUpload, wrongType.Status, wrongType.Header)
			}
			ph.Set("Content-Type", partialUpload)

			// The rest, in two appends.
			mid := part + 300<<10
			ph.Set("Upload-Complete", "?0")
			a1 := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:mid]), int64(mid-part), nil)
			if a1.Status != http.StatusNoContent || a1.Header.Get("Upload-Offset") != strconv.Itoa(mid) || a1.Header.Get("Upload-Complete") != "?0" {
				t.Fatalf("PATCH ?0: %d %v %q", a1.Status, a1.Header, a1.Body)
			}
			ph.Set("Upload-Offset", strconv.Itoa(mid))
			ph.Set("Upload-Complete", "?1")
			a2 := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[mid:]), int64(size-mid), nil)
			if a2.Status != http.StatusCreated || a2.Header.Get("Upload-Offset") != strconv.Itoa(size) || a2.Header.Get("Upload-Complete") != "?1" {
				t.Fatalf("PATCH ?1: %d %v %q", a2.Status, a2.Header, a2.Body)
			}
			res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, res, http.StatusOK)
			if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "video/quicktime" {
				t.Fatalf("GET: %d bytes, %q; not the file", len(body), res.Header.Get("Content-Type"))
			}

			// Complete: HEAD says so; an append is refused and changes nothing.
			head = draftClient.Send(t, http.MethodHead, loc, vh, nil, 0, nil)
			if head.Status != http.StatusNoContent || head.Header.Get("Upload-Complete") != "?1" || head.Header.Get("Upload-Offset") != strconv.Itoa(size) {
				t.Fatalf("HEAD after completion: %d %v", head.Status, head.Header)
			}
			ph.Set("Upload-Offset", strconv.Itoa(size))
			more := draftClient.Send(t, http.MethodPatch, loc, ph, strings.NewReader("x"), 1, nil)
			wantType := problemCompleted
			if tc.v >= 8 {
				wantType = problemInconsistent
			}
			if more.Status != http.StatusBadRequest || draft7Problem(t, more)["type"] != wantType {
				t.Fatalf("PATCH of a complete upload: %d %q; want 400 %s", more.Status, more.Body, wantType)
			}
			empty := draftClient.Send(t, http.MethodPatch, loc, ph, nil, 0, nil)
			if empty.Status != http.StatusBadRequest || draft7Problem(t, empty)["type"] != problemCompleted {
				t.Fatalf("empty PATCH of a complete upload: %d %q", empty.Status, empty.Body)
			}
			if res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); sha(body) != sha(string(data)) {
				t.Fatalf("GET after the refused appends: %d, not the file", res.StatusCode)
			}
			// A complete file is removed by retention only.
			del := draftClient.Send(t, http.MethodDelete, loc, vh, nil, 0, nil)
			if del.Status != http.StatusForbidden {
				t.Fatalf("DELETE of a complete upload: %d; want 403", del.Status)
			}
		})
	}
}

// TestIETFDraft7InOneGo: an uninterrupted version 8 PUT gets its 104 and 201
// with Location, Upload-Complete: ?1 and Upload-Limit; a length mismatch at
// creation is a 400 with the problem type; no 1xx for a refused slot.
func TestIETFDraft7InOneGo(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 300<<10)
	slot := tg.sign(auth.ProtoV2, "photo8.jpg", int64(len(data)), strp("image/jpeg"))
	h := drafttest.Header("Content-Type", "image/jpeg", draftVersionField, "8", "Upload-Complete", "?1", "Upload-Length", strconv.Itoa(len(data)))
	a := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data), int64(len(data)), nil)
	if a.Err != nil || a.Status != http.StatusCreated || len(a.Infos) != 1 || a.Infos[0].Code != statusResumptionSupported {
		t.Fatalf("PUT: %v %d, informational %+v", a.Err, a.Status, a.Infos)
	}
	if a.Header.Get("Location") != a.Infos[0].Header.Get("Location") || a.Header.Get("Upload-Complete") != "?1" ||
		a.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) || !strings.Contains(a.Header.Get("Upload-Limit"), "max-age=") {
		t.Fatalf("201: %v", a.Header)
	}
	// The same bytes again: the idempotent 201.
	again := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data), int64(len(data)), nil)
	if again.Status != http.StatusCreated {
		t.Fatalf("repeated PUT: %d %q", again.Status, again.Body)
	}

	other := tg.sign(auth.ProtoV2, "other8.jpg", int64(len(data)), strp("image/jpeg"))
	h.Set("Upload-Length", strconv.Itoa(len(data)+1))
	bad := draftClient.Send(t, http.MethodPut, other.PutURL, h, bytes.NewReader(data), int64(len(data)), nil)
	if bad.Status != http.StatusBadRequest || len(bad.Infos) != 0 || draft7Problem(t, bad)["type"] != problemInconsistent {
		t.Fatalf("PUT with Upload-Length other than Content-Length: %d, %+v, %q", bad.Status, bad.Infos, bad.Body)
	}
	h.Set("Upload-Length", strconv.Itoa(len(data)))
	forged := draftClient.Send(t, http.MethodPut, strings.Replace(other.PutURL, "v2=", "v2=0", 1), h, bytes.NewReader(data), int64(len(data)), nil)
	if forged.Status != http.StatusForbidden || len(forged.Infos) != 0 {
		t.Fatalf("forged slot: %d, %+v; want 403 and no 1xx", forged.Status, forged.Infos)
	}
}

// TestIETFDraft7IncompleteCreation: a creation with Upload-Complete: ?0 and
// Upload-Length carries the first part; 201 with Location and Upload-Limit;
// DELETE cancels, after which the upload URL is 404.
func TestIETFDraft7IncompleteCreation(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 100<<10)
	slot := tg.sign(auth.ProtoV2, "part7.bin", int64(len(data)), nil)
	h := drafttest.Header(draftVersionField, "7", "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)))
	a := draftClient.Send(t, http.MethodPut, slot.PutURL, h, bytes.NewReader(data[:40<<10]), 40<<10, nil)
	loc := a.Header.Get("Location")
	if a.Status != http.StatusCreated || loc == "" || a.Header.Get("Upload-Complete") != "?0" || a.Header.Get("Upload-Offset") != strconv.Itoa(40<<10) ||
		!strings.HasPrefix(a.Header.Get("Upload-Limit"), "max-size="+strconv.Itoa(len(data))) {
		t.Fatalf("incomplete creation: %d %v %q", a.Status, a.Header, a.Body)
	}
	vh := drafttest.Header(draftVersionField, "7")
	if o := draftClient.Send(t, http.MethodOptions, loc, vh, nil, 0, nil); o.Status != http.StatusOK || o.Header.Get("Accept-Patch") != partialUpload {
		t.Fatalf("OPTIONS at the upload URL: %d %v", o.Status, o.Header)
	}
	del := draftClient.Send(t, http.MethodDelete, loc, vh, nil, 0, nil)
	if del.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %q", del.Status, del.Body)
	}
	if head := draftClient.Send(t, http.MethodHead, loc, vh, nil, 0, nil); head.Status != http.StatusNotFound {
		t.Fatalf("HEAD after DELETE: %d; want 404", head.Status)
	}
}

// TestIETFDraft7Options: OPTIONS at a slot URL states the slot's limit.
func TestIETFDraft7Options(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoJWT, "opt8.bin", 12345, nil)
	for _, v := range []string{"7", "8"} {
		a := draftClient.Send(t, http.MethodOptions, slot.PutURL, drafttest.Header(draftVersionField, v, "Authorization", slot.Authorization), nil, 0, nil)
		if a.Status != http.StatusOK || a.Header.Get("Upload-Limit") != "max-size=12345" || a.Header.Get(draftVersionField) != v {
			t.Fatalf("OPTIONS v%s: %d %v", v, a.Status, a.Header)
		}
	}
}

// TestIETFDraft7TusDoor: a version 8 creation by POST at the slot URL, with
// the tus door's metadata, carrying the first part.
func TestIETFDraft7TusDoor(t *testing.T) {
	tg := newTestGateway(t)
	data := randomBytes(t, 64<<10)
	slot := tg.sign(auth.ProtoV2, "post8.webm", int64(len(data)), strp("video/webm"))
	h := drafttest.Header(draftVersionField, "8", "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", "filetype dmlkZW8vd2VibQ==")
	a := draftClient.Send(t, http.MethodPost, slot.PutURL, h, bytes.NewReader(data[:10<<10]), 10<<10, nil)
	loc := a.Header.Get("Location")
	if a.Status != http.StatusCreated || loc == "" || a.Header.Get("Upload-Offset") != strconv.Itoa(10<<10) || a.Header.Get("Upload-Complete") != "?0" {
		t.Fatalf("POST: %d %v %q", a.Status, a.Header, a.Body)
	}
	if len(a.Infos) != 1 || a.Infos[0].Header.Get("Location") != loc {
		t.Fatalf("POST informational %+v", a.Infos)
	}
	ph := drafttest.Header(draftVersionField, "8", "Upload-Offset", strconv.Itoa(10<<10), "Upload-Complete", "?1", "Content-Type", partialUpload)
	p := draftClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[10<<10:]), int64(len(data)-10<<10), nil)
	if p.Status != http.StatusCreated || p.Header.Get("Upload-Complete") != "?1" {
		t.Fatalf("PATCH: %d %v %q", p.Status, p.Header, p.Body)
	}
	res, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	if sha(body) != sha(string(data)) || res.Header.Get("Content-Type") != "video/webm" {
		t.Fatalf("GET: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

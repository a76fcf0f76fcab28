package e2e

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

// Conformance of the PUT door to the IETF resumable-upload draft, one interop
// version at a time, against the real binary: the creation URLSession sends
// (for version 8, as on iOS 26.2: Upload-Complete: ?1 and Upload-Length) cut
// off mid-body, offset retrieval, append, the version's refusals, cancellation
// and OPTIONS; then the same flow after the slot's expiry from another address,
// and across two instances sharing S3 and Redis.

// draftProblemTypes is the IANA registry the draft's problem types live in.
const draftProblemTypes = "https://iana.org/assignments/http-problem-types#"

// draftFlow is the header of one interop version's requests.
type draftFlow struct{ v int }

func (f draftFlow) vs() string { return strconv.Itoa(f.v) }

// creation is the header of a creation by PUT whose content is the whole file
// (complete) or its first part of a size-byte file.
func (f draftFlow) creation(ctype string, size int64, complete bool) http.Header {
	field, val := drafttest.CompleteField(f.v, complete)
	h := drafttest.Header("Upload-Draft-Interop-Version", f.vs(), field, val)
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	if f.v >= 6 || !complete {
		h.Set("Upload-Length", strconv.FormatInt(size, 10))
	}
	return h
}

// appendHeader is the header of an append at offset.
func (f draftFlow) appendHeader(offset int64, complete bool) http.Header {
	field, val := drafttest.CompleteField(f.v, complete)
	h := drafttest.Header("Upload-Draft-Interop-Version", f.vs(), "Upload-Offset", strconv.FormatInt(offset, 10), field, val)
	if f.v >= 6 {
		h.Set("Content-Type", "application/partial-upload")
	}
	return h
}

// checkState checks an offset retrieval answer.
func (f draftFlow) checkState(t *testing.T, what string, a drafttest.Answer, offset, size int64) {
	t.Helper()
	field, val := drafttest.CompleteField(f.v, offset == size)
	if a.Err != nil || a.Status != http.StatusNoContent || a.Header.Get("Upload-Offset") != strconv.FormatInt(offset, 10) || a.Header.Get(field) != val {
		t.Fatalf("%s: %v %d, Upload-Offset %q, %s %q; want 204, %d, %s", what, a.Err, a.Status, a.Header.Get("Upload-Offset"), field, a.Header.Get(field), offset, val)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s: Cache-Control %q; want no-store", what, a.Header.Get("Cache-Control"))
	}
	if f.v >= 6 && a.Header.Get("Upload-Length") != strconv.FormatInt(size, 10) {
		t.Errorf("%s: Upload-Length %q; want %d", what, a.Header.Get("Upload-Length"), size)
	}
	if f.v >= 7 && !strings.HasPrefix(a.Header.Get("Upload-Limit"), "max-size="+strconv.FormatInt(size, 10)+", max-age=") {
		t.Errorf("%s: Upload-Limit %q; want max-size=%d, max-age=…", what, a.Header.Get("Upload-Limit"), size)
	}
}

// checkProblem checks that a version 7 or 8 refusal carries the problem type.
func (f draftFlow) checkProblem(t *testing.T, what string, a drafttest.Answer, typ string) map[string]any {
	t.Helper()
	if f.v < 7 {
		return nil
	}
	var p map[string]any
	if a.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(a.Body), &p) != nil || p["type"] != draftProblemTypes+typ {
		t.Fatalf("%s: Content-Type %q, body %q; want problem details of type %s", what, a.Header.Get("Content-Type"), a.Body, typ)
	}
	return p
}

// cutCreation sends the creation of data by PUT, cut off after part bytes;
// it returns the upload URL of the 104. The cut comes once the slot's upload
// holds part bytes (disk); with afterCut, the cut comes at once and afterCut
// waits for the stored offset (S3 stores the bytes when the request ends).
func (f draftFlow) cutCreation(t *testing.T, sl slot, ctype string, data []byte, part int, afterCut ...func()) string {
	t.Helper()
	h := f.creation(ctype, int64(len(data)), true)
	if sl.Authorization != "" {
		h.Set("Authorization", sl.Authorization)
	}
	put := ietfClient.SendCut(t, http.MethodPut, sl.PutURL, h, data, part)
	info := put.Await104(t, 20*time.Second)
	loc := info.Header.Get("Location")
	if !strings.Contains(loc, "/files/") || info.Header.Get("Upload-Draft-Interop-Version") != f.vs() {
		t.Fatalf("104: Location %q, Upload-Draft-Interop-Version %q; want an upload URL, %d", loc, info.Header.Get("Upload-Draft-Interop-Version"), f.v)
	}
	if f.v >= 6 && !strings.HasPrefix(info.Header.Get("Upload-Limit"), "max-size="+strconv.Itoa(len(data))) {
		t.Errorf("104: Upload-Limit %q; want max-size=%d", info.Header.Get("Upload-Limit"), len(data))
	}
	if len(afterCut) == 0 {
		ietfClient.WaitOffset(t, sl.PutURL, sl.Authorization, int64(part), 20*time.Second)
	} else {
		time.Sleep(time.Second)
	}
	if a := put.Cut(); a.Err == nil {
		t.Fatalf("the cut-off PUT was answered: %d %q", a.Status, a.Body)
	}
	for _, f := range afterCut {
		f()
	}
	return loc
}

// resume asks loc for the offset (expecting part) and appends the rest.
func (f draftFlow) resume(t *testing.T, loc string, data []byte, part int) {
	t.Helper()
	size := int64(len(data))
	head := ietfClient.Send(t, http.MethodHead, loc, drafttest.Header("Upload-Draft-Interop-Version", f.vs()), nil, 0, nil)
	f.checkState(t, "HEAD after the cut", head, int64(part), size)
	patch := ietfClient.Send(t, http.MethodPatch, loc, f.appendHeader(int64(part), true), bytes.NewReader(data[part:]), size-int64(part), nil)
	field, yes := drafttest.CompleteField(f.v, true)
	if patch.Err != nil || patch.Status != http.StatusCreated || patch.Header.Get("Upload-Offset") != strconv.FormatInt(size, 10) || patch.Header.Get(field) != yes {
		t.Fatalf("PATCH of the rest: %v %d %q, Upload-Offset %q, %s %q; want 201, %d, %s",
			patch.Err, patch.Status, patch.Body, patch.Header.Get("Upload-Offset"), field, patch.Header.Get(field), size, yes)
	}
}

func TestIETFDraftConformance(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 6*MiB + 789
	const part = 2*MiB + 123
	for _, v := range []int{3, 5, 6, 7, 8} {
		f := draftFlow{v}
		t.Run("interop"+f.vs(), func(t *testing.T) {
			t.Parallel()
			data, sum := sessRandomBytes(t, size)
			sl := s.sign(t, "v2", "conf-"+f.vs()+".mov", size, "video/quicktime")
			loc := f.cutCreation(t, sl, "video/quicktime", data, part)

			// A wrong offset: 409 with the right one (and, from version 7,
			// the problem type with both offsets).
			wrong := ietfClient.Send(t, http.MethodPatch, loc, f.appendHeader(part+1, true), bytes.NewReader(data[part+1:]), size-part-1, nil)
			if wrong.Status != http.StatusConflict || wrong.Header.Get("Upload-Offset") != strconv.Itoa(part) {
				t.Fatalf("PATCH at a wrong offset: %d %q, Upload-Offset %q; want 409, %d", wrong.Status, wrong.Body, wrong.Header.Get("Upload-Offset"), part)
			}
			if p := f.checkProblem(t, "PATCH at a wrong offset", wrong, "mismatching-upload-offset"); p != nil &&
				(p["expected-offset"] != float64(part) || p["provided-offset"] != float64(part+1)) {
				t.Errorf("409 problem %v; want expected-offset %d, provided-offset %d", p, part, part+1)
			}
			if f.v >= 7 {
				// An append whose Upload-Length is not the upload's.
				h := f.appendHeader(part, true)
				h.Set("Upload-Length", strconv.Itoa(size+1))
				a := ietfClient.Send(t, http.MethodPatch, loc, h, bytes.NewReader(data[part:]), size-part, nil)
				if a.Status != http.StatusBadRequest || a.Header.Get("Upload-Complete") != "?0" {
					t.Fatalf("PATCH with another Upload-Length: %d %q; want 400, Upload-Complete: ?0", a.Status, a.Body)
				}
				f.checkProblem(t, "PATCH with another Upload-Length", a, "inconsistent-upload-length")
			}
			f.resume(t, loc, data, part)
			if resp, got, n := download(t, sl.GetURL); resp.StatusCode != http.StatusOK || got != sum || n != size {
				t.Fatalf("GET %s: %d, %d bytes, SHA-256 %s; want 200, %d, %s", sl.GetURL, resp.StatusCode, n, got, size, sum)
			}
			head := ietfClient.Send(t, http.MethodHead, loc, drafttest.Header("Upload-Draft-Interop-Version", f.vs()), nil, 0, nil)
			f.checkState(t, "HEAD after completion", head, size, size)

			// A creation whose lengths differ: 400 (from 7 with the type).
			other := s.sign(t, "v2", "conf-len-"+f.vs()+".bin", 1000, "")
			h := f.creation("", 1000, true)
			h.Set("Upload-Length", "1001")
			bad := ietfClient.Send(t, http.MethodPut, other.PutURL, h, bytes.NewReader(make([]byte, 1000)), 1000, nil)
			if bad.Status != http.StatusBadRequest || len(bad.Infos) != 0 {
				t.Fatalf("PUT with Upload-Length other than Content-Length: %d, informational %+v; want 400, none", bad.Status, bad.Infos)
			}
			f.checkProblem(t, "PUT with inconsistent lengths", bad, "inconsistent-upload-length")

			// Cancellation of an incomplete upload created with its first part.
			cl := s.sign(t, "v2", "conf-del-"+f.vs()+".bin", 100000, "")
			created := ietfClient.Send(t, http.MethodPut, cl.PutURL, f.creation("", 100000, false), bytes.NewReader(make([]byte, 30000)), 30000, nil)
			no, noVal := drafttest.CompleteField(f.v, false)
			dloc := created.Header.Get("Location")
			if created.Status != http.StatusCreated || dloc == "" || created.Header.Get(no) != noVal {
				t.Fatalf("incomplete creation: %d %q, Location %q, %s %q", created.Status, created.Body, dloc, no, created.Header.Get(no))
			}
			del := ietfClient.Send(t, http.MethodDelete, dloc, drafttest.Header("Upload-Draft-Interop-Version", f.vs()), nil, 0, nil)
			if del.Status != http.StatusNoContent {
				t.Fatalf("DELETE: %d %q; want 204", del.Status, del.Body)
			}
			if gone := ietfClient.Send(t, http.MethodHead, dloc, drafttest.Header("Upload-Draft-Interop-Version", f.vs()), nil, 0, nil); gone.Status != http.StatusNotFound {
				t.Fatalf("HEAD after DELETE: %d; want 404", gone.Status)
			}

			// OPTIONS on a slot URL states the limits.
			opt := ietfClient.Send(t, http.MethodOptions, sl.PutURL, drafttest.Header("Upload-Draft-Interop-Version", f.vs()), nil, 0, nil)
			if opt.Status != http.StatusOK || opt.Header.Get("Upload-Limit") != "max-size="+strconv.Itoa(size) {
				t.Fatalf("OPTIONS: %d, Upload-Limit %q; want 200, max-size=%d", opt.Status, opt.Header.Get("Upload-Limit"), size)
			}
		})
	}
}

// TestIETFDraftAfterSlotExpiry: the upload URL of a draft creation is
// authorised by the upload's session: after the slot expired, from another
// address, HEAD and PATCH complete the upload.
func TestIETFDraftAfterSlotExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 3*MiB + 5
	const part = MiB + 77
	for _, v := range []int{6, 7, 8} {
		f := draftFlow{v}
		t.Run("interop"+f.vs(), func(t *testing.T) {
			t.Parallel()
			ctype := "image/png"
			data, sum := sessRandomBytes(t, size)
			sl, expiredAt := sessExpiringSlot(t, s, auth.ProtoV3, "expiring-"+f.vs()+".png", size, &ctype, 4*time.Second)
			control, _ := sessExpiringSlot(t, s, auth.ProtoV3, "control-"+f.vs()+".png", size, &ctype, 4*time.Second)
			loc := f.cutCreation(t, sl, ctype, data, part)
			time.Sleep(time.Until(expiredAt))
			// The slot really is expired: a creation with a slot of the same
			// expiry is refused.
			if a := ietfClient.Send(t, http.MethodPut, control.PutURL, f.creation(ctype, size, true), bytes.NewReader(data), size, nil); a.Status != http.StatusForbidden || len(a.Infos) != 0 {
				t.Fatalf("creation with an expired slot: %d, informational %+v; want 403, none", a.Status, a.Infos)
			}
			c := sessClientFrom(t, "127.0.0.3")
			vh := http.Header{"Upload-Draft-Interop-Version": {f.vs()}}
			head := sessSend(t, c, http.MethodHead, loc, vh, nil)
			if head.Status != http.StatusNoContent || head.offset(t) != part {
				t.Fatalf("HEAD from another address after the slot expired: %s; want 204 at %d", head, part)
			}
			patch := sessSend(t, c, http.MethodPatch, loc, f.appendHeader(part, true), data[part:])
			if patch.Status != http.StatusCreated || patch.offset(t) != size {
				t.Fatalf("PATCH from another address after the slot expired: %s; want 201 at %d", patch, size)
			}
			sessCheckDownload(t, sl.GetURL, size, sum, ctype)
		})
	}
}

// TestIETFDraftScaleOut: the creation on one instance, cut off; offset
// retrieval and append on another (S3 and Redis shared); the file is served
// by both.
func TestIETFDraftScaleOut(t *testing.T) {
	c := newScaleCluster(t)
	a, b := c.start(t), c.start(t)
	const size = 12*MiB + 3
	const part = 5*MiB + 1
	for _, v := range []int{6, 8} {
		f := draftFlow{v}
		t.Run("interop"+f.vs(), func(t *testing.T) {
			data, sum := sessRandomBytes(t, size)
			sl := scaleSlot(t, a, "scale-"+f.vs()+".mp4", size, "video/mp4")
			loc := f.cutCreation(t, sl, "video/mp4", data, part, func() {
				scaleWaitOffset(t, scaleOn(t, sl.PutURL, b), false, part, part, 20*time.Second)
			})
			f.resume(t, scaleOn(t, loc, b), data, part)
			sessCheckDownload(t, sl.GetURL, size, sum, "video/mp4")
			sessCheckDownload(t, scaleOn(t, sl.GetURL, b), size, sum, "video/mp4")
		})
	}
}

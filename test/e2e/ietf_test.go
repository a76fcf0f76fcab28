package e2e

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/internal/drafttest"
)

// The IETF resumable-upload draft against the real binary: a client that
// reads the 104 (Upload Resumption Supported) of its PUT, as Apple's
// URLSession does, loses its connection mid-body and resumes at the upload URL
// the 104 named; tus-js-client's draft mode through the tus door.

// ietfClient sends draft requests, each on a connection of its own.
var ietfClient = drafttest.Client{Timeout: 60 * time.Second}

// TestIETFDraftPutResume: a PUT creation of interop version 3 (iOS 17's) and
// 6 is cut off mid-body; HEAD and PATCH at the upload URL from the 104
// complete it, and the slot's GET URL serves the file.
func TestIETFDraftPutResume(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 24 * MiB
	const part = 9*MiB + 4321
	for _, tc := range []struct {
		v        int
		protocol string
	}{{3, "v2"}, {6, "v2"}, {6, "jwt"}} {
		t.Run("interop"+strconv.Itoa(tc.v)+"-"+tc.protocol, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			data, sum := sessRandomBytes(t, size)
			sl := s.sign(t, tc.protocol, "movie-"+strconv.Itoa(tc.v)+".mov", size, "video/quicktime")
			field, yes := drafttest.CompleteField(tc.v, true)
			h := drafttest.Header("Content-Type", "video/quicktime", "Upload-Draft-Interop-Version", strconv.Itoa(tc.v), field, yes)
			if sl.Authorization != "" {
				h.Set("Authorization", sl.Authorization)
			}

			put := ietfClient.SendCut(t, http.MethodPut, sl.PutURL, h, data, part)
			info := put.Await104(t, 20*time.Second)
			loc := info.Header.Get("Location")
			if !strings.HasPrefix(loc, s.URL+"/files/") || info.Header.Get("Upload-Draft-Interop-Version") != strconv.Itoa(tc.v) {
				t.Fatalf("104: Location %q, Upload-Draft-Interop-Version %q; want an upload URL under %s/files/ and %d",
					loc, info.Header.Get("Upload-Draft-Interop-Version"), s.URL, tc.v)
			}
			if l := info.Header.Get("Upload-Limit"); l != "max-size="+strconv.Itoa(size) {
				t.Errorf("104: Upload-Limit %q; want max-size=%d", l, size)
			}
			ietfClient.WaitOffset(t, sl.PutURL, sl.Authorization, part, 20*time.Second)
			if a := put.Cut(); a.Err == nil {
				t.Fatalf("the cut-off PUT was answered: %d %q", a.Status, a.Body)
			}
			cutAt := time.Since(start)

			head := ietfClient.Send(t, http.MethodHead, loc, drafttest.Header("Upload-Draft-Interop-Version", strconv.Itoa(tc.v)), nil, 0, nil)
			no, noVal := drafttest.CompleteField(tc.v, false)
			if head.Err != nil || head.Status != http.StatusNoContent || head.Header.Get("Upload-Offset") != strconv.Itoa(part) || head.Header.Get(no) != noVal {
				t.Fatalf("HEAD %s: %v, %d, Upload-Offset %q, %s %q; want 204, %d, %s",
					loc, head.Err, head.Status, head.Header.Get("Upload-Offset"), no, head.Header.Get(no), part, noVal)
			}
			if head.Header.Get("Tus-Resumable") != "" {
				t.Errorf("HEAD: Tus-Resumable %q in a draft answer", head.Header.Get("Tus-Resumable"))
			}

			ph := drafttest.Header("Upload-Draft-Interop-Version", strconv.Itoa(tc.v), "Upload-Offset", strconv.Itoa(part), field, yes)
			if tc.v >= 6 {
				ph.Set("Content-Type", "application/partial-upload")
			}
			patch := ietfClient.Send(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if patch.Err != nil || patch.Status != http.StatusCreated || patch.Header.Get("Upload-Offset") != strconv.Itoa(size) || patch.Header.Get(field) != yes {
				t.Fatalf("PATCH %s: %v, %d %q, Upload-Offset %q, %s %q; want 201, %d, %s",
					loc, patch.Err, patch.Status, patch.Body, patch.Header.Get("Upload-Offset"), field, patch.Header.Get(field), size, yes)
			}
			t.Logf("interop %d, %d MiB: cut off after %v, resumed and complete after %v", tc.v, size/MiB, cutAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

			if got, n := s.storedSHA256(t, uploadID(t, loc)); got != sum || n != size {
				t.Errorf("stored upload: %d bytes, SHA-256 %s; want %d, %s", n, got, size, sum)
			}
			resp, got, n := download(t, sl.GetURL)
			if resp.StatusCode != http.StatusOK || got != sum || n != size || resp.Header.Get("Content-Type") != "video/quicktime" {
				t.Errorf("GET %s: %d, %d bytes, SHA-256 %s, %q; want 200, %d, %s, video/quicktime",
					sl.GetURL, resp.StatusCode, n, got, resp.Header.Get("Content-Type"), size, sum)
			}
		})
	}

	// A PUT without the draft's fields is the XEP-0363 upload it always was:
	// no 1xx, exactly 201.
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		data, sum := sessRandomBytes(t, 3*MiB)
		sl := s.sign(t, "v2", "plain.jpg", int64(len(data)), "image/jpeg")
		a := ietfClient.Send(t, http.MethodPut, sl.PutURL, drafttest.Header("Content-Type", "image/jpeg"), bytes.NewReader(data), int64(len(data)), nil)
		if a.Err != nil || a.Status != http.StatusCreated {
			t.Fatalf("plain PUT: %v %d %q; want 201", a.Err, a.Status, a.Body)
		}
		if len(a.Infos) != 0 {
			t.Fatalf("plain PUT got informational responses %+v; want none", a.Infos)
		}
		if resp, got, _ := download(t, sl.GetURL); resp.StatusCode != http.StatusOK || got != sum {
			t.Errorf("GET %s: %d, SHA-256 %s; want 200, %s", sl.GetURL, resp.StatusCode, got, sum)
		}
	})
}

// TestIETFDraftTusJSClient: tus-js-client 4.3.1 with protocol ietf-draft-05
// (interop 6), the slot URL as its endpoint: it creates by POST, appends by
// PATCH, and resumes a cut-off PATCH with HEAD and PATCH.
func TestIETFDraftTusJSClient(t *testing.T) {
	t.Parallel()
	requireNode(t)
	s := startServer(t)
	draftAnswers := func(t *testing.T, res tusResult) {
		t.Helper()
		// tus 1.0 answers a PATCH with 204, the draft with 201.
		if !slices.Contains(res.Statuses, "PATCH 201") {
			t.Errorf("responses %v; want draft answers (PATCH 201)", res.Statuses)
		}
	}

	t.Run("upload", func(t *testing.T) {
		t.Parallel()
		const size = 6*MiB + 99
		file, sum := randomFile(t, "draft.webm", size)
		sl := s.sign(t, "v2", "draft.webm", size, "video/webm")
		res := runTus(t, tusArgs(sl, file, "--protocol", "ietf-draft-05", "--filetype", "video/webm")...)
		checkComplete(t, s, res, sl, size, sum, "video/webm")
		draftAnswers(t, res)
	})

	t.Run("chunks", func(t *testing.T) {
		t.Parallel()
		const size = 5*MiB + 12345
		file, sum := randomFile(t, "chunks.bin", size)
		sl := s.sign(t, "jwt", "chunks.bin", size, "application/octet-stream")
		res := runTus(t, tusArgs(sl, file, "--protocol", "ietf-draft-05", "--chunk-size", strconv.Itoa(MiB),
			"--filetype", "application/octet-stream")...)
		checkComplete(t, s, res, sl, size, sum, "application/octet-stream")
		draftAnswers(t, res)
		if res.Requests["PATCH"] < 6 {
			t.Errorf("%d PATCH requests in 1 MiB chunks for %d bytes; want at least 6", res.Requests["PATCH"], size)
		}
	})

	t.Run("mid-request", func(t *testing.T) {
		t.Parallel()
		const size = 48 * MiB
		const interruptAfter = 16 * MiB
		start := time.Now()
		file, sum := randomFile(t, "draft-cut.bin", size)
		storage := t.TempDir() + "/tus-urls.json"
		sl := s.sign(t, "v2", "draft-cut.bin", size, "")
		common := []string{"--protocol", "ietf-draft-05", "--url-storage", storage}
		first := runTus(t, tusArgs(sl, file, append(common, "--mode", "interrupt", "--interrupt-on", "sent",
			"--interrupt-after", strconv.Itoa(interruptAfter))...)...)
		requireOK(t, "interrupted upload", first)
		if !first.Interrupted || first.Requests["PATCH"] != 1 {
			t.Fatalf("interrupted upload: interrupted=%v, requests %v; want one PATCH cut off", first.Interrupted, first.Requests)
		}
		offset := settledOffset(t, first.URL)
		if offset <= 0 || offset >= size {
			t.Fatalf("after cutting a PATCH that had sent %d bytes the upload's offset is %d; want 0 < offset < %d", first.BytesSent, offset, size)
		}
		second := runTus(t, tusArgs(sl, file, append(common, "--mode", "resume")...)...)
		requireOK(t, "resumed upload", second)
		checkResumed(t, first, second, offset)
		checkComplete(t, s, second, sl, size, sum, "")
		draftAnswers(t, second)
		if !slices.Contains(second.Statuses, "HEAD 204") {
			t.Errorf("resumed upload: responses %v; want the draft's HEAD 204", second.Statuses)
		}
		t.Logf("tus-js-client ietf-draft-05, %d MiB: cut at %d bytes, resumed, complete after %v", size/MiB, offset, time.Since(start).Round(time.Millisecond))
	})
}

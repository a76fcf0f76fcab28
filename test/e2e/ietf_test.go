package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The IETF resumable-upload draft against the real binary: a client that
// reads the 104 (Upload Resumption Supported) of its PUT, as Apple's
// URLSession does, loses its connection mid-body and resumes at the upload URL
// the 104 named; tus-js-client's draft mode through the tus door.

// ietfInfo is an informational response a client received.
type ietfInfo struct {
	code   int
	header http.Header
}

type ietfAnswer struct {
	status int
	header http.Header
	body   string
	infos  []ietfInfo
	err    error
}

// ietfSend sends one request on a connection of its own and records every
// 1xx (onInfo, when set, sees each as it arrives).
func ietfSend(t testing.TB, method, u string, h http.Header, body io.Reader, length int64, onInfo func(ietfInfo)) ietfAnswer {
	t.Helper()
	var mu sync.Mutex
	var a ietfAnswer
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		in := ietfInfo{code: code, header: http.Header(hdr).Clone()}
		mu.Lock()
		a.infos = append(a.infos, in)
		mu.Unlock()
		if onInfo != nil {
			onInfo(in)
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, u, body)
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
		a.err = err
		return a
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	a.status, a.header, a.body = res.StatusCode, res.Header, string(data)
	return a
}

func ietfHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// ietfComplete is the completeness field of interop version v and its value.
func ietfComplete(v int, complete bool) (string, string) {
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

var errIETFCut = errors.New("the client's network went away")

// ietfCutBody sends data[:part], then waits for cut and fails, as a body
// does whose connection broke.
type ietfCutBody struct {
	data []byte
	part int
	pos  int
	cut  <-chan struct{}
}

func (b *ietfCutBody) Read(p []byte) (int, error) {
	if b.pos < b.part {
		n := copy(p, b.data[b.pos:b.part])
		b.pos += n
		return n, nil
	}
	select {
	case <-b.cut:
	case <-time.After(30 * time.Second):
	}
	return 0, errIETFCut
}

// ietfStoredOffset polls HEAD on the signed slot URL (the resume fallback,
// which takes no lock) until the slot's upload holds want bytes.
func ietfStoredOffset(t testing.TB, sl slot, want int64) {
	t.Helper()
	h := http.Header{}
	if sl.Authorization != "" {
		h.Set("Authorization", sl.Authorization)
	}
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		a := ietfSend(t, http.MethodHead, sl.PutURL, h, nil, 0, nil)
		if a.err == nil {
			last = strconv.Itoa(a.status) + " Upload-Offset " + a.header.Get("Upload-Offset")
			if a.status == http.StatusOK && a.header.Get("Upload-Offset") == strconv.FormatInt(want, 10) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the slot's upload did not reach %d bytes within 20s: %s", want, last)
}

func ietfData(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

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
			data, sum := ietfData(t, size)
			sl := s.sign(t, tc.protocol, "movie-"+strconv.Itoa(tc.v)+".mov", size, "video/quicktime")
			field, yes := ietfComplete(tc.v, true)
			h := ietfHeader("Content-Type", "video/quicktime", "Upload-Draft-Interop-Version", strconv.Itoa(tc.v), field, yes)
			if sl.Authorization != "" {
				h.Set("Authorization", sl.Authorization)
			}

			cut := make(chan struct{})
			got104 := make(chan ietfInfo, 1)
			done := make(chan ietfAnswer, 1)
			go func() {
				done <- ietfSend(t, http.MethodPut, sl.PutURL, h, &ietfCutBody{data: data, part: part, cut: cut}, size, func(in ietfInfo) {
					if in.code == 104 {
						select {
						case got104 <- in:
						default:
						}
					}
				})
			}()
			var info ietfInfo
			select {
			case info = <-got104:
			case a := <-done:
				t.Fatalf("the PUT ended without a 104: status %d, error %v, %q", a.status, a.err, a.body)
			case <-time.After(20 * time.Second):
				t.Fatal("no 104 within 20s")
			}
			loc := info.header.Get("Location")
			if !strings.HasPrefix(loc, s.URL+"/files/") || info.header.Get("Upload-Draft-Interop-Version") != strconv.Itoa(tc.v) {
				t.Fatalf("104: Location %q, Upload-Draft-Interop-Version %q; want an upload URL under %s/files/ and %d",
					loc, info.header.Get("Upload-Draft-Interop-Version"), s.URL, tc.v)
			}
			if l := info.header.Get("Upload-Limit"); l != "max-size="+strconv.Itoa(size) {
				t.Errorf("104: Upload-Limit %q; want max-size=%d", l, size)
			}
			ietfStoredOffset(t, sl, part)
			close(cut)
			if a := <-done; a.err == nil {
				t.Fatalf("the cut-off PUT was answered: %d %q", a.status, a.body)
			}
			cutAt := time.Since(start)

			head := ietfSend(t, http.MethodHead, loc, ietfHeader("Upload-Draft-Interop-Version", strconv.Itoa(tc.v)), nil, 0, nil)
			no, noVal := ietfComplete(tc.v, false)
			if head.err != nil || head.status != http.StatusNoContent || head.header.Get("Upload-Offset") != strconv.Itoa(part) || head.header.Get(no) != noVal {
				t.Fatalf("HEAD %s: %v, %d, Upload-Offset %q, %s %q; want 204, %d, %s",
					loc, head.err, head.status, head.header.Get("Upload-Offset"), no, head.header.Get(no), part, noVal)
			}
			if head.header.Get("Tus-Resumable") != "" {
				t.Errorf("HEAD: Tus-Resumable %q in a draft answer", head.header.Get("Tus-Resumable"))
			}

			ph := ietfHeader("Upload-Draft-Interop-Version", strconv.Itoa(tc.v), "Upload-Offset", strconv.Itoa(part), field, yes)
			if tc.v >= 6 {
				ph.Set("Content-Type", "application/partial-upload")
			}
			patch := ietfSend(t, http.MethodPatch, loc, ph, bytes.NewReader(data[part:]), int64(size-part), nil)
			if patch.err != nil || patch.status != http.StatusCreated || patch.header.Get("Upload-Offset") != strconv.Itoa(size) || patch.header.Get(field) != yes {
				t.Fatalf("PATCH %s: %v, %d %q, Upload-Offset %q, %s %q; want 201, %d, %s",
					loc, patch.err, patch.status, patch.body, patch.header.Get("Upload-Offset"), field, patch.header.Get(field), size, yes)
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
		data, sum := ietfData(t, 3*MiB)
		sl := s.sign(t, "v2", "plain.jpg", int64(len(data)), "image/jpeg")
		a := ietfSend(t, http.MethodPut, sl.PutURL, ietfHeader("Content-Type", "image/jpeg"), bytes.NewReader(data), int64(len(data)), nil)
		if a.err != nil || a.status != http.StatusCreated {
			t.Fatalf("plain PUT: %v %d %q; want 201", a.err, a.status, a.body)
		}
		if len(a.infos) != 0 {
			t.Fatalf("plain PUT got informational responses %+v; want none", a.infos)
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

package e2e

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chunkSize is the tus-js-client chunkSize of most tests: many PATCHes per file.
const chunkSize = 1 * MiB

// tusArgs are the tus-upload.mjs arguments for uploading file to a slot.
func tusArgs(sl slot, file string, extra ...string) []string {
	args := []string{"--endpoint", sl.PutURL, "--file", file}
	if sl.Authorization != "" {
		args = append(args, "--header", "Authorization: "+sl.Authorization)
	}
	return append(args, extra...)
}

// requireOK fails the test unless the tus-upload.mjs run succeeded.
func requireOK(t *testing.T, what string, res tusResult) {
	t.Helper()
	if !res.OK {
		t.Fatalf("%s: tus-js-client failed: %s\nresponses: %v", what, res.Error, res.Statuses)
	}
}

// checkComplete verifies a finished upload of a file of size bytes with
// SHA-256 sum: what tus-js-client reports, what HEAD on the upload URL
// reports, the bytes in the disk store, and the download at the slot's GET
// URL (with the signed content type when ctype is not empty).
func checkComplete(t *testing.T, s *server, res tusResult, sl slot, size int64, sum, ctype string) {
	t.Helper()
	requireOK(t, "upload", res)
	if !strings.HasPrefix(res.URL, s.URL+"/files/") {
		t.Errorf("upload URL %q; want one under %s/files/", res.URL, s.URL)
	}
	if res.BytesUploaded != size {
		t.Errorf("tus-js-client: %d bytes acknowledged; want %d", res.BytesUploaded, size)
	}
	st := headUpload(t, res.URL)
	if st.Status/100 != 2 || st.Offset != size || st.Length != size {
		t.Errorf("HEAD %s: status %d, Upload-Offset %d, Upload-Length %d; want 2xx, %d, %d",
			res.URL, st.Status, st.Offset, st.Length, size, size)
	}
	got, n := s.storedSHA256(t, uploadID(t, res.URL))
	if got != sum || n != size {
		t.Errorf("stored upload: %d bytes, SHA-256 %s; want %d bytes, %s", n, got, size, sum)
	}
	resp, got, n := download(t, sl.GetURL)
	if resp.StatusCode != http.StatusOK || got != sum || n != size {
		t.Errorf("GET %s: status %d, %d bytes, SHA-256 %s; want 200, %d bytes, %s",
			sl.GetURL, resp.StatusCode, n, got, size, sum)
	}
	if ctype != "" {
		mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != ctype {
			t.Errorf("GET %s: Content-Type %q; want %q", sl.GetURL, resp.Header.Get("Content-Type"), ctype)
		}
	}
}

// TestTusUpload uploads files of several sizes with tus-js-client, each
// through its own freshly signed v2 slot.
func TestTusUpload(t *testing.T) {
	t.Parallel()
	requireNode(t)
	s := startServer(t)
	for _, tc := range []struct {
		name  string
		file  string
		size  int64
		ctype string
	}{
		{"empty", "empty.bin", 0, "application/octet-stream"},
		{"one-byte", "grüße 1.txt", 1, "text/plain"},
		{"5MiB", "five.png", 5 * MiB, "image/png"},
		{"64MiB", "video.mp4", 64 * MiB, "video/mp4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file, sum := randomFile(t, tc.file, tc.size)
			sl := s.sign(t, "v2", tc.file, tc.size, tc.ctype)
			res := runTus(t, tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize), "--filetype", tc.ctype)...)
			requireOK(t, "upload", res)
			if res.OffsetAtStart == nil || *res.OffsetAtStart != 0 {
				t.Errorf("a new upload started at offset %v; want 0", fmtOffset(res.OffsetAtStart))
			}
			if want := (tc.size + chunkSize - 1) / chunkSize; int64(res.Requests["PATCH"]) < want {
				t.Errorf("%d PATCH requests for %d bytes in %d-byte chunks; want at least %d",
					res.Requests["PATCH"], tc.size, chunkSize, want)
			}
			checkComplete(t, s, res, sl, tc.size, sum, tc.ctype)
		})
	}
}

// TestTusSlotProtocols uploads through slots of every signature scheme.
func TestTusSlotProtocols(t *testing.T) {
	t.Parallel()
	requireNode(t)
	s := startServer(t)
	const size = 2*MiB + 12345 // the last chunk is a short one
	for _, tc := range []struct {
		protocol string
		ctype    string // signed type, sent as metadata filetype; empty: none
		getType  string // the Content-Type expected on download; empty: not checked
	}{
		{"v1", "", ""},
		{"v2", "", "application/octet-stream"}, // no filetype: what XMPP servers sign then
		{"token", "application/pdf", "application/pdf"},
		{"v3", "", ""},
		{"jwt", "image/jpeg", "image/jpeg"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			t.Parallel()
			name := "file-" + tc.protocol + ".bin"
			file, sum := randomFile(t, name, size)
			sl := s.sign(t, tc.protocol, name, size, tc.ctype)
			args := tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize))
			if tc.ctype != "" {
				args = append(args, "--filetype", tc.ctype)
			}
			res := runTus(t, args...)
			checkComplete(t, s, res, sl, size, sum, tc.getType)
		})
	}
}

// TestTusResume interrupts 64 MiB uploads and completes them with a second
// tus-js-client process.
func TestTusResume(t *testing.T) {
	t.Parallel()
	requireNode(t)
	s := startServer(t)
	const size = 64 * MiB
	const interruptAfter = 20 * MiB

	// The first process stops after a PATCH was acknowledged; the second finds
	// the upload in the shared URL storage and continues where HEAD says.
	t.Run("url-storage", func(t *testing.T) {
		t.Parallel()
		file, sum := randomFile(t, "resume.bin", size)
		storage := t.TempDir() + "/tus-urls.json"
		sl := s.sign(t, "v2", "resume.bin", size, "application/zip")
		common := []string{"--chunk-size", strconv.Itoa(chunkSize), "--url-storage", storage, "--filetype", "application/zip"}

		first := runTus(t, tusArgs(sl, file, append(common, "--mode", "interrupt",
			"--interrupt-after", strconv.Itoa(interruptAfter))...)...)
		requireOK(t, "interrupted upload", first)
		if !first.Interrupted || first.BytesUploaded < interruptAfter || first.BytesUploaded >= size {
			t.Fatalf("interrupted upload: interrupted=%v after %d acknowledged bytes; want an interruption between %d and %d",
				first.Interrupted, first.BytesUploaded, interruptAfter, size)
		}
		before := headUpload(t, first.URL)
		if before.Status/100 != 2 || before.Offset != first.BytesUploaded || before.Length != size {
			t.Fatalf("HEAD after the interruption: %+v; want 2xx, Upload-Offset %d (acknowledged), Upload-Length %d",
				before, first.BytesUploaded, size)
		}

		second := runTus(t, tusArgs(sl, file, append(common, "--mode", "resume")...)...)
		requireOK(t, "resumed upload", second)
		checkResumed(t, first, second, before.Offset)
		checkComplete(t, s, second, sl, size, sum, "application/zip")
	})

	// The first process is cut off in the middle of one big PATCH; the gateway
	// keeps what arrived, and the second process continues from there.
	t.Run("mid-request", func(t *testing.T) {
		t.Parallel()
		file, sum := randomFile(t, "cut.bin", size)
		storage := t.TempDir() + "/tus-urls.json"
		sl := s.sign(t, "v2", "cut.bin", size, "")
		first := runTus(t, tusArgs(sl, file, "--url-storage", storage, "--mode", "interrupt",
			"--interrupt-on", "sent", "--interrupt-after", strconv.Itoa(interruptAfter))...)
		requireOK(t, "interrupted upload", first)
		if !first.Interrupted || first.Requests["PATCH"] != 1 {
			t.Fatalf("interrupted upload: interrupted=%v, requests %v; want one PATCH cut off", first.Interrupted, first.Requests)
		}
		offset := settledOffset(t, first.URL)
		if offset <= 0 || offset >= size {
			t.Fatalf("after cutting a PATCH that had sent %d bytes the upload's offset is %d; want 0 < offset < %d",
				first.BytesSent, offset, size)
		}

		second := runTus(t, tusArgs(sl, file, "--url-storage", storage, "--mode", "resume")...)
		requireOK(t, "resumed upload", second)
		checkResumed(t, first, second, offset)
		checkComplete(t, s, second, sl, size, sum, "")
	})

	// The slot expires between the interruption and the resumption: the
	// upload session, not the slot, authorises HEAD and PATCH.
	t.Run("after-slot-expiry", func(t *testing.T) {
		t.Parallel()
		file, sum := randomFile(t, "expiring.bin", size)
		storage := t.TempDir() + "/tus-urls.json"
		sl := s.sign(t, "v3", "expiring.bin", size, "", "--ttl", "4s")
		u, err := url.Parse(sl.PutURL)
		if err != nil {
			t.Fatal(err)
		}
		expires, err := strconv.ParseInt(u.Query().Get("expires"), 10, 64)
		if err != nil {
			t.Fatalf("v3 slot %s: no expires parameter: %v", sl.PutURL, err)
		}
		first := runTus(t, tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize), "--url-storage", storage,
			"--mode", "interrupt", "--interrupt-after", strconv.Itoa(interruptAfter))...)
		requireOK(t, "interrupted upload", first)
		before := headUpload(t, first.URL)

		// v3 expiry has a resolution of one second; wait until it is surely past.
		time.Sleep(time.Until(time.Unix(expires+2, 0)))
		second := runTus(t, tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize), "--url-storage", storage,
			"--mode", "resume")...)
		requireOK(t, "upload resumed after the slot expired", second)
		checkResumed(t, first, second, before.Offset)
		checkComplete(t, s, second, sl, size, sum, "")
	})

	// Without a URL storage the second process creates again at the same slot:
	// the creation converges on the existing upload, and tus-js-client's 409
	// retry (its first PATCH is at offset 0) moves it to the stored offset.
	t.Run("same-slot-again", func(t *testing.T) {
		t.Parallel()
		file, sum := randomFile(t, "again.bin", size)
		sl := s.sign(t, "v2", "again.bin", size, "")
		first := runTus(t, tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize), "--mode", "interrupt",
			"--interrupt-after", strconv.Itoa(interruptAfter))...)
		requireOK(t, "interrupted upload", first)
		before := headUpload(t, first.URL)
		if before.Status/100 != 2 || before.Offset < interruptAfter {
			t.Fatalf("HEAD after the interruption: %+v; want 2xx and Upload-Offset >= %d", before, interruptAfter)
		}

		second := runTus(t, tusArgs(sl, file, "--chunk-size", strconv.Itoa(chunkSize))...)
		requireOK(t, "second upload", second)
		if second.URL != first.URL {
			t.Errorf("the second creation at the same slot got %s; want the first upload %s", second.URL, first.URL)
		}
		if sent := second.BytesTransferred; sent > size-before.Offset+chunkSize {
			t.Errorf("the second process sent %d bytes; want at most the %d missing ones plus one refused chunk; responses %v",
				sent, size-before.Offset, second.Statuses)
		}
		checkComplete(t, s, second, sl, size, sum, "")
	})
}

// TestTusParallelUploads uploads with tus-js-client's parallelUploads: partial
// uploads created at the slot, concatenated by a final one.
func TestTusParallelUploads(t *testing.T) {
	t.Parallel()
	requireNode(t)
	s := startServer(t)
	const size = 5*MiB + 777
	const ctype = "image/webp"
	file, sum := randomFile(t, "parallel.webp", size)
	sl := s.sign(t, "v2", "parallel.webp", size, ctype)
	res := runTus(t, tusArgs(sl, file, "--parallel", "3", "--chunk-size", strconv.Itoa(chunkSize), "--filetype", ctype)...)
	requireOK(t, "parallel upload", res)
	if res.Requests["POST"] != 4 {
		t.Errorf("%d POST requests (responses %v); want 3 partial uploads and 1 final", res.Requests["POST"], res.Statuses)
	}
	checkComplete(t, s, res, sl, size, sum, ctype)
}

// checkResumed verifies that the second process continued the first one's
// upload at offset, without creating a new one.
func checkResumed(t *testing.T, first, second tusResult, offset int64) {
	t.Helper()
	if second.URL != first.URL {
		t.Errorf("resumed at %s; want the interrupted upload %s", second.URL, first.URL)
	}
	if second.Requests["POST"] != 0 {
		t.Errorf("the resuming process sent %d POST requests (responses %v); want none",
			second.Requests["POST"], second.Statuses)
	}
	if second.OffsetAtStart == nil || *second.OffsetAtStart <= 0 || *second.OffsetAtStart != offset {
		t.Errorf("tus-js-client resumed from offset %s; want %d, what HEAD said before", fmtOffset(second.OffsetAtStart), offset)
	}
}

func fmtOffset(p *int64) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

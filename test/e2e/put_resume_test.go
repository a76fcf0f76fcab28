package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// The resume fallback of the XEP-0363 PUT door against the real binary: a PUT
// cut off by the client mid-body keeps what arrived; HEAD on the slot URL
// tells how much; a PUT with Content-Range, or a plain full retry, completes
// the file; a wrong range and a different body for a completed file get 409.

const resumeSize = 20 * MiB

func TestPutResume(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, protocol := range []string{"v2", "jwt"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()

			// (a) cut off, HEAD, resume with Content-Range; (c) a range that
			// does not start at the stored offset; (d) retries of the
			// completed file.
			t.Run("content_range", func(t *testing.T) {
				t.Parallel()
				data := resumeData(t, resumeSize)
				sl := s.sign(t, protocol, "clip.mp4", resumeSize, "video/mp4")
				sent := resumeCutOff(t, sl, "video/mp4", data, 7*MiB+12345)
				off := resumeSettled(t, sl, resumeSize, sent)
				resumeRequireNoDownload(t, sl)

				// (c) a range that starts after, or before, the stored offset.
				for _, first := range []int64{off + 1, 0, off - 1} {
					n := int64(1000)
					resp := resumePut(t, sl, "video/mp4", data[first:first+n],
						fmt.Sprintf("bytes %d-%d/%d", first, first+n-1, resumeSize))
					if resp.status != http.StatusConflict || resp.header.Get("Upload-Offset") != strconv.FormatInt(off, 10) {
						t.Errorf("PUT with Content-Range starting at %d (stored offset %d): %d, Upload-Offset %q, %q; want 409 with Upload-Offset %d",
							first, off, resp.status, resp.header.Get("Upload-Offset"), resp.body, off)
					}
				}
				if got := resumeHead(t, sl); got.Status != http.StatusOK || got.Offset != off {
					t.Fatalf("HEAD after the refused ranges: %+v; want 200 with Upload-Offset %d", got, off)
				}

				resp := resumePut(t, sl, "video/mp4", data[off:], fmt.Sprintf("bytes %d-%d/%d", off, resumeSize-1, resumeSize))
				if resp.status != http.StatusCreated {
					t.Fatalf("PUT with Content-Range: bytes %d-%d/%d: %d %q; want exactly 201", off, resumeSize-1, resumeSize, resp.status, resp.body)
				}
				resumeRequireDownload(t, sl, data, "video/mp4")
				if got := resumeHead(t, sl); got.Status != http.StatusOK || got.Offset != resumeSize || got.Length != resumeSize {
					t.Errorf("HEAD on the completed slot: %+v; want 200 with Upload-Offset = Upload-Length = %d", got, resumeSize)
				}

				// (d) the client lost the 201 and sends the whole file again.
				if resp := resumePut(t, sl, "video/mp4", data, ""); resp.status != http.StatusCreated {
					t.Errorf("repeated PUT of the same bytes for the completed slot: %d %q; want exactly 201", resp.status, resp.body)
				}
				// Different bytes, once at the end (the whole body must be
				// compared) and once at the start.
				for _, at := range []int{resumeSize - 1, 0} {
					other := bytes.Clone(data)
					other[at] ^= 0xff
					if resp := resumePut(t, sl, "video/mp4", other, ""); resp.status != http.StatusConflict {
						t.Errorf("PUT of different bytes (byte %d changed) for the completed slot: %d %q; want 409", at, resp.status, resp.body)
					}
				}
				resumeRequireDownload(t, sl, data, "video/mp4")
			})

			// (b) cut off, then the client simply PUTs the whole file again.
			t.Run("full_retry", func(t *testing.T) {
				t.Parallel()
				data := resumeData(t, resumeSize)
				sl := s.sign(t, protocol, "retry.bin", resumeSize, "")
				sent := resumeCutOff(t, sl, "", data, 9*MiB+777)
				resumeSettled(t, sl, resumeSize, sent)
				if resp := resumePut(t, sl, "", data, ""); resp.status != http.StatusCreated {
					t.Fatalf("full retry of a cut-off PUT: %d %q; want exactly 201", resp.status, resp.body)
				}
				resumeRequireDownload(t, sl, data, "application/octet-stream")
			})

			// (b) as a client whose network came back does it: the retry
			// follows at once, while the gateway may still be finishing the
			// cut-off request.
			t.Run("full_retry_at_once", func(t *testing.T) {
				t.Parallel()
				data := resumeData(t, resumeSize)
				sl := s.sign(t, protocol, "again.bin", resumeSize, "application/x-test")
				resumeCutOff(t, sl, "application/x-test", data, 11*MiB+1)
				if resp := resumePut(t, sl, "application/x-test", data, ""); resp.status != http.StatusCreated {
					t.Fatalf("immediate full retry of a cut-off PUT: %d %q; want exactly 201", resp.status, resp.body)
				}
				resumeRequireDownload(t, sl, data, "application/x-test")
			})

			// (b') the retry carries other bytes than the cut-off PUT (the
			// client's file changed): the result is the new file, not a mix.
			t.Run("full_retry_other_bytes", func(t *testing.T) {
				t.Parallel()
				first := resumeData(t, resumeSize)
				sl := s.sign(t, protocol, "changed.bin", resumeSize, "")
				sent := resumeCutOff(t, sl, "", first, 6*MiB)
				off := resumeSettled(t, sl, resumeSize, sent)
				second := bytes.Clone(first)
				if _, err := rand.Read(second[off/2 : off/2+4096]); err != nil {
					t.Fatal(err)
				}
				if resp := resumePut(t, sl, "", second, ""); resp.status != http.StatusCreated {
					t.Fatalf("full retry with other bytes: %d %q; want exactly 201", resp.status, resp.body)
				}
				resumeRequireDownload(t, sl, second, "application/octet-stream")
			})
		})
	}
}

func resumeData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// resumeCutOff sends a PUT for the whole of data over a raw TCP connection but
// only the first n bytes of the body, then closes the connection, like a
// client whose network went away. It returns n.
func resumeCutOff(t testing.TB, sl slot, ctype string, data []byte, n int) int64 {
	t.Helper()
	u, err := url.Parse(sl.PutURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var head bytes.Buffer
	fmt.Fprintf(&head, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(data))
	if ctype != "" {
		fmt.Fprintf(&head, "Content-Type: %s\r\n", ctype)
	}
	if sl.Authorization != "" {
		fmt.Fprintf(&head, "Authorization: %s\r\n", sl.Authorization)
	}
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		t.Fatalf("cut-off PUT: writing the header: %v", err)
	}
	if _, err := conn.Write(data[:n]); err != nil {
		t.Fatalf("cut-off PUT: writing %d bytes of the body: %v", n, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("cut-off PUT: closing: %v", err)
	}
	return int64(n)
}

// resumeHead sends HEAD to the slot's PUT URL (with its Authorization header for
// JWT slots).
func resumeHead(t testing.TB, sl slot) tusState {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, sl.PutURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sl.Authorization != "" {
		req.Header.Set("Authorization", sl.Authorization)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("HEAD %s: %v", sl.PutURL, err)
	}
	resp.Body.Close()
	num := func(name string) int64 {
		n, err := strconv.ParseInt(resp.Header.Get(name), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return tusState{Status: resp.StatusCode, Offset: num("Upload-Offset"), Length: num("Upload-Length")}
}

// resumeSettled polls HEAD on the slot URL until it reports the same
// Upload-Offset twice 100 ms apart, and checks it: more than 0, at most what
// was sent, with Upload-Length size and a matching Range header.
func resumeSettled(t testing.TB, sl slot, size, sent int64) int64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := int64(-2)
	var st tusState
	for {
		st = resumeHead(t, sl)
		if st.Status == http.StatusOK && st.Offset > 0 && st.Offset == last {
			break
		}
		if st.Status == http.StatusOK {
			last = st.Offset
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s did not settle on an Upload-Offset > 0 within 15s; last answer %+v", sl.PutURL, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Offset > sent || st.Length != size {
		t.Fatalf("HEAD after a cut-off PUT of %d of %d bytes: %+v; want 0 < Upload-Offset <= %d and Upload-Length %d", sent, size, st, sent, size)
	}
	t.Logf("cut off after %d bytes; HEAD reports Upload-Offset %d", sent, st.Offset)
	return st.Offset
}

type resumeAnswer struct {
	status int
	header http.Header
	body   string
}

// resumePut PUTs body to the slot's PUT URL with the slot's Authorization, the
// given Content-Type (none when empty) and Content-Range (none when empty).
func resumePut(t testing.TB, sl slot, ctype string, body []byte, contentRange string) resumeAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, sl.PutURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if sl.Authorization != "" {
		req.Header.Set("Authorization", sl.Authorization)
	}
	if contentRange != "" {
		req.Header.Set("Content-Range", contentRange)
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s (%d bytes, Content-Range %q): %v", sl.PutURL, len(body), contentRange, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resumeAnswer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// resumeRequireDownload GETs the slot's GET URL and compares it with want.
func resumeRequireDownload(t testing.TB, sl slot, want []byte, ctype string) {
	t.Helper()
	sum := sha256.Sum256(want)
	resp, got, n := download(t, sl.GetURL)
	if resp.StatusCode != http.StatusOK || n != int64(len(want)) || got != hex.EncodeToString(sum[:]) {
		t.Fatalf("GET %s: %d, %d bytes, sha256 %s; want 200, %d bytes, sha256 %x", sl.GetURL, resp.StatusCode, n, got, len(want), sum)
	}
	if got := resp.Header.Get("Content-Type"); got != ctype {
		t.Errorf("GET %s: Content-Type %q; want %q", sl.GetURL, got, ctype)
	}
}

// resumeRequireNoDownload checks that the GET URL of an incomplete upload
// serves nothing.
func resumeRequireNoDownload(t testing.TB, sl slot) {
	t.Helper()
	resp, _, n := download(t, sl.GetURL)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET %s of an incomplete upload: %d (%d bytes); want 404", sl.GetURL, resp.StatusCode, n)
	}
}

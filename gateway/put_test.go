package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
)

// put sends a PUT with an exact body and headers.
func (tg *testGateway) put(url string, body string, header map[string]string) (*http.Response, string) {
	tg.t.Helper()
	return tg.do(http.MethodPut, url, header, strings.NewReader(body))
}

func TestPutCreatesWith201(t *testing.T) {
	tg := newTestGateway(t)
	for _, p := range []auth.Protocol{auth.ProtoV1, auth.ProtoV2, auth.ProtoToken, auth.ProtoV3, auth.ProtoJWT} {
		t.Run(string(p), func(t *testing.T) {
			body := "file of " + string(p)
			slot := tg.sign(p, "Grüße 😀 "+string(p)+".txt", int64(len(body)), strp("text/plain"))
			h := map[string]string{"Content-Type": "text/plain"}
			if slot.Authorization != "" {
				h["Authorization"] = slot.Authorization
			}
			res, msg := tg.put(slot.PutURL, body, h)
			if res.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", res.StatusCode, msg)
			}
			get, got := tg.do(http.MethodGet, slot.GetURL, nil, nil)
			wantStatus(t, get, http.StatusOK)
			if sha(got) != sha(body) {
				t.Fatalf("GET returned %q", got)
			}
		})
	}
}

func TestPutStatusCodes(t *testing.T) {
	tg := newTestGateway(t)
	v2 := tg.sign(auth.ProtoV2, "photo.jpg", 5, strp("image/jpeg"))
	jwtSlot := tg.sign(auth.ProtoJWT, "j.bin", 5, nil)
	cases := []struct {
		name   string
		url    string
		body   string
		header map[string]string
		want   int
	}{
		// No signature at all (no query signature, no Authorization): 401, as Prosody.
		{"no signature", v2.GetURL, "12345", map[string]string{"Content-Type": "image/jpeg"}, http.StatusUnauthorized},
		{"jwt without Authorization", jwtSlot.PutURL, "12345", nil, http.StatusUnauthorized},
		{"wrong type under v2", v2.PutURL, "12345", map[string]string{"Content-Type": "image/png"}, http.StatusForbidden},
		{"length other than signed", v2.PutURL, "123456", map[string]string{"Content-Type": "image/jpeg"}, http.StatusForbidden},
		{"jwt without bearer", jwtSlot.PutURL, "12345", map[string]string{"Authorization": "Basic eA=="}, http.StatusUnauthorized},
		{"jwt larger than filesize", jwtSlot.PutURL, "123456", map[string]string{"Authorization": jwtSlot.Authorization}, http.StatusRequestEntityTooLarge},
		{"backslash", strings.Replace(v2.PutURL, "photo.jpg", "..%5Cphoto.jpg", 1), "12345", nil, http.StatusBadRequest},
		{"dot dot", strings.Replace(v2.PutURL, "/photo.jpg", "/../photo.jpg", 1), "12345", nil, http.StatusBadRequest},
		{"encoded dot dot", strings.Replace(v2.PutURL, "/photo.jpg", "/%2E%2E/photo.jpg", 1), "12345", nil, http.StatusBadRequest},
		{"NUL", strings.Replace(v2.PutURL, "photo.jpg", "pho%00to.jpg", 1), "12345", nil, http.StatusBadRequest},
		{"empty segment", strings.Replace(v2.PutURL, "/photo.jpg", "//photo.jpg", 1), "12345", nil, http.StatusBadRequest},
		{"bad content range", v2.PutURL, "12345", map[string]string{"Content-Type": "image/jpeg", "Content-Range": "bytes 3-1/5"}, http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, msg := tg.put(c.url, c.body, c.header)
			if res.StatusCode != c.want {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, strings.TrimSpace(msg), c.want)
			}
			if c.want == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		})
	}
	if ids := tg.uploadFiles(); len(ids) != 0 {
		t.Fatalf("refused PUTs stored uploads: %v", ids)
	}
}

func TestPutMaxSizeAndChunked(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.MaxSize = 4 })
	v3 := tg.sign(auth.ProtoV3, "big.bin", 5, nil)
	res, _ := tg.put(v3.PutURL, "12345", nil)
	wantStatus(t, res, http.StatusRequestEntityTooLarge)

	v1 := tg.sign(auth.ProtoV1, "chunked.bin", 3, nil)
	req, _ := http.NewRequest(http.MethodPut, v1.PutURL, io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = -1
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	wantStatus(t, r, http.StatusLengthRequired)
}

// interruptedPut stores the first part of a slot's file as an interrupted
// PUT leaves it (through the tus door, which is the same upload).
func (tg *testGateway) interruptedPut(slot auth.SignedSlot, size int64, part string) string {
	tg.t.Helper()
	res := tg.tusCreate(slot, size, map[string]string{"Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filetype": "application/octet-stream"})})
	wantStatus(tg.t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(tg.t, tg.patch(loc, 0, part), http.StatusNoContent)
	return idOf(loc)
}

func TestPutResumeFallback(t *testing.T) {
	tg := newTestGateway(t)
	file := "0123456789abcdefghij"
	slot := tg.sign(auth.ProtoV2, "video.mp4", int64(len(file)), nil)
	id := tg.interruptedPut(slot, int64(len(file)), file[:8])

	// HEAD with the signature reports what is stored.
	h, _ := tg.do(http.MethodHead, slot.PutURL, nil, nil)
	wantStatus(t, h, http.StatusOK)
	if h.Header.Get("Upload-Offset") != "8" || h.Header.Get("Upload-Length") != "20" || h.Header.Get("Range") != "bytes=0-7" || h.Header.Get("Tus-Resumable") == "" {
		t.Fatalf("HEAD headers %v", h.Header)
	}
	// Without the signature, HEAD is the download: nothing until complete.
	d, _ := tg.do(http.MethodHead, slot.GetURL, nil, nil)
	wantStatus(t, d, http.StatusNotFound)

	// A range that does not start at the offset: 409 with the offset.
	res, _ := tg.put(slot.PutURL, file[10:], map[string]string{"Content-Range": "bytes 10-19/20"})
	wantStatus(t, res, http.StatusConflict)
	if res.Header.Get("Upload-Offset") != "8" {
		t.Fatalf("409 without the offset: %v", res.Header)
	}
	// The right range completes the file with exactly 201.
	res, msg := tg.put(slot.PutURL, file[8:], map[string]string{"Content-Range": "bytes 8-19/20"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("range PUT: %d %s", res.StatusCode, msg)
	}
	if got, _ := tg.stored(id); sha(got) != sha(file) {
		t.Fatalf("stored %q", got)
	}
	// A retried PUT of the same bytes after completion: 201 again; other bytes: 409.
	res, _ = tg.put(slot.PutURL, file, nil)
	wantStatus(t, res, http.StatusCreated)
	res, _ = tg.put(slot.PutURL, strings.ToUpper(file), nil)
	wantStatus(t, res, http.StatusConflict)
	if got, _ := tg.stored(id); sha(got) != sha(file) {
		t.Fatalf("a refused PUT changed the file: %q", got)
	}
	// More than the slot's size on a known upload: 413.
	v1 := tg.sign(auth.ProtoV1, "known.bin", 4, nil)
	tg.interruptedPut(v1, 4, "ab")
	res, _ = tg.put(v1.PutURL, "abcdef", nil)
	wantStatus(t, res, http.StatusRequestEntityTooLarge)
}

func TestPutTusPatchOnSlotURL(t *testing.T) {
	tg := newTestGateway(t)
	file := "patch me please"
	slot := tg.sign(auth.ProtoV1, "p.txt", int64(len(file)), nil)
	id := tg.interruptedPut(slot, int64(len(file)), file[:5])
	res := tg.patch(slot.PutURL, 5, file[5:])
	wantStatus(t, res, http.StatusNoContent)
	if got, _ := tg.stored(id); got != file {
		t.Fatalf("stored %q", got)
	}
	bad := tg.patch(strings.Replace(slot.PutURL, "v=", "v=00", 1), 0, "x")
	wantStatus(t, bad, http.StatusForbidden)
}

func TestPutFullRetry(t *testing.T) {
	tg := newTestGateway(t)
	file := strings.Repeat("0123456789", 100000) // 1 MB: several comparison chunks
	t.Run("same bytes continue after the stored prefix", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "same.bin", int64(len(file)), nil)
		id := tg.interruptedPut(slot, int64(len(file)), file[:600000])
		res, msg := tg.put(slot.PutURL, file, map[string]string{"Content-Type": "application/octet-stream"})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("retry: %d %s", res.StatusCode, msg)
		}
		if got, _ := tg.stored(id); sha(got) != sha(file) {
			t.Fatal("stored file differs")
		}
	})
	t.Run("different bytes start over cleanly", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "changed.bin", int64(len(file)), nil)
		stale := file[:300000] + strings.Repeat("X", 300000)
		id := tg.interruptedPut(slot, int64(len(file)), stale)
		res, msg := tg.put(slot.PutURL, file, map[string]string{"Content-Type": "application/octet-stream"})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("retry: %d %s", res.StatusCode, msg)
		}
		if _, got := tg.do(http.MethodGet, slot.GetURL, nil, nil); sha(got) != sha(file) {
			t.Fatal("a retried PUT with other bytes left a mixed file")
		}
		// One upload, one body: the upload started over under a new ID, and
		// the tus URL of the old one leads nowhere.
		if _, ok := tg.stored(id); ok {
			t.Fatal("the old upload is still stored")
		}
		wantStatus(t, tg.head(tg.srv.URL+"/files/"+id), http.StatusNotFound)
	})
	t.Run("first byte differs", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "first.bin", int64(len(file)), nil)
		id := tg.interruptedPut(slot, int64(len(file)), "Z"+file[1:1000])
		res, _ := tg.put(slot.PutURL, file, map[string]string{"Content-Type": "application/octet-stream"})
		wantStatus(t, res, http.StatusCreated)
		if _, got := tg.do(http.MethodGet, slot.GetURL, nil, nil); sha(got) != sha(file) {
			t.Fatal("stored file differs")
		}
		// A tus client that still holds the old upload URL cannot append
		// its body to the new upload.
		wantStatus(t, tg.patch(tg.srv.URL+"/files/"+id, 999, "x"), http.StatusNotFound)
	})
}

func TestDownloadHeaders(t *testing.T) {
	tg := newTestGateway(t)
	cases := []struct {
		name, ctype, wantType, wantDisp string
	}{
		{"pic.jpg", "image/jpeg", "image/jpeg", "inline"},
		{"page.html", "text/html", "text/html", "attachment"},
		{"logo.svg", "image/svg+xml", "image/svg+xml", "attachment"},
		{"Grüße.txt", "text/plain; charset=utf-8", "text/plain; charset=utf-8", "inline"},
		{"x.js", "application/javascript", "application/javascript", "attachment"},
	}
	for _, c := range cases {
		body := "<svg onload=alert(1)>"
		slot := tg.sign(auth.ProtoV2, c.name, int64(len(body)), strp(c.ctype))
		res, msg := tg.put(slot.PutURL, body, map[string]string{"Content-Type": c.ctype})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d %s", c.name, res.StatusCode, msg)
		}
		get, got := tg.do(http.MethodGet, slot.GetURL, nil, nil)
		wantStatus(t, get, http.StatusOK)
		if got != body || get.Header.Get("Content-Type") != c.wantType || !strings.HasPrefix(get.Header.Get("Content-Disposition"), c.wantDisp) {
			t.Errorf("%s: type %q disposition %q", c.name, get.Header.Get("Content-Type"), get.Header.Get("Content-Disposition"))
		}
		if get.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(get.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: missing nosniff or CSP", c.name)
		}
		if c.name == "Grüße.txt" && !strings.Contains(get.Header.Get("Content-Disposition"), "filename*=UTF-8''Gr%C3%BC%C3%9Fe.txt") {
			t.Errorf("non-ASCII name not encoded: %q", get.Header.Get("Content-Disposition"))
		}
		// Range and conditional requests.
		rg, part := tg.do(http.MethodGet, slot.GetURL, map[string]string{"Range": "bytes=1-3"}, nil)
		if rg.StatusCode != http.StatusPartialContent || part != body[1:4] {
			t.Errorf("%s: range %d %q", c.name, rg.StatusCode, part)
		}
		nm, _ := tg.do(http.MethodGet, slot.GetURL, map[string]string{"If-None-Match": get.Header.Get("ETag")}, nil)
		if nm.StatusCode != http.StatusNotModified {
			t.Errorf("%s: If-None-Match: %d", c.name, nm.StatusCode)
		}
	}
	// index.html must not be redirected as http.ServeFile would.
	slot := tg.sign(auth.ProtoV1, "index.html", 2, nil)
	res, _ := tg.put(slot.PutURL, "hi", nil)
	wantStatus(t, res, http.StatusCreated)
	get, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	wantStatus(t, get, http.StatusOK)

}

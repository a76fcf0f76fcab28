package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/internal/tests3"
	"github.com/uploadgate/uploadgate/storage"
)

func newS3TestGateway(t *testing.T) *testGateway {
	t.Helper()
	srv := tests3.Start(t)
	srv.Setenv(t)
	dir := t.TempDir()
	backend, err := storage.New(context.Background(), storage.Config{
		Backend: storage.BackendS3,
		DataDir: dir,
		S3:      storage.S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return newTestGatewayOn(t, dir, backend)
}

// Both doors run on S3 as on disk: tus upload in parts, PUT with a resume,
// ranged downloads served by the object store.
func TestDoorsOnS3(t *testing.T) {
	tg := newS3TestGateway(t)
	file := strings.Repeat("0123456789abcdef", 448<<10) // 7 MiB: more than one S3 part

	t.Run("tus", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "movie.mp4", int64(len(file)), strp("video/mp4"))
		res := tg.tusCreate(slot, int64(len(file)), map[string]string{"Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filetype": "video/mp4"})})
		wantStatus(t, res, http.StatusCreated)
		loc := res.Header.Get("Location")
		if strings.Contains(loc, "+") {
			t.Fatalf("s3store's multipart ID leaked into Location %q", loc)
		}
		wantStatus(t, tg.patch(loc, 0, file[:5<<20]), http.StatusNoContent)
		h := tg.head(loc)
		if h.Header.Get("Upload-Offset") != "5242880" {
			t.Fatalf("offset %q", h.Header.Get("Upload-Offset"))
		}
		// The same slot again converges on the same upload.
		again := tg.tusCreate(slot, int64(len(file)), map[string]string{"Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filetype": "video/mp4"})})
		if again.Header.Get("Location") != loc || again.Header.Get("Upload-Offset") != "5242880" {
			t.Fatalf("second creation: %q %q", again.Header.Get("Location"), again.Header.Get("Upload-Offset"))
		}
		wantStatus(t, tg.patch(loc, 5<<20, file[5<<20:]), http.StatusNoContent)
		get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
		wantStatus(t, get, http.StatusOK)
		if sha(body) != sha(file) || get.Header.Get("Content-Type") != "video/mp4" || get.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("download: %d bytes, type %q", len(body), get.Header.Get("Content-Type"))
		}
		rg, part := tg.do(http.MethodGet, slot.GetURL, map[string]string{"Range": "bytes=100-199"}, nil)
		if rg.StatusCode != http.StatusPartialContent || part != file[100:200] {
			t.Fatalf("range: %d %q", rg.StatusCode, part)
		}
	})

	t.Run("put with resume", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV1, "doc.pdf", int64(len(file)), nil)
		id := tg.interruptedPut(slot, int64(len(file)), file[:5<<20])
		h, _ := tg.do(http.MethodHead, slot.PutURL, nil, nil)
		if h.Header.Get("Upload-Offset") != "5242880" {
			t.Fatalf("HEAD offset %q", h.Header.Get("Upload-Offset"))
		}
		res, msg := tg.put(slot.PutURL, file[5<<20:], map[string]string{"Content-Range": "bytes 5242880-" + itoa(int64(len(file)-1)) + "/" + itoa(int64(len(file)))})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("range PUT: %d %s", res.StatusCode, msg)
		}
		if got, _ := tg.stored(id); sha(got) != sha(file) {
			t.Fatal("stored object differs")
		}
		res, _ = tg.put(slot.PutURL, file, nil)
		wantStatus(t, res, http.StatusCreated)
	})

	t.Run("plain put", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "small.txt", 5, strp("text/plain"))
		res, msg := tg.put(slot.PutURL, "hello", map[string]string{"Content-Type": "text/plain"})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d %s", res.StatusCode, msg)
		}
		get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
		if get.StatusCode != http.StatusOK || body != "hello" {
			t.Fatalf("GET %d %q", get.StatusCode, body)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// While the object store is down, requests get answers clients retry (503 on
// PATCH and PUT with Retry-After, 423 on HEAD), never a 4xx that makes them
// give up; once it is back, the upload resumes and completes.
func TestS3OutageIsRetryable(t *testing.T) {
	srv := tests3.Start(t)
	srv.Setenv(t)
	dir := t.TempDir()
	backend, err := storage.New(context.Background(), storage.Config{
		Backend: storage.BackendS3, DataDir: dir,
		S3: storage.S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGatewayOn(t, dir, backend)
	file := strings.Repeat("x", 6<<20)
	slot := tg.sign(auth.ProtoV1, "outage.bin", int64(len(file)), nil)
	res := tg.tusCreate(slot, int64(len(file)), nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, file[:5<<20]), http.StatusNoContent)

	srv.Stop()
	h := tg.head(loc)
	if h.StatusCode != http.StatusLocked || h.Header.Get("Retry-After") == "" {
		t.Fatalf("HEAD during the outage: %d (Retry-After %q), want 423 with Retry-After", h.StatusCode, h.Header.Get("Retry-After"))
	}
	p := tg.patch(loc, 5<<20, file[5<<20:])
	if p.StatusCode != http.StatusServiceUnavailable || p.Header.Get("Retry-After") == "" {
		t.Fatalf("PATCH during the outage: %d, want 503 with Retry-After", p.StatusCode)
	}
	put, body := tg.put(slot.PutURL, file, nil)
	if put.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, srv.Endpoint) {
		t.Fatalf("PUT during the outage: %d %q, want 503 without internals", put.StatusCode, body)
	}
	rd, _ := tg.do(http.MethodGet, tg.srv.URL+"/readyz", nil, nil)
	wantStatus(t, rd, http.StatusServiceUnavailable)

	srv.Restart()
	h = tg.head(loc)
	wantStatus(t, h, http.StatusOK)
	if h.Header.Get("Upload-Offset") != "5242880" {
		t.Fatalf("offset after the outage %q", h.Header.Get("Upload-Offset"))
	}
	wantStatus(t, tg.patch(loc, 5<<20, file[5<<20:]), http.StatusNoContent)
	get, got := tg.do(http.MethodGet, slot.GetURL, nil, nil)
	if get.StatusCode != http.StatusOK || sha(got) != sha(file) {
		t.Fatalf("download after the outage: %d, %d bytes", get.StatusCode, len(got))
	}
}

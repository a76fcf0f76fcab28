package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// signAt mints a slot in a fixed directory, so that two gateways with the
// same upload ID key give the file the same upload ID (and ETag).
func (tg *testGateway) signAt(dir string, proto auth.Protocol, name string, size int64, ctype *string) auth.SignedSlot {
	tg.t.Helper()
	s, err := auth.SignSlot(testSecret, auth.SignRequest{
		BaseURL: tg.srv.URL + "/upload/", Dir: dir, Name: name, Size: size, Type: ctype, Protocol: proto, TTL: 5 * time.Minute, Now: tg.clock.Now(),
	})
	if err != nil {
		tg.t.Fatal(err)
	}
	return s
}

// A file downloads the same way from every store: the same status, the same
// headers and the same bytes from S3 (versitygw) as from disk, for a
// zero-byte file (200 with Content-Length 0, never 204), for a v1 file (whose
// slot signs no type: application/octet-stream, never the S3 server's
// default), and for conditional and ranged requests on our ETag. Only Date
// and the value of Last-Modified may differ.
func TestDownloadSameOnEveryStore(t *testing.T) {
	disk := newTestGateway(t)
	s3 := newS3TestGateway(t)
	files := []struct {
		name, dir, body string
		proto           auth.Protocol
		ctype           *string
	}{
		{"empty.txt", "d-empty-v2", "", auth.ProtoV2, strp("text/plain")},
		{"empty.bin", "d-empty-v1", "", auth.ProtoV1, nil},
		{"notes.txt", "d-v1", "hello, world", auth.ProtoV1, nil},
		{"photo.png", "d-v2", "\x89PNG not really", auth.ProtoV2, strp("image/png")},
	}
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			var getURLs []string
			for _, tg := range []*testGateway{disk, s3} {
				slot := tg.signAt(f.dir, f.proto, f.name, int64(len(f.body)), f.ctype)
				h := map[string]string{}
				if f.ctype != nil {
					h["Content-Type"] = *f.ctype
				}
				res, msg := tg.put(slot.PutURL, f.body, h)
				if res.StatusCode != http.StatusCreated {
					t.Fatalf("PUT: %d %s", res.StatusCode, msg)
				}
				getURLs = append(getURLs, slot.GetURL)
			}
			first, _ := disk.do(http.MethodGet, getURLs[0], nil, nil)
			etag := first.Header.Get("ETag")
			requests := []struct {
				what   string
				method string
				header map[string]string
			}{
				{"GET", http.MethodGet, nil},
				{"HEAD", http.MethodHead, nil},
				{"If-None-Match", http.MethodGet, map[string]string{"If-None-Match": etag}},
				{"If-None-Match other", http.MethodGet, map[string]string{"If-None-Match": `"other"`}},
				{"If-Match other", http.MethodGet, map[string]string{"If-Match": `"other"`}},
				{"If-Match", http.MethodGet, map[string]string{"If-Match": etag}},
				{"Range", http.MethodGet, map[string]string{"Range": "bytes=1-3"}},
				{"If-Range other", http.MethodGet, map[string]string{"Range": "bytes=1-3", "If-Range": `"other"`}},
				{"If-Range", http.MethodGet, map[string]string{"Range": "bytes=1-3", "If-Range": etag}},
			}
			for _, rq := range requests {
				if f.body == "" && rq.header["Range"] != "" {
					continue // no byte of an empty file can be asked for
				}
				dres, dbody := disk.do(rq.method, getURLs[0], rq.header, nil)
				sres, sbody := s3.do(rq.method, getURLs[1], rq.header, nil)
				if dres.StatusCode != sres.StatusCode || dbody != sbody {
					t.Errorf("%s: disk %d %q, S3 %d %q", rq.what, dres.StatusCode, dbody, sres.StatusCode, sbody)
					continue
				}
				if d, s := comparableHeader(dres.Header), comparableHeader(sres.Header); d != s {
					t.Errorf("%s (%d): headers differ\ndisk:\n%s\nS3:\n%s", rq.what, dres.StatusCode, d, s)
				}
			}
			if first.StatusCode != http.StatusOK || first.Header.Get("Content-Length") != itoa(int64(len(f.body))) {
				t.Errorf("GET: %d, Content-Length %q", first.StatusCode, first.Header.Get("Content-Length"))
			}
			if f.ctype == nil && first.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("GET of a file without a type: Content-Type %q", first.Header.Get("Content-Type"))
			}
		})
	}
}

// comparableHeader is a response's headers as text, without Date and X-Request-Id, and with
// Last-Modified's value masked (each store has its own clock).
func comparableHeader(h http.Header) string {
	var lines []string
	for k, vs := range h {
		switch k {
		case "Date", "X-Request-Id":
			continue
		case "Last-Modified":
			vs = []string{"<time>"}
		}
		lines = append(lines, k+": "+strings.Join(vs, ", "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

package gateway

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/storage"
)

// Seeds are in the code (f.Add) and in testdata/fuzz/<target>/; `make test`
// runs each target for a few seconds.

func FuzzParseSlotPath(f *testing.F) {
	for _, s := range []string{
		"/upload/dir/name.txt", "/upload/a/b/c", "/upload/d/Gr%C3%BC%C3%9Fe%20%F0%9F%98%80.txt",
		"/upload/d/..", "/upload/d/%2e%2e", "/upload/d/a%2Fb", "/upload/d/a%5Cb", "/upload/d/%00",
		"/upload//x", "/upload/d/", "/upload/x", "/upload/", "/other/d/x", "/upload/d/%zz", "/upload/d/%C0%AE",
		"/upload/d/.", "/upload/d/a;b", "/upload/d/a%3Fb",
	} {
		f.Add(s)
	}
	const base = "/upload/"
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI(raw)
		if err != nil {
			return
		}
		sp, err := parseSlotPath(u, base)
		if err != nil {
			if sp.Path != "" || sp.URLPath != "" || sp.Segments != nil {
				t.Fatalf("failed parse returned %+v", sp)
			}
			return
		}
		if len(sp.Segments) < 2 {
			t.Fatalf("%q: %d segments", raw, len(sp.Segments))
		}
		for _, s := range sp.Segments {
			if !safeSegment(s) || strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." {
				t.Fatalf("%q: unsafe segment %q", raw, s)
			}
		}
		if sp.Path != strings.Join(sp.Segments, "/") || sp.URLPath != "/upload/"+sp.Path {
			t.Fatalf("%q: inconsistent %+v", raw, sp)
		}
		// The decoded path names the same slot when it is encoded again.
		enc := make([]string, len(sp.Segments))
		for i, s := range sp.Segments {
			enc[i] = url.PathEscape(s)
		}
		u2, err := url.ParseRequestURI(base + strings.Join(enc, "/"))
		if err != nil {
			t.Fatalf("%q: re-encoded path does not parse: %v", raw, err)
		}
		sp2, err := parseSlotPath(u2, base)
		if err != nil || sp2.Path != sp.Path || sp2.URLPath != sp.URLPath {
			t.Fatalf("%q: re-encoded path parses as %+v, %v; want %+v", raw, sp2, err, sp)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"", "bytes 0-0/1", "bytes 0-99/100", "bytes 100-199/200", "bytes 5-4/10", "bytes 0-10/10",
		"bytes */100", "bytes 0-99/*", "bytes -1-5/10", "bytes +1-5/10", "bytes 0-9223372036854775806/9223372036854775807",
		"bytes 0-99999999999999999999/1", "bytes  1-2/3", "Bytes 1-2/3", "bytes 1-2/3 ", "bytes 01-02/03",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		cr, err := parseContentRange(v)
		if v == "" {
			if cr != nil || err != nil {
				t.Fatalf("empty header: %+v, %v", cr, err)
			}
			return
		}
		if (cr == nil) == (err == nil) {
			t.Fatalf("%q: range %+v and error %v", v, cr, err)
		}
		if err != nil {
			return
		}
		if cr.first < 0 || cr.first > cr.last || cr.last >= cr.total {
			t.Fatalf("%q: accepted an impossible range %+v", v, *cr)
		}
		if n := cr.last - cr.first + 1; n <= 0 {
			t.Fatalf("%q: length %d overflows", v, n)
		}
		again, err := parseContentRange(fmt.Sprintf("bytes %d-%d/%d", cr.first, cr.last, cr.total))
		if err != nil || *again != *cr {
			t.Fatalf("%q: canonical form parses as %+v, %v", v, again, err)
		}
	})
}

// FuzzSignedSlotAccepted: every slot the signer mints (Prosody's encoding)
// is parsed by the gateway's path handling and verified.
func FuzzSignedSlotAccepted(f *testing.F) {
	f.Add("dir", "photo.jpg", int64(1234), "image/jpeg", uint8(0))
	f.Add("user/4a8e", "Grüße 😀 #1?.txt", int64(0), "", uint8(1))
	f.Add("d", "a%2Fb;c=d&e", int64(1<<40), "text/plain; charset=utf-8", uint8(2))
	f.Add("d", "..%2e", int64(7), "x", uint8(3))
	f.Add("4a8e1c2b", "name with spaces", int64(99), "application/pdf", uint8(4))
	const secret = "fuzz-secret-0123456789"
	now := time.Unix(1_800_000_000, 0)
	v, err := auth.NewVerifier([]string{secret}, auth.WithClock(func() time.Time { return now }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, dir, name string, size int64, ctype string, proto uint8) {
		p := auth.Protocols[int(proto)%len(auth.Protocols)]
		if p == auth.ProtoJWT && !(utf8.ValidString(dir) && utf8.ValidString(name)) {
			// JSON claims carry UTF-8 only (XMPP names always are UTF-8).
			return
		}
		segs := []string{name}
		if dir != "" {
			segs = append(segs, strings.Split(dir, "/")...)
		}
		for _, seg := range segs {
			if !safeSegment(seg) {
				// Names with control characters or backslashes, and
				// over-long ones, are refused by the gateway on purpose.
				return
			}
		}
		if size < 0 {
			size = -(size + 1)
		}
		var typ *string
		if ctype != "" {
			typ = &ctype
		}
		slot, err := auth.SignSlot(secret, auth.SignRequest{BaseURL: "https://upload.example/upload/", Dir: dir,
			Name: name, Size: size, Type: typ, Protocol: p, TTL: time.Hour, Now: now})
		if err != nil {
			return // the signer refused the name or directory
		}
		u, err := url.Parse(slot.PutURL)
		if err != nil {
			t.Fatalf("minted URL %q does not parse: %v", slot.PutURL, err)
		}
		sp, err := parseSlotPath(u, "/upload/")
		if err != nil {
			t.Fatalf("minted URL %q: %v", slot.PutURL, err)
		}
		if sp.Path != slot.Path {
			t.Fatalf("minted URL %q names %q, the signer signed %q", slot.PutURL, sp.Path, slot.Path)
		}
		if sp.Segments[len(sp.Segments)-1] != name {
			t.Fatalf("file name %q, want %q", sp.Segments[len(sp.Segments)-1], name)
		}
		req := auth.SlotRequest{Path: sp.Path, URLPath: sp.URLPath, Query: u.Query(), Authorization: slot.Authorization,
			Size: size, ContentType: typ}
		if _, err := v.Verify(req); err != nil {
			t.Fatalf("%s slot %q rejected: %v", p, slot.PutURL, err)
		}
	})
}

// FuzzMetadataRoundTrip: the Upload-Metadata the PUT door writes for a slot
// (its file name and type) reads back unchanged.
func FuzzMetadataRoundTrip(f *testing.F) {
	f.Add("photo.jpg", "image/jpeg", true)
	f.Add("a b,c", "", false)
	f.Add("Grüße 😀.txt", "text/plain; charset=utf-8", true)
	f.Add("", "x", true)
	f.Fuzz(func(t *testing.T, name, ctype string, withType bool) {
		meta := map[string]string{"filename": name}
		if withType {
			meta["filetype"] = ctype
		}
		got := handler.ParseMetadataHeader(handler.SerializeMetadataHeader(meta))
		if !maps.Equal(got, meta) {
			t.Fatalf("metadata %q reads back as %q", meta, got)
		}
		if mt := metadataType(got); withType != (mt != nil) || (mt != nil && *mt != ctype) {
			t.Fatalf("metadata type %v, want %q (present %v)", mt, ctype, withType)
		}
	})
}

// FuzzCreationHeaders sends tus creations with arbitrary Upload-Length,
// Upload-Metadata, Upload-Concat and Upload-Defer-Length to a valid slot: the
// gateway never fails with a 5xx, never creates a final upload from uploads
// that are not the slot's partials, and only hands out valid upload URLs.
func FuzzCreationHeaders(f *testing.F) {
	f.Add("100", "filename cGhvdG8uanBn,filetype aW1hZ2UvanBlZw==", "", "")
	f.Add("", "", "", "1")
	f.Add("5", "filesize NQ==", "partial", "")
	f.Add("", "", "final;/files/AAAAAAAAAAAAAAAAAAAAAA /files/BBBBBBBBBBBBBBBBBBBBBB", "")
	f.Add("", "", "final;http://x/files/../../etc/passwd", "")
	f.Add("", "", "final; ", "")
	f.Add("-1", "filetype", "partial", "0")
	f.Add("9223372036854775807", "filename ,,,", "final", "")
	f.Add("0", "filetype !!!", "", "")
	srv := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, length, metadata, concat, deferLength string) {
		slot, err := auth.SignSlot(fuzzSecret, auth.SignRequest{BaseURL: "http://example.com/upload/", Name: "f.bin", Protocol: auth.ProtoV3, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, slot.PutURL, nil)
		for k, v := range map[string]string{"Upload-Length": length, "Upload-Metadata": metadata, "Upload-Concat": concat, "Upload-Defer-Length": deferLength} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		req.Header.Set("Tus-Resumable", "1.0.0")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("creation answered %d: %s", res.StatusCode, rec.Body.String())
		}
		if res.StatusCode != http.StatusCreated {
			return
		}
		if strings.HasPrefix(concat, "final") {
			t.Fatalf("final upload from %q created", concat)
		}
		loc := res.Header.Get("Location")
		id, ok := strings.CutPrefix(loc, "http://example.com/files/")
		if !ok || !auth.ValidUploadID(id) {
			t.Fatalf("Location %q", loc)
		}
		if concat == "" && deferLength == "" {
			if n, err := strconv.ParseInt(length, 10, 64); err != nil || n < 0 {
				t.Fatalf("created with Upload-Length %q", length)
			}
		}
	})
}

const fuzzSecret = "fuzz-secret-gateway-0363"

// fuzzGateway is a gateway on a temporary disk store with in-memory sessions.
func fuzzGateway(f *testing.F) http.Handler {
	dir := f.TempDir()
	backend, err := storage.New(context.Background(), storage.Config{DataDir: dir})
	if err != nil {
		f.Fatal(err)
	}
	v, err := auth.NewVerifier([]string{fuzzSecret})
	if err != nil {
		f.Fatal(err)
	}
	gw, err := New(Config{
		Verifier: v, Sessions: auth.NewSessions(memstore.New(), auth.DefaultPolicy(), nil),
		Storage: backend, IDKey: []byte("0123456789abcdef0123456789abcdef"), LockTimeout: 300 * time.Millisecond,
		FailedChecksPerMinute: -1,
	})
	if err != nil {
		f.Fatal(err)
	}
	return gw.Handler()
}

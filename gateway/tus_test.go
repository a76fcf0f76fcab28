package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
)

func TestTusUploadThroughSlot(t *testing.T) {
	tg := newTestGateway(t)
	data := "hello, resumable world"
	slot := tg.sign(auth.ProtoV2, "greeting.txt", int64(len(data)), strp("text/plain"))
	res := tg.tusCreate(slot, int64(len(data)), map[string]string{"Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filetype": "text/plain"})})
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, tg.srv.URL+"/files/") {
		t.Fatalf("Location %q is not under the tus base", loc)
	}
	id := idOf(loc)
	if !auth.ValidUploadID(id) || strings.Contains(loc, "greeting") {
		t.Fatalf("upload ID %q must be an opaque ID", id)
	}
	if res.Header.Get("Upload-Expires") == "" {
		t.Error("creation response lacks Upload-Expires")
	}
	wantStatus(t, tg.patch(loc, 0, data[:5]), http.StatusNoContent)
	h := tg.head(loc)
	wantStatus(t, h, http.StatusOK)
	if h.Header.Get("Upload-Offset") != "5" || h.Header.Get("Upload-Expires") == "" {
		t.Fatalf("HEAD: offset %q, expires %q", h.Header.Get("Upload-Offset"), h.Header.Get("Upload-Expires"))
	}
	wantStatus(t, tg.patch(loc, 5, data[5:]), http.StatusNoContent)
	got, _ := tg.stored(id)
	if sha(got) != sha(data) {
		t.Fatalf("stored %q, want %q", got, data)
	}
}

func TestTusCreationRefusals(t *testing.T) {
	tg := newTestGateway(t)
	good := tg.sign(auth.ProtoV1, "a.bin", 10, nil)
	tampered := strings.Replace(good.PutURL, "v=", "v=0", 1)
	jwtSlot := tg.sign(auth.ProtoJWT, "b.bin", 10, nil)
	cases := []struct {
		name   string
		url    string
		header map[string]string
		want   int
	}{
		{"tampered signature", tampered, map[string]string{"Upload-Length": "10"}, http.StatusForbidden},
		{"size other than signed", good.PutURL, map[string]string{"Upload-Length": "11"}, http.StatusForbidden},
		{"no signature", good.GetURL, map[string]string{"Upload-Length": "10"}, http.StatusUnauthorized},
		{"missing length", good.PutURL, nil, http.StatusBadRequest},
		{"malformed bearer", jwtSlot.PutURL, map[string]string{"Upload-Length": "10", "Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"bearer larger than filesize", jwtSlot.PutURL, map[string]string{"Upload-Length": "11", "Authorization": jwtSlot.Authorization}, http.StatusRequestEntityTooLarge},
		{"encoded slash", strings.Replace(good.PutURL, "/a.bin", "%2Fa.bin", 1), map[string]string{"Upload-Length": "10"}, http.StatusBadRequest},
		{"dot segment", strings.Replace(good.PutURL, "/a.bin", "/%2e%2e/a.bin", 1), map[string]string{"Upload-Length": "10"}, http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{"Tus-Resumable": "1.0.0"}
			for k, v := range c.header {
				h[k] = v
			}
			res, body := tg.do(http.MethodPost, c.url, h, nil)
			if res.StatusCode != c.want {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, strings.TrimSpace(body), c.want)
			}
			if c.want == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
			if strings.Contains(body, testSecret) {
				t.Errorf("response leaks the secret")
			}
		})
	}
	if ids := tg.uploadFiles(); len(ids) != 0 {
		t.Fatalf("refused requests stored uploads: %v", ids)
	}
}

func TestTusMaxSize(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.MaxSize = 100 })
	slot := tg.sign(auth.ProtoV1, "big.bin", 101, nil)
	wantStatus(t, tg.tusCreate(slot, 101, nil), http.StatusRequestEntityTooLarge)
}

// A second creation for a slot converges on the first upload and never
// truncates what it holds (tusd's filestore would).
func TestTusRepeatedCreationConverges(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV2, "x.bin", 10, nil)
	first := tg.tusCreate(slot, 10, nil)
	wantStatus(t, first, http.StatusCreated)
	loc := first.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "01234"), http.StatusNoContent)

	second := tg.tusCreate(slot, 10, nil)
	wantStatus(t, second, http.StatusCreated)
	if second.Header.Get("Location") != loc || second.Header.Get("Upload-Offset") != "5" {
		t.Fatalf("second creation: Location %q offset %q; want %q and 5", second.Header.Get("Location"), second.Header.Get("Upload-Offset"), loc)
	}
	if got, _ := tg.stored(idOf(loc)); got != "01234" {
		t.Fatalf("stored %q after a second creation", got)
	}
}

func TestTusConcurrentCreationsConverge(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "race.bin", 4, nil)
	var wg sync.WaitGroup
	locs := make([]string, 20)
	codes := make([]int, 20)
	for i := range locs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := tg.tusCreate(slot, 4, nil)
			codes[i], locs[i] = res.StatusCode, res.Header.Get("Location")
		}()
	}
	wg.Wait()
	var loc string
	for i := range locs {
		switch codes[i] {
		case http.StatusCreated:
			if loc == "" {
				loc = locs[i]
			}
			if locs[i] != loc {
				t.Fatalf("two uploads for one slot: %q and %q", loc, locs[i])
			}
		case http.StatusConflict: // lost the race; a retry converges
		default:
			t.Fatalf("creation answered %d", codes[i])
		}
	}
	if ids := tg.uploadFiles(); len(ids) != 1 {
		t.Fatalf("%d uploads stored for one slot", len(ids))
	}
}

func TestTusUnknownOrInvalidIDsNeverReachTusd(t *testing.T) {
	tg := newTestGateway(t)
	other, _ := auth.NewRandomUploadID()
	for _, p := range []string{"/files/" + other, "/files/..%2F..%2Fid.key", "/files/abc", "/files/" + strings.ToUpper(other), "/files/" + other + "/x"} {
		for _, m := range []string{http.MethodHead, http.MethodPatch, http.MethodDelete} {
			res, _ := tg.do(m, tg.srv.URL+p, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, nil)
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", m, p, res.StatusCode)
			}
		}
	}
	// GET on an upload URL is no read path.
	res, _ := tg.do(http.MethodGet, tg.srv.URL+"/files/"+other, nil, nil)
	wantStatus(t, res, http.StatusMethodNotAllowed)
}

// tusd honours X-HTTP-Method-Override on POST: the gateway authorises the
// method tusd acts on, so a POST cannot become an unauthorised DELETE.
func TestMethodOverrideIsAuthorised(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "keep.bin", 3, nil)
	res := tg.tusCreate(slot, 3, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "abc"), http.StatusNoContent)

	forged, _ := tg.do(http.MethodPost, loc, map[string]string{"Tus-Resumable": "1.0.0", "X-HTTP-Method-Override": "DELETE"}, nil)
	if forged.StatusCode != http.StatusForbidden {
		t.Fatalf("POST with override DELETE on a complete upload: %d, want 403", forged.StatusCode)
	}
	if got, ok := tg.stored(idOf(loc)); !ok || got != "abc" {
		t.Fatalf("upload damaged: %q %v", got, ok)
	}
	stranger, _ := auth.NewRandomUploadID()
	forged, _ = tg.do(http.MethodPost, tg.srv.URL+"/files/"+stranger, map[string]string{"Tus-Resumable": "1.0.0", "X-HTTP-Method-Override": "PATCH"}, nil)
	wantStatus(t, forged, http.StatusNotFound)
}

// A lock that cannot be had in time is 423 (retried by tus-js-client), not
// tusd's 500 (which makes it restart from byte 0).
func TestLockContentionIs423(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "locked.bin", 3, nil)
	res := tg.tusCreate(slot, 3, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	lock, err := tg.backend.Lock(context.Background(), idOf(loc), func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	wantStatus(t, tg.head(loc), http.StatusLocked)
}

// A HEAD for an upload hands the lock over: an older PATCH whose client is
// gone is cut, keeps what it stored, and the HEAD answers promptly.
func TestHeadInterruptsStalledPatch(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "stall.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPatch, loc, pr)
	req.ContentLength = 10
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	done := make(chan int, 1)
	go func() {
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		r.Body.Close()
		done <- r.StatusCode
	}()
	if _, err := pw.Write([]byte("0123")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s, _ := tg.stored(idOf(loc)); return s == "0123" })
	h := tg.head(loc)
	wantStatus(t, h, http.StatusOK)
	if h.Header.Get("Upload-Offset") != "4" {
		t.Fatalf("offset after hand-off %q, want 4", h.Header.Get("Upload-Offset"))
	}
	pw.Close()
	// The cut PATCH's client, if it still reads, gets 423 (retried by
	// tus-js-client), never 400; usually it is gone (0).
	if code := <-done; code != http.StatusLocked && code != 0 {
		t.Fatalf("interrupted PATCH answered %d, want 423", code)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcatenationOnlyWithOwnPartials(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "joined.bin", 6, nil)
	meta := map[string]string{"Upload-Concat": "partial", "Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filesize": "6"})}
	var parts []string
	for _, chunk := range []string{"abc", "def"} {
		res := tg.tusCreate(slot, 3, meta)
		wantStatus(t, res, http.StatusCreated)
		loc := res.Header.Get("Location")
		wantStatus(t, tg.patch(loc, 0, chunk), http.StatusNoContent)
		parts = append(parts, loc)
	}
	// A partial of another slot must not be joined.
	otherSlot := tg.sign(auth.ProtoV1, "other.bin", 3, nil)
	res := tg.tusCreate(otherSlot, 3, map[string]string{"Upload-Concat": "partial", "Upload-Metadata": handler.SerializeMetadataHeader(map[string]string{"filesize": "3"})})
	wantStatus(t, res, http.StatusCreated)
	foreign := res.Header.Get("Location")
	wantStatus(t, tg.patch(foreign, 0, "xyz"), http.StatusNoContent)

	bad := []struct {
		concat string
		want   int
	}{
		{"final;" + parts[0] + " " + foreign, http.StatusForbidden},
		{"final;" + parts[0] + " /files/../../id.key", http.StatusBadRequest},
		{"final;", http.StatusBadRequest},
	}
	for _, b := range bad {
		res, _ := tg.do(http.MethodPost, slot.PutURL, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": b.concat}, nil)
		if res.StatusCode != b.want {
			t.Errorf("Upload-Concat %q: %d, want %d", b.concat, res.StatusCode, b.want)
		}
	}
	res, _ = tg.do(http.MethodPost, slot.PutURL, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": "final;" + parts[0] + " " + parts[1]}, nil)
	wantStatus(t, res, http.StatusCreated)
	if got, _ := tg.stored(idOf(res.Header.Get("Location"))); got != "abcdef" {
		t.Fatalf("final upload %q", got)
	}
}

func TestOptionsAnnouncesExpiration(t *testing.T) {
	tg := newTestGateway(t)
	res, _ := tg.do(http.MethodOptions, tg.srv.URL+"/files/", map[string]string{"Origin": "https://chat.example", "Access-Control-Request-Method": "PATCH"}, nil)
	if !strings.Contains(res.Header.Get("Tus-Extension"), "expiration") || !strings.Contains(res.Header.Get("Tus-Extension"), "concatenation") {
		t.Fatalf("Tus-Extension %q", res.Header.Get("Tus-Extension"))
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "https://chat.example" || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Upload-Offset") {
		t.Fatalf("preflight CORS headers missing: %v", res.Header)
	}
}

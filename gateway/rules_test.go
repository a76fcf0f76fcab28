package gateway

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// These tests hold the rule table (docs/security.md) against a slot holder
// who tries to break it. Stored bytes are read back by GET.

// rawRequest sends a request verbatim over a new connection and returns the
// status of the answer, how long it took, and whether the server closed the
// connection after it. send may write more after the head (a body that
// stalls); it runs concurrently with the read of the answer.
func rawRequest(t *testing.T, srvURL, head string, send func(net.Conn)) (status int, took time.Duration, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srvURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if send != nil {
		go send(conn)
	}
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	took = time.Since(start)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	return res.StatusCode, took, err == io.EOF
}

func hostOf(u string) string {
	return strings.SplitN(strings.TrimPrefix(u, "http://"), "/", 2)[0]
}

// do2 is do for callers that need only the answer's head.
func (tg *testGateway) do2(method, url string, header map[string]string, body io.Reader) *http.Response {
	tg.t.Helper()
	res, _ := tg.do(method, url, header, body)
	return res
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func pathOf(u string) string {
	rest := strings.TrimPrefix(u, "http://")
	return rest[strings.Index(rest, "/"):]
}

// chunkedHead is the head of a request whose body is chunked.
func chunkedHead(method, url string, header map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n", method, pathOf(url), hostOf(url))
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	return b.String()
}

// chunk is a chunked body of one chunk.
func chunk(data string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(data), data) }

// Rule 1: a complete upload is immutable. A re-bind never lands on a slot
// that has an upload of its own.
func TestRuleCompleteUploadIsImmutable(t *testing.T) {
	tg := newTestGateway(t)
	s1 := tg.sign(auth.ProtoV2, "s1.txt", 5, nil)
	res, _ := tg.put(s1.PutURL, "AAAAA", nil)
	wantStatus(t, res, http.StatusCreated)
	s2 := tg.sign(auth.ProtoV2, "s2.txt", 5, nil)
	res = tg.tusCreate(s2, 5, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "EV"), http.StatusNoContent)

	rb := tg.tusCreate(s1, 5, map[string]string{resumeFromHeader: loc})
	if rb.StatusCode != http.StatusConflict {
		t.Errorf("POST at a complete slot with %s: %d, want 409", resumeFromHeader, rb.StatusCode)
	}
	tg.patch(loc, 2, "IL!")
	put, _ := tg.put(s1.PutURL, "IL!", map[string]string{"Content-Range": "bytes 2-4/5", resumeFromHeader: s2.PutURL})
	if put.StatusCode != http.StatusConflict {
		t.Errorf("PUT at a complete slot with %s: %d, want 409", resumeFromHeader, put.StatusCode)
	}
	if get, body := tg.do(http.MethodGet, s1.GetURL, nil, nil); get.StatusCode != http.StatusOK || sha(body) != sha("AAAAA") {
		t.Fatalf("the complete file changed: %d %q", get.StatusCode, body)
	}
}

// Rule 2: every byte stored under a slot is bounded by its signed size.
func TestRuleSizeBoundsDeferredLength(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoJWT, "five.bin", 5, nil)
	res := tg.do2(http.MethodPost, slot.PutURL, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1", "Authorization": slot.Authorization,
	}, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("deferred creation: %d", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	big := strings.Repeat("x", 1000000)
	patch := tg.do2(http.MethodPatch, loc, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Upload-Length": "1000000", "Content-Type": "application/offset+octet-stream",
	}, strings.NewReader(big))
	if patch.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH declaring 1000000 bytes on a 5-byte slot: %d, want 413", patch.StatusCode)
	}
	// A PATCH without the declaration may carry the slot's size, no more.
	patch = tg.do2(http.MethodPatch, loc, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
	}, strings.NewReader(big))
	if patch.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH of 1000000 bytes on a deferred 5-byte slot: %d, want 413", patch.StatusCode)
	}
	if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode == http.StatusOK && len(body) > 5 {
		t.Fatalf("GET served %d bytes (status %d) of a 5-byte slot", len(body), get.StatusCode)
	}
}

func TestRuleSizeBoundsPartials(t *testing.T) {
	tg := newTestGateway(t)
	one := tg.sign(auth.ProtoV1, "one.bin", 1, nil)
	// v1 signs the size: a partial's slot check needs it (metadata filesize).
	withSize := func(n int64) map[string]string {
		return map[string]string{"Upload-Concat": "partial", "Upload-Metadata": "filesize " + b64(strconv.FormatInt(n, 10))}
	}
	if res := tg.tusCreate(one, 1099511627776, withSize(1)); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 1 TiB partial of a 1-byte slot: %d, want 413", res.StatusCode)
	}
	five := tg.sign(auth.ProtoV1, "five.bin", 5, nil)
	wantStatus(t, tg.tusCreate(five, 5, withSize(5)), http.StatusCreated)
	if res := tg.tusCreate(five, 5, withSize(5)); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("partials adding up to 10 bytes of a 5-byte slot: %d, want 413", res.StatusCode)
	}
	hundred := tg.sign(auth.ProtoV1, "hundred.bin", 100, nil)
	created := 0
	for range 40 {
		if tg.tusCreate(hundred, 1, withSize(100)).StatusCode == http.StatusCreated {
			created++
		}
	}
	if created != maxPartials {
		t.Errorf("%d partial uploads of one slot created, want at most %d", created, maxPartials)
	}
}

// A body longer than its bound is refused before the byte that would
// complete the upload is stored: a 4xx never leaves a complete file behind.
func TestRuleOverlongBodies(t *testing.T) {
	tg := newTestGateway(t)

	t.Run("chunked PUT", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "hello.txt", 5, nil)
		wantStatus(t, tg.tusCreate(slot, 5, map[string]string{"Upload-Metadata": "filetype " + b64("application/octet-stream")}), http.StatusCreated)
		status, _, _ := rawRequest(t, tg.srv.URL, chunkedHead(http.MethodPut, slot.PutURL, nil)+chunk("hello world!"), nil)
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked PUT of 12 bytes to a 5-byte upload: %d, want 413", status)
		}
		if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusNotFound {
			t.Fatalf("an overlong PUT left a complete file: %d %q", get.StatusCode, body)
		}
		res, _ := tg.put(slot.PutURL, "hello", nil)
		wantStatus(t, res, http.StatusCreated)
		if _, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); body != "hello" {
			t.Fatalf("after the genuine PUT: %q", body)
		}
	})

	t.Run("chunked PATCH", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "hello.txt", 5, nil)
		res := tg.tusCreate(slot, 5, nil)
		wantStatus(t, res, http.StatusCreated)
		loc := res.Header.Get("Location")
		status, _, _ := rawRequest(t, tg.srv.URL, chunkedHead(http.MethodPatch, loc, map[string]string{
			"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		})+chunk("hello world!"), nil)
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked PATCH of 12 bytes to a 5-byte upload: %d, want 413", status)
		}
		if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusNotFound {
			t.Fatalf("an overlong PATCH left a complete file: %d %q", get.StatusCode, body)
		}
	})

	t.Run("chunked PUT longer than its Content-Range", func(t *testing.T) {
		slot := tg.sign(auth.ProtoV2, "ten.bin", 10, nil)
		status, _, _ := rawRequest(t, tg.srv.URL, chunkedHead(http.MethodPut, slot.PutURL, map[string]string{
			"Content-Range": "bytes 0-4/10",
		})+chunk("0123456789"), nil)
		if status < 400 || status >= 500 {
			t.Errorf("chunked PUT of 10 bytes for bytes 0-4: %d, want 4xx", status)
		}
		h, _ := tg.do(http.MethodHead, slot.PutURL, nil, nil)
		if off, _ := strconv.Atoi(h.Header.Get("Upload-Offset")); off > 5 {
			t.Fatalf("%d bytes stored for a range of 5", off)
		}
		if get, _ := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusNotFound {
			t.Fatalf("GET after an overlong range: %d", get.StatusCode)
		}
	})
}

// Rule 5: a signature that verifies is never refused by the failure limiter,
// and every signature check counts its failures.
func TestRuleLimiterCountsFailuresOnly(t *testing.T) {
	tg := newTestGateway(t)
	for i := range 15 {
		forged := tg.sign(auth.ProtoV2, "f.bin", 3, nil)
		res, _ := tg.put(strings.Replace(forged.PutURL, "v2=", "v2=00", 1), "abc", nil)
		if res.StatusCode != http.StatusForbidden && res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("forged PUT %d: %d", i, res.StatusCode)
		}
	}
	genuine := tg.sign(auth.ProtoV2, "g.bin", 3, nil)
	if res, msg := tg.put(genuine.PutURL, "abc", nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("a genuine slot after forged ones from the same address: %d %s", res.StatusCode, msg)
	}

	t.Run("Upload-Resume-From", func(t *testing.T) {
		tg := newTestGateway(t)
		old := tg.sign(auth.ProtoV2, "r.bin", 3, nil)
		wantStatus(t, tg.tusCreate(old, 3, nil), http.StatusCreated)
		forged := strings.Replace(old.PutURL, "v2=", "v2=00", 1)
		limited := false
		for range 15 {
			fresh := tg.sign(auth.ProtoV2, "r.bin", 3, nil)
			if tg.tusCreate(fresh, 3, map[string]string{resumeFromHeader: forged}).StatusCode == http.StatusTooManyRequests {
				limited = true
			}
		}
		if !limited {
			t.Fatal("15 forged signatures in Upload-Resume-From were never limited")
		}
	})

	t.Run("OPTIONS", func(t *testing.T) {
		tg := newTestGateway(t)
		limited := false
		for range 15 {
			slot := tg.sign(auth.ProtoJWT, "o.bin", 3, nil)
			forged := slot.Authorization[:len(slot.Authorization)-2] + "AA"
			res, _ := tg.do(http.MethodOptions, slot.PutURL, map[string]string{draftVersionField: "6", "Authorization": forged}, nil)
			if res.StatusCode == http.StatusTooManyRequests {
				limited = true
			}
		}
		if !limited {
			t.Fatal("15 forged signatures checked by OPTIONS were never limited")
		}
	})
}

// Rule 6: every request is answered or closed within bounded time.
func TestRuleRefusalsDoNotWaitForTheBody(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV2, "stall.bin", 1000, nil)
	forged := strings.Replace(slot.PutURL, "v2=", "v2=00", 1)
	head := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n", pathOf(forged), hostOf(forged))
	status, took, closed := rawRequest(t, tg.srv.URL, head, nil)
	if status != http.StatusForbidden || took > 2*time.Second {
		t.Fatalf("forged PUT without its body: %d after %s", status, took)
	}
	if !closed {
		t.Fatal("the connection of a refused request with an unread body stayed open")
	}
}

func TestRuleBodyReadsObeyTheNetworkTimeout(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.NetworkTimeout = time.Second })
	done := tg.sign(auth.ProtoV2, "done.bin", 10, nil)
	res, _ := tg.put(done.PutURL, "0123456789", nil)
	wantStatus(t, res, http.StatusCreated)
	part := tg.sign(auth.ProtoV2, "part.bin", 10, nil)
	tg.interruptedPut(part, 10, "01234")
	for name, slot := range map[string]auth.SignedSlot{"complete slot": done, "full retry": part} {
		head := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 10\r\nContent-Type: application/octet-stream\r\n\r\nxx", pathOf(slot.PutURL), hostOf(slot.PutURL))
		status, took, _ := rawRequest(t, tg.srv.URL, head, nil)
		if took > 3*time.Second {
			t.Errorf("%s: a stalled body was answered (%d) after %s, network timeout 1s", name, status, took)
		}
	}
}

func TestRuleTusPatchTimeoutIs408(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.NetworkTimeout = time.Second })
	slot := tg.sign(auth.ProtoV2, "slow.bin", 10, nil)
	res := tg.tusCreate(slot, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	head := fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 10\r\n\r\nxx", pathOf(loc), hostOf(loc))
	status, _, _ := rawRequest(t, tg.srv.URL, head, nil)
	if status != http.StatusRequestTimeout {
		t.Fatalf("a tus PATCH whose body stalled: %d, want 408", status)
	}
}

// Rule 8: a header that tusd also parses is accepted only in the form tusd
// reads the same way.
func TestRuleConcatURLsAreReadAsTusdReadsThem(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV3, "c.bin", 3, nil)
	res := tg.tusCreate(slot, 3, map[string]string{"Upload-Concat": "partial"})
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "abc"), http.StatusNoContent)
	for _, v := range []string{
		"final;/files/../files/" + idOf(loc),
		"final;" + strings.Replace(loc, "/files/", "/files/../files/", 1),
		"final;" + loc + "/",
	} {
		h := map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": v}
		if got, _ := tg.do(http.MethodPost, slot.PutURL, h, nil); got.StatusCode != http.StatusBadRequest {
			t.Errorf("Upload-Concat %q: %d, want 400", v, got.StatusCode)
		}
	}
	h := map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": "final;" + loc}
	wantStatus(t, tg.do2(http.MethodPost, slot.PutURL, h, nil), http.StatusCreated)
	if _, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); body != "abc" {
		t.Fatalf("concatenated file %q", body)
	}
}

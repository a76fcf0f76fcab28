package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// End-to-end proofs of the upload sessions: once a slot has created an
// upload, its session, not the slot and not the client's address, authorises
// the rest of the upload; an ended session can be re-bound with a fresh slot.

func sessStrptr(s string) *string { return &s }

// TestSessionOutlivesSlot starts uploads with expiring slots (v3 and JWT)
// while they are valid and completes them after they expired: through the tus
// upload URL (HEAD + PATCH) and through the PUT door (HEAD at the slot URL,
// then a Content-Range PUT at the expired slot URL).
func TestSessionOutlivesSlot(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 3*MiB + 123
	const half = size / 2
	c := &http.Client{Timeout: 60 * time.Second}

	t.Run("uploads", func(t *testing.T) {
		for _, proto := range []auth.Protocol{auth.ProtoV3, auth.ProtoJWT} {
			ctype := "" // v3 signs no type
			if proto == auth.ProtoJWT {
				ctype = "image/png"
			}
			var typ *string
			if ctype != "" {
				typ = sessStrptr(ctype)
			}

			t.Run("tus-"+string(proto), func(t *testing.T) {
				t.Parallel()
				data, sum := sessRandomBytes(t, size)
				name := "tus-" + string(proto) + ".bin"
				sl, expiredAt := sessExpiringSlot(t, s, proto, name, size, typ, 4*time.Second)
				control, _ := sessExpiringSlot(t, s, proto, "control-"+name, size, typ, 4*time.Second)

				created := sessCreate(t, c, sl, name, size, ctype)
				sessMustStatus(t, "creation while the slot is valid", created, http.StatusCreated)
				loc := created.Header.Get("Location")
				sessMustStatus(t, "PATCH of the first half", sessPatch(t, c, loc, 0, data[:half]), http.StatusNoContent)

				time.Sleep(time.Until(expiredAt))
				// The slot really is expired: a creation with a slot of the same
				// expiry is refused.
				sessMustStatus(t, "creation with an expired slot", sessCreate(t, c, control, "control-"+name, size, ctype), http.StatusForbidden)

				head := sessHead(t, c, loc, "")
				sessMustStatus(t, "HEAD on the upload URL after the slot expired", head, http.StatusOK)
				if head.offset(t) != half {
					t.Fatalf("HEAD after the slot expired: %s; want Upload-Offset %d", head, half)
				}
				if head.Header.Get("Upload-Expires") == "" {
					t.Errorf("HEAD on a live upload has no Upload-Expires header")
				}
				done := sessPatch(t, c, loc, half, data[half:])
				sessMustStatus(t, "PATCH of the rest after the slot expired", done, http.StatusNoContent)
				if done.offset(t) != size {
					t.Errorf("last PATCH: %s; want Upload-Offset %d", done, size)
				}
				sessCheckStored(t, s, loc, size, sum)
				sessCheckDownload(t, sl.GetURL, size, sum, ctype)
			})

			t.Run("put-"+string(proto), func(t *testing.T) {
				t.Parallel()
				data, sum := sessRandomBytes(t, size)
				name := "put-" + string(proto) + ".bin"
				sl, expiredAt := sessExpiringSlot(t, s, proto, name, size, typ, 4*time.Second)
				control, _ := sessExpiringSlot(t, s, proto, "control-"+name, size, typ, 4*time.Second)
				contentType := ctype
				if contentType == "" {
					contentType = "application/octet-stream"
				}
				slotHeader := sessHeader("Content-Type", contentType, "Authorization", sl.Authorization)

				// The network goes away after half of the body.
				status := sessCutPut(t, sl.PutURL, slotHeader, size, data[:half])
				t.Logf("cut PUT answered %q", status)
				sessWaitOffset(t, c, sl.PutURL, sl.Authorization, half)

				time.Sleep(time.Until(expiredAt))
				// The slot really is expired: a PUT with a slot of the same expiry
				// is refused (before its body is sent).
				put := sessSend(t, c, http.MethodPut, control.PutURL, sessHeader("Content-Type", contentType,
					"Authorization", control.Authorization, "Expect", "100-continue"), data)
				sessMustStatus(t, "PUT with an expired slot", put, http.StatusForbidden)

				head := sessHead(t, c, sl.PutURL, sl.Authorization)
				sessMustStatus(t, "HEAD on the expired slot URL", head, http.StatusOK)
				if head.offset(t) != half || head.Header.Get("Range") != fmt.Sprintf("bytes=0-%d", half-1) {
					t.Fatalf("HEAD on the expired slot URL: %s, Range %q; want Upload-Offset %d, Range bytes=0-%d",
						head, head.Header.Get("Range"), half, half-1)
				}
				rest := slotHeader.Clone()
				rest.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, size-1, size))
				put = sessSend(t, c, http.MethodPut, sl.PutURL, rest, data[half:])
				sessMustStatus(t, "Content-Range PUT at the expired slot URL", put, http.StatusCreated)
				sessCheckDownload(t, sl.GetURL, size, sum, ctype)
			})
		}
	})

	if v, _ := s.sessMetric(t, `uploadgate_session_accepts_total{door="put"}`); v < 2 {
		t.Errorf(`uploadgate_session_accepts_total{door="put"} = %v; want >= 2 (two PUTs with expired slots)`, v)
	}
}

// TestSessionAddressChange moves a client to another source address in the
// middle of an upload (WiFi to 5G): the upload completes, and the change is
// counted, not refused.
func TestSessionAddressChange(t *testing.T) {
	t.Parallel()
	const size = 2*MiB + 99
	const half = size / 2
	const changes = "uploadgate_client_address_changes_total"

	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		wifi, mobile := sessClientFrom(t, "127.0.0.2"), sessClientFrom(t, "127.0.0.3")
		data, sum := sessRandomBytes(t, size)
		sl := s.sign(t, "v2", "roaming.bin", size, "")

		created := sessCreate(t, wifi, sl, "roaming.bin", size, "")
		sessMustStatus(t, "creation from 127.0.0.2", created, http.StatusCreated)
		loc := created.Header.Get("Location")
		sessMustStatus(t, "PATCH from 127.0.0.2", sessPatch(t, wifi, loc, 0, data[:half]), http.StatusNoContent)
		if v, ok := s.sessMetric(t, changes); !ok || v != 0 {
			t.Fatalf("%s = %v (present %v) before the switch; want 0", changes, v, ok)
		}

		head := sessHead(t, mobile, loc, "")
		sessMustStatus(t, "HEAD from 127.0.0.3", head, http.StatusOK)
		if head.offset(t) != half {
			t.Fatalf("HEAD from the new address: %s; want Upload-Offset %d", head, half)
		}
		sessMustStatus(t, "PATCH from 127.0.0.3", sessPatch(t, mobile, loc, half, data[half:]), http.StatusNoContent)
		sessCheckStored(t, s, loc, size, sum)
		sessCheckDownload(t, sl.GetURL, size, sum, "")
		if v, _ := s.sessMetric(t, changes); v != 1 {
			t.Errorf("%s = %v after one switch from 127.0.0.2 to 127.0.0.3; want 1", changes, v)
		}
	})

	// Behind a trusted proxy the client is the X-Forwarded-For address; an
	// untrusted peer's X-Forwarded-For is not believed.
	t.Run("behind-proxy", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--trusted-proxies", "127.0.0.2")
		proxy, direct := sessClientFrom(t, "127.0.0.2"), sessClientFrom(t, "127.0.0.3")
		data, sum := sessRandomBytes(t, size)
		sl := s.sign(t, "v2", "proxied.bin", size, "")

		created := sessCreate(t, proxy, sl, "proxied.bin", size, "", "X-Forwarded-For", "198.51.100.1")
		sessMustStatus(t, "creation for 198.51.100.1", created, http.StatusCreated)
		loc := created.Header.Get("Location")
		sessMustStatus(t, "PATCH for 198.51.100.1", sessPatch(t, proxy, loc, 0, data[:half/2], "X-Forwarded-For", "198.51.100.1"), http.StatusNoContent)
		if v, _ := s.sessMetric(t, changes); v != 0 {
			t.Fatalf("%s = %v before any switch; want 0", changes, v)
		}
		sessMustStatus(t, "PATCH for 198.51.100.2", sessPatch(t, proxy, loc, half/2, data[half/2:half], "X-Forwarded-For", "198.51.100.2"), http.StatusNoContent)
		if v, _ := s.sessMetric(t, changes); v != 1 {
			t.Fatalf("%s = %v after the proxied client moved to 198.51.100.2; want 1", changes, v)
		}
		// Not from the proxy: the peer 127.0.0.3 is the client, whatever its
		// X-Forwarded-For says.
		sessMustStatus(t, "PATCH from 127.0.0.3", sessPatch(t, direct, loc, half, data[half:], "X-Forwarded-For", "198.51.100.2"), http.StatusNoContent)
		if v, _ := s.sessMetric(t, changes); v != 2 {
			t.Errorf("%s = %v after a request from the untrusted peer 127.0.0.3 claiming 198.51.100.2; want 2", changes, v)
		}
		sessCheckStored(t, s, loc, size, sum)
		sessCheckDownload(t, sl.GetURL, size, sum, "")
	})
}

// TestSessionSurvivesKill kills the gateway with SIGKILL while a PATCH is
// streaming, restarts it on the same data directory and port, and completes
// the upload after its slot has expired: upload sessions, offsets and keys
// are on disk, not in the process.
func TestSessionSurvivesKill(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 6 * MiB
	const sent = 1*MiB + 4321
	c := &http.Client{Timeout: 60 * time.Second}
	data, sum := sessRandomBytes(t, size)
	sl, expiredAt := sessExpiringSlot(t, s, auth.ProtoV3, "killed.bin", size, nil, 4*time.Second)
	control, _ := sessExpiringSlot(t, s, auth.ProtoV3, "control.bin", size, nil, 4*time.Second)

	created := sessCreate(t, c, sl, "killed.bin", size, "")
	sessMustStatus(t, "creation", created, http.StatusCreated)
	loc := created.Header.Get("Location")
	id := uploadID(t, loc)

	// A PATCH for the whole file sends its first bytes, then stalls: it is
	// in flight when the gateway dies.
	body := newSessSlowBody(data[:sent], sent, 0, true)
	patch := sessStartPatch(c, loc, 0, size, body.pr)
	s.sessWaitStored(t, id, sent)
	s.sessKill(t)
	// The client notices the dead connection once its body ends.
	body.stop()
	select {
	case res := <-patch:
		if res.err == nil {
			t.Fatalf("the stalled PATCH was answered %s; want it cut off by the kill", res.a)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the PATCH in flight did not end within 15s of the SIGKILL")
	}

	s2 := sessRestart(t, s)
	time.Sleep(time.Until(expiredAt))
	sessMustStatus(t, "creation with an expired slot after the restart", sessCreate(t, c, control, "control.bin", size, ""), http.StatusForbidden)

	head := sessHead(t, c, loc, "")
	sessMustStatus(t, "HEAD on the upload URL after the restart", head, http.StatusOK)
	if head.offset(t) != sent {
		t.Fatalf("HEAD on the upload URL after the restart: %s; want Upload-Offset %d (the bytes on disk at the kill)", head, sent)
	}
	head = sessHead(t, c, sl.PutURL, "")
	sessMustStatus(t, "HEAD on the expired slot URL after the restart", head, http.StatusOK)
	if head.offset(t) != sent {
		t.Fatalf("HEAD on the slot URL after the restart: %s; want Upload-Offset %d", head, sent)
	}
	done := sessPatch(t, c, loc, sent, data[sent:])
	sessMustStatus(t, "PATCH of the rest after the restart", done, http.StatusNoContent)
	if done.offset(t) != size {
		t.Errorf("last PATCH: %s; want Upload-Offset %d", done, size)
	}
	sessCheckStored(t, s2, loc, size, sum)
	sessCheckDownload(t, sl.GetURL, size, sum, "")
}

// TestSessionHeadStorm sends 50 concurrent HEADs to an upload URL (and 10 to
// its slot URL) while a slow PATCH is writing it. A live session's HEAD is
// never refused: only 200, or 423 (busy, retry). The upload completes
// afterwards, resumed where it stands if the lock hand-off cut the PATCH.
func TestSessionHeadStorm(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 8 * MiB
	c := &http.Client{Timeout: 60 * time.Second}
	data, sum := sessRandomBytes(t, size)
	sl := s.sign(t, "v2", "storm.bin", size, "")
	created := sessCreate(t, c, sl, "storm.bin", size, "")
	sessMustStatus(t, "creation", created, http.StatusCreated)
	loc := created.Header.Get("Location")

	body := newSessSlowBody(data, 64*KiB, 20*time.Millisecond, false) // about 3 MB/s
	defer body.stop()
	patch := sessStartPatch(c, loc, 0, size, body.pr)
	s.sessWaitStored(t, uploadID(t, loc), 512*KiB)

	type headResult struct {
		target string
		a      sessAnswer
		err    error
	}
	const uploadHeads, slotHeads = 50, 10
	results := make([]headResult, uploadHeads+slotHeads)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		target := loc
		if i >= uploadHeads {
			target = sl.PutURL
		}
		wg.Go(func() {
			<-start
			a, err := sessTrySend(c, http.MethodHead, target, sessHeader("Tus-Resumable", "1.0.0"), nil)
			results[i] = headResult{target, a, err}
		})
	}
	close(start)
	wg.Wait()

	counts := map[int]int{}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("HEAD %d (%s): %v", i, r.target, r.err)
			continue
		}
		counts[r.a.Status]++
		switch r.a.Status {
		case http.StatusOK:
			if off := r.a.offset(t); off < 0 || off > size {
				t.Errorf("HEAD %d (%s): %s; want an Upload-Offset within 0..%d", i, r.target, r.a, size)
			}
		case http.StatusLocked:
			if r.a.Header.Get("Retry-After") == "" {
				t.Errorf("HEAD %d (%s): 423 without Retry-After", i, r.target)
			}
		default:
			t.Errorf("HEAD %d (%s) during a PATCH: %s; want 200 or 423", i, r.target, r.a)
		}
	}
	t.Logf("HEAD answers during the PATCH: %v", counts)
	if counts[http.StatusOK] == 0 {
		t.Errorf("no HEAD during the PATCH was answered 200 (answers %v)", counts)
	}

	select {
	case res := <-patch:
		if res.err != nil {
			t.Logf("the PATCH ended with %v", res.err)
		} else {
			t.Logf("the PATCH was answered %s", res.a)
			if res.a.Status >= 500 {
				t.Errorf("the PATCH during the HEADs was answered %s; want no 5xx", res.a)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the PATCH did not end within 30s of the HEADs")
	}
	body.stop()

	off := settledOffset(t, loc)
	if off < 512*KiB || off > size {
		t.Fatalf("after the PATCH the upload stands at %d; want %d..%d", off, 512*KiB, size)
	}
	if off < size {
		t.Logf("the PATCH was cut at %d bytes; resuming", off)
		sessMustStatus(t, "PATCH of the rest", sessPatch(t, c, loc, off, data[off:]), http.StatusNoContent)
	}
	sessCheckStored(t, s, loc, size, sum)
	sessCheckDownload(t, sl.GetURL, size, sum, "")
}

// TestSessionRebind lets upload sessions end (short TTLs) half-way and
// continues the uploads with fresh slots (Upload-Resume-From): through a tus
// creation and through a Content-Range PUT. The fresh slots are for the same
// file name (in another slot directory); slots of another size or type, and
// tampered upload URLs, are refused.
func TestSessionRebind(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--session-idle-ttl", "3s", "--session-max-ttl", "4s")
	const size = 2*MiB + 7
	const half = size / 2
	const ctype = "application/pdf"
	c := &http.Client{Timeout: 60 * time.Second}

	// startHalf creates an upload, sends its first half and waits until its
	// session has ended (HEAD answers 410).
	startHalf := func(t *testing.T, name string, data []byte) string {
		t.Helper()
		sl := s.sign(t, "v2", name, size, ctype)
		created := sessCreate(t, c, sl, name, size, ctype)
		sessMustStatus(t, "creation", created, http.StatusCreated)
		loc := created.Header.Get("Location")
		sessMustStatus(t, "PATCH of the first half", sessPatch(t, c, loc, 0, data[:half]), http.StatusNoContent)
		began := time.Now()
		deadline := began.Add(15 * time.Second)
		for {
			head := sessHead(t, c, loc, "")
			if head.Status == http.StatusGone {
				t.Logf("the session ended %v after the first half", time.Since(began).Round(10*time.Millisecond))
				break
			}
			if head.Status != http.StatusOK || time.Now().After(deadline) {
				t.Fatalf("HEAD while waiting for the session to end: %s; want 200 until 410 (within 15s)", head)
			}
			time.Sleep(100 * time.Millisecond)
		}
		sessMustStatus(t, "PATCH after the session ended", sessPatch(t, c, loc, half, data[half:]), http.StatusGone)
		return loc
	}

	// refusals checks the re-binds that must fail while the upload is incomplete.
	refusals := func(t *testing.T, name, loc string) {
		t.Helper()
		bigger := s.sign(t, "v2", name, size+1, ctype)
		a := sessCreate(t, c, bigger, name, size+1, ctype, "Upload-Resume-From", loc)
		sessMustStatus(t, "re-bind with a slot of another size", a, http.StatusConflict)

		other := s.sign(t, "v2", name, size, "image/png")
		a = sessCreate(t, c, other, name, size, "image/png", "Upload-Resume-From", loc)
		sessMustStatus(t, "re-bind with a slot of another type", a, http.StatusConflict)

		id := uploadID(t, loc)
		flip := "A"
		if id[len(id)-1] == 'A' {
			flip = "B"
		}
		tampered := strings.TrimSuffix(loc, id) + id[:len(id)-1] + flip
		fresh := s.sign(t, "v2", "tampered-"+name, size, ctype)
		a = sessCreate(t, c, fresh, "tampered-"+name, size, ctype, "Upload-Resume-From", tampered)
		if a.Status != http.StatusNotFound && a.Status != http.StatusBadRequest {
			t.Errorf("re-bind of a tampered upload URL: %s; want 404 or 400", a)
		}
		a = sessCreate(t, c, fresh, "tampered-"+name, size, ctype, "Upload-Resume-From", loc+"/../x")
		if a.Status != http.StatusNotFound && a.Status != http.StatusBadRequest {
			t.Errorf("re-bind of a malformed upload URL: %s; want 404 or 400", a)
		}
	}

	// afterComplete checks that a complete upload is not re-bound again.
	afterComplete := func(t *testing.T, name, loc string) {
		t.Helper()
		again := s.sign(t, "v2", name, size, ctype)
		a := sessCreate(t, c, again, name, size, ctype, "Upload-Resume-From", loc)
		sessMustStatus(t, "re-bind of a complete upload", a, http.StatusConflict)
	}

	t.Run("rebinds", func(t *testing.T) {
		t.Run("tus", func(t *testing.T) {
			t.Parallel()
			data, sum := sessRandomBytes(t, size)
			loc := startHalf(t, "tus.pdf", data)
			refusals(t, "tus.pdf", loc)

			fresh := s.sign(t, "v2", "tus.pdf", size, ctype)
			a := sessCreate(t, c, fresh, "tus.pdf", size, ctype, "Upload-Resume-From", loc)
			sessMustStatus(t, "re-bind with a fresh slot", a, http.StatusCreated)
			if got := a.Header.Get("Location"); got != loc || a.offset(t) != half {
				t.Fatalf("re-bind: Location %q, Upload-Offset %d; want the old upload %q at %d", got, a.offset(t), loc, half)
			}
			// A retry of the re-bind (its answer was lost) converges.
			a = sessCreate(t, c, fresh, "tus.pdf", size, ctype, "Upload-Resume-From", loc)
			sessMustStatus(t, "repeated re-bind", a, http.StatusCreated)
			if got := a.Header.Get("Location"); got != loc || a.offset(t) != half {
				t.Fatalf("repeated re-bind: Location %q, Upload-Offset %d; want %q at %d", got, a.offset(t), loc, half)
			}
			done := sessPatch(t, c, loc, half, data[half:])
			sessMustStatus(t, "PATCH of the rest after the re-bind", done, http.StatusNoContent)
			sessCheckStored(t, s, loc, size, sum)
			sessCheckDownload(t, fresh.GetURL, size, sum, ctype)
			afterComplete(t, "tus.pdf", loc)
		})

		t.Run("put", func(t *testing.T) {
			t.Parallel()
			data, sum := sessRandomBytes(t, size)
			loc := startHalf(t, "put.pdf", data)

			bigger := s.sign(t, "v2", "put.pdf", size+1, ctype)
			a := sessSend(t, c, http.MethodPut, bigger.PutURL, sessHeader("Content-Type", ctype, "Upload-Resume-From", loc,
				"Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, size, size+1)), append(append([]byte(nil), data[half:]...), 'x'))
			sessMustStatus(t, "PUT re-bind with a slot of another size", a, http.StatusConflict)

			fresh := s.sign(t, "v2", "put.pdf", size, ctype)
			a = sessSend(t, c, http.MethodPut, fresh.PutURL, sessHeader("Content-Type", ctype, "Upload-Resume-From", loc,
				"Content-Range", fmt.Sprintf("bytes %d-%d/%d", half, size-1, size)), data[half:])
			sessMustStatus(t, "Content-Range PUT re-binding with a fresh slot", a, http.StatusCreated)
			sessCheckStored(t, s, loc, size, sum)
			sessCheckDownload(t, fresh.GetURL, size, sum, ctype)
			afterComplete(t, "put.pdf", loc)
		})
	})

	if v, _ := s.sessMetric(t, "uploadgate_rebinds_total"); v < 2 {
		t.Errorf("uploadgate_rebinds_total = %v; want >= 2", v)
	}
}

// TestSessionFailureLimit: an address whose slot checks failed 11 times in a
// minute gets 429 with Retry-After for its further failures, while a valid new
// slot and the live session of its upload keep working; another address is
// not affected.
func TestSessionFailureLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const size = 1*MiB + 3
	const half = size / 2
	client, other := sessClientFrom(t, "127.0.0.2"), sessClientFrom(t, "127.0.0.3")
	data, sum := sessRandomBytes(t, size)
	sl := s.sign(t, "v2", "limited.bin", size, "")
	created := sessCreate(t, client, sl, "limited.bin", size, "")
	sessMustStatus(t, "creation", created, http.StatusCreated)
	loc := created.Header.Get("Location")
	sessMustStatus(t, "PATCH of the first half", sessPatch(t, client, loc, 0, data[:half]), http.StatusNoContent)

	const small = 10
	victim := s.sign(t, "v2", "victim.bin", small, "")
	forged := slot{PutURL: sessForge(t, victim.PutURL)}
	payload := []byte("0123456789")
	for i := 1; i <= 10; i++ {
		var a sessAnswer
		if i%2 == 1 {
			a = sessCreate(t, client, forged, "victim.bin", small, "")
		} else {
			a = sessSend(t, client, http.MethodPut, forged.PutURL, nil, payload)
		}
		sessMustStatus(t, fmt.Sprintf("forged slot, attempt %d", i), a, http.StatusForbidden)
	}
	a := sessSend(t, client, http.MethodPut, forged.PutURL, nil, payload)
	sessMustStatus(t, "forged slot, attempt 11", a, http.StatusTooManyRequests)
	if ra, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("429: Retry-After %q; want 1..60 seconds", a.Header.Get("Retry-After"))
	}
	// Only failures are limited: a valid slot from the blocked address goes
	// through (genuine clients behind the same NAT keep working), while the
	// next forged one is still refused.
	fresh := s.sign(t, "v2", "fresh.bin", small, "")
	sessMustStatus(t, "a valid new slot from the blocked address", sessCreate(t, client, fresh, "fresh.bin", small, ""), http.StatusCreated)
	sessMustStatus(t, "forged slot, attempt 12", sessSend(t, client, http.MethodPut, forged.PutURL, nil, payload), http.StatusTooManyRequests)
	// The limit is per address.
	sessMustStatus(t, "forged slot from another address", sessSend(t, other, http.MethodPut, forged.PutURL, nil, payload), http.StatusForbidden)

	// The live session's requests from the blocked address go through.
	head := sessHead(t, client, loc, "")
	sessMustStatus(t, "HEAD on the upload URL from the blocked address", head, http.StatusOK)
	if head.offset(t) != half {
		t.Fatalf("HEAD: %s; want Upload-Offset %d", head, half)
	}
	head = sessHead(t, client, sl.PutURL, "")
	sessMustStatus(t, "HEAD on the signed slot URL from the blocked address", head, http.StatusOK)
	if head.offset(t) != half {
		t.Fatalf("HEAD on the slot URL: %s; want Upload-Offset %d", head, half)
	}
	again := sessCreate(t, client, sl, "limited.bin", size, "")
	sessMustStatus(t, "creation again at the live upload's slot from the blocked address", again, http.StatusCreated)
	if again.Header.Get("Location") != loc || again.offset(t) != half {
		t.Errorf("creation again: %s, Location %q; want %q at %d", again, again.Header.Get("Location"), loc, half)
	}
	sessMustStatus(t, "PATCH of the rest from the blocked address", sessPatch(t, client, loc, half, data[half:]), http.StatusNoContent)
	sessCheckStored(t, s, loc, size, sum)
	sessCheckDownload(t, sl.GetURL, size, sum, "")
}

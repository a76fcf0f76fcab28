package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// TestHostile plays a client that holds valid slots and uses them against
// other uploads or against the gateway itself. The rules it checks:
//
//  1. a complete upload is immutable;
//  2. every byte stored under a slot is bounded by its signed size;
//  3. a re-bind moves an incomplete upload to a fresh slot that signs the
//     same file (same name, size, type, JWT sub) and has no upload of its
//     own; the old slot's PUT/HEAD and GET URLs then answer 404 or 410;
//  4. one upload, one body;
//  5. a signature that verifies is never refused by the failure limiter, and
//     every signature check counts its failures;
//  6. every request is answered or closed within bounded time.
//
// Every check of stored bytes downloads the file at the slot's GET URL and
// compares its SHA-256.
func TestHostile(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// Subtests that need a gateway of their own (short session TTLs, a short
	// network timeout, a fresh failure limiter).
	t.Run("takeover-after-expiry", func(t *testing.T) {
		t.Parallel()
		hostileTakeover(t)
	})
	t.Run("limiter", func(t *testing.T) {
		t.Parallel()
		hostileLimiter(t)
	})
	t.Run("stalled-bodies", func(t *testing.T) {
		t.Parallel()
		hostileStalled(t)
	})

	// Subtests sharing the gateway s; genuine-after-hostile runs on it once
	// they have all ended.
	t.Run("shared", func(t *testing.T) {
		t.Run("replace-complete-via-resume-from", func(t *testing.T) {
			t.Parallel()
			hostileReplaceComplete(t, s)
		})
		t.Run("mixed-bodies", func(t *testing.T) {
			t.Parallel()
			hostileMixedBodies(t, s)
		})
		t.Run("defer-length-bound", func(t *testing.T) {
			t.Parallel()
			hostileDeferLength(t, s)
		})
		t.Run("partials-bound", func(t *testing.T) {
			t.Parallel()
			hostilePartials(t, s)
		})
		t.Run("overlong-bodies", func(t *testing.T) {
			t.Parallel()
			hostileOverlong(t, s)
		})
		t.Run("range-flood", func(t *testing.T) {
			t.Parallel()
			hostileRangeFlood(t, s)
		})
		t.Run("concat-path", func(t *testing.T) {
			t.Parallel()
			hostileConcatPath(t, s)
		})
	})
	t.Run("genuine-after-hostile", func(t *testing.T) {
		hostileGenuine(t, s)
	})
}

// hosTimeout bounds every request of these tests.
const hosTimeout = 20 * time.Second

func hosClient() *http.Client {
	return &http.Client{Timeout: hosTimeout}
}

// hosSlot mints a slot with a random directory, of the default type.
func hosSlot(t testing.TB, s *server, proto auth.Protocol, name string, size int64) slot {
	t.Helper()
	return sessMintSlot(t, s, proto, name, size, nil, 0, time.Time{})
}

// hosSum is the hex SHA-256 of b.
func hosSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hosMustServe downloads getURL and requires exactly want (SHA-256).
func hosMustServe(t testing.TB, what, getURL string, want []byte) {
	t.Helper()
	resp, got, n := download(t, getURL)
	if resp.StatusCode != http.StatusOK || got != hosSum(want) || n != int64(len(want)) {
		t.Errorf("%s: GET %s: %d, %d bytes, SHA-256 %s; want 200 with %d bytes, SHA-256 %s (%q)",
			what, getURL, resp.StatusCode, n, got, len(want), hosSum(want), hosShort(want))
	}
}

// hosMustNotServe downloads getURL and requires 404 or 410.
func hosMustNotServe(t testing.TB, what, getURL string) {
	t.Helper()
	a := hosGet(t, getURL, nil)
	if a.Status != http.StatusNotFound && a.Status != http.StatusGone {
		t.Errorf("%s: GET %s: %d with %d bytes (%q); want 404 or 410", what, getURL, a.Status, len(a.Body), hosShort([]byte(a.Body)))
	}
}

// hosGet GETs u with the headers h and reads at most 1 MiB of the body.
func hosGet(t testing.TB, u string, h http.Header) sessAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := hosClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MiB))
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", u, err)
	}
	return sessAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func hosShort(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…"
	}
	return string(b)
}

// hosIs4xx reports whether an answer is a client error.
func hosIs4xx(status int) bool { return status >= 400 && status < 500 }

// hosMeta is an Upload-Metadata value of name/value pairs.
func hosMeta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

// hosPut PUTs body to a slot URL with the slot's Authorization and the extra
// header name/value pairs; a nil body is sent as an empty one.
func hosPut(t testing.TB, sl slot, body []byte, extra ...string) sessAnswer {
	t.Helper()
	h := sessHeader(append([]string{"Authorization", sl.Authorization}, extra...)...)
	if body == nil {
		body = []byte{}
	}
	return sessSend(t, hosClient(), http.MethodPut, sl.PutURL, h, body)
}

// hosChunked sends body with Transfer-Encoding: chunked (no Content-Length).
// A transport error (the gateway may close the connection before reading all
// of it) is returned, not fatal.
func hosChunked(method, u string, h http.Header, body []byte) (sessAnswer, error) {
	req, err := http.NewRequest(method, u, io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		return sessAnswer{}, err
	}
	req.ContentLength = -1
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := hosClient().Do(req)
	if err != nil {
		return sessAnswer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64*KiB))
	return sessAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// hosCreated requires a 201 with a Location and returns the Location.
func hosCreated(t testing.TB, what string, a sessAnswer) string {
	t.Helper()
	sessMustStatus(t, what, a, http.StatusCreated)
	loc := a.Header.Get("Location")
	if loc == "" {
		t.Fatalf("%s: 201 without Location", what)
	}
	return loc
}

// ---------------------------------------------------------------------------
// a. replace-complete-via-resume-from

func hostileReplaceComplete(t *testing.T, s *server) {
	c := hosClient()
	good := []byte("AAAAA")

	// setup: the victim's complete 5-byte file and the attacker's incomplete
	// upload "EV" of another 5-byte file.
	setup := func(t *testing.T) (victim, mine slot, loc string) {
		t.Helper()
		victim = hosSlot(t, s, auth.ProtoV2, "victim.txt", 5)
		sessMustStatus(t, "PUT of the victim's file", hosPut(t, victim, good), http.StatusCreated)
		hosMustServe(t, "the victim's file", victim.GetURL, good)
		mine = hosSlot(t, s, auth.ProtoV2, "mine.txt", 5)
		loc = hosCreated(t, "creation of the attacker's upload", sessCreate(t, c, mine, "mine.txt", 5, ""))
		sessMustStatus(t, "PATCH EV", sessPatch(t, c, loc, 0, []byte("EV")), http.StatusNoContent)
		return victim, mine, loc
	}

	t.Run("tus", func(t *testing.T) {
		victim, _, loc := setup(t)
		a := sessCreate(t, c, victim, "victim.txt", 5, "", "Upload-Resume-From", loc)
		if !hosIs4xx(a.Status) {
			t.Errorf("tus creation at the complete slot with Upload-Resume-From of another upload: %s, Location %q; want 4xx (409)",
				a, a.Header.Get("Location"))
		}
		p := sessPatch(t, c, loc, 2, []byte("IL!"))
		t.Logf("PATCH IL! at offset 2 of the attacker's own upload: %s", p)
		hosMustServe(t, "the victim's complete file after the attack", victim.GetURL, good)
	})

	t.Run("put", func(t *testing.T) {
		victim, mine, loc := setup(t)
		a := hosPut(t, victim, []byte("IL!"), "Content-Range", "bytes 2-4/5", "Upload-Resume-From", mine.PutURL)
		if !hosIs4xx(a.Status) {
			t.Errorf("Content-Range PUT at the complete slot with Upload-Resume-From of another slot: %s; want 4xx (409)", a)
		}
		t.Logf("HEAD of the attacker's upload afterwards: %s", sessHead(t, c, loc, ""))
		hosMustServe(t, "the victim's complete file after the attack", victim.GetURL, good)
	})
}

// ---------------------------------------------------------------------------
// b. takeover-after-expiry

func hostileTakeover(t *testing.T) {
	s := startServer(t, "--session-idle-ttl", "5s", "--session-max-ttl", "5s")
	c := hosClient()

	// alice starts a 10-byte file with "abc" and lets its session end.
	alice := func(t *testing.T) slot {
		t.Helper()
		al := hosSlot(t, s, auth.ProtoV3, "alice.txt", 10)
		a := hosPut(t, al, []byte("abc"), "Content-Range", "bytes 0-2/10")
		t.Logf("Alice's PUT of bytes 0-2/10: %s", a)
		if a.Status/100 == 2 {
			t.Fatalf("Alice's PUT of bytes 0-2/10: %s; want an answer saying the file is incomplete (non-2xx)", a)
		}
		sessWaitOffset(t, c, al.PutURL, "", 3)
		hosMustNotServe(t, "Alice's incomplete file", al.GetURL)
		time.Sleep(6 * time.Second) // the session ends 5 s after its last request
		return al
	}

	t.Run("unrelated-file", func(t *testing.T) {
		t.Parallel()
		al := alice(t)
		mal := hosSlot(t, s, auth.ProtoV3, "mallory.txt", 10)
		a := sessCreate(t, c, mal, "mallory.txt", 10, "", "Upload-Resume-From", al.PutURL)
		if !hosIs4xx(a.Status) {
			t.Errorf("re-bind of Alice's upload to Mallory's slot for another file: %s, Location %q; want 4xx (409)",
				a, a.Header.Get("Location"))
		}
		if loc := a.Header.Get("Location"); loc != "" {
			p := sessPatch(t, c, loc, 3, []byte("MALLORY"))
			if p.Status/100 == 2 {
				t.Errorf("PATCH MALLORY at offset 3 of %s: %s; want it refused", loc, p)
			}
		}
		resp, got, n := download(t, al.GetURL)
		if got == hosSum([]byte("abcMALLORY")) {
			t.Errorf("Alice's GET URL serves abcMALLORY (%d)", resp.StatusCode)
		} else if resp.StatusCode != http.StatusNotFound {
			t.Errorf("Alice's GET URL of her incomplete file: %d with %d bytes; want 404", resp.StatusCode, n)
		}
	})

	t.Run("same-file", func(t *testing.T) {
		t.Parallel()
		al := alice(t)
		mal := hosSlot(t, s, auth.ProtoV3, "alice.txt", 10)
		a := sessCreate(t, c, mal, "alice.txt", 10, "", "Upload-Resume-From", al.PutURL)
		loc := hosCreated(t, "re-bind of Alice's upload to a slot for the same file", a)
		if a.offset(t) != 3 {
			t.Fatalf("re-bind: %s; want Upload-Offset 3", a)
		}
		sessMustStatus(t, "PATCH MALLORY at offset 3", sessPatch(t, c, loc, 3, []byte("MALLORY")), http.StatusNoContent)
		hosMustServe(t, "the re-bound file at the new slot", mal.GetURL, []byte("abcMALLORY"))
		hosMustNotServe(t, "Alice's GET URL after the re-bind", al.GetURL)
		h := sessHead(t, c, al.PutURL, "")
		if h.Status != http.StatusNotFound && h.Status != http.StatusGone {
			t.Errorf("HEAD on Alice's signed PUT URL after the re-bind: %s; want 404 or 410", h)
		}
		p := hosPut(t, al, []byte("abcMALLORY"))
		if p.Status != http.StatusNotFound && p.Status != http.StatusGone {
			t.Errorf("PUT on Alice's signed PUT URL after the re-bind: %s; want 404 or 410", p)
		}
	})
}

// ---------------------------------------------------------------------------
// c. mixed-bodies

func hostileMixedBodies(t *testing.T, s *server) {
	const size = 2 * MiB
	c := hosClient()
	fileA, _ := sessRandomBytes(t, size)
	fileB, _ := sessRandomBytes(t, size)
	sl := hosSlot(t, s, auth.ProtoV2, "mixed.bin", size)

	loc := hosCreated(t, "tus creation", sessCreate(t, c, sl, "mixed.bin", size, ""))
	sessMustStatus(t, "PATCH of A's first 512 KiB", sessPatch(t, c, loc, 0, fileA[:512*KiB]), http.StatusNoContent)

	line := sessCutPut(t, sl.PutURL, http.Header{}, size, fileB[:MiB])
	t.Logf("plain PUT of B cut after 1 MiB: answer %q", line)

	// The tus client comes back: HEAD (until the cut PUT has settled), then
	// the rest of A from the offset it is told.
	var off int64 = -2
	refused := false
	deadline := time.Now().Add(15 * time.Second)
	for {
		h := sessHead(t, c, loc, "")
		if h.Status == http.StatusNotFound || h.Status == http.StatusGone {
			t.Logf("HEAD on the tus upload URL after the PUT: %s (refused)", h)
			refused = true
			break
		}
		if h.Status == http.StatusOK && h.offset(t) == off {
			break
		}
		if h.Status == http.StatusOK {
			off = h.offset(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD on the tus upload URL did not settle within 15s: %s", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !refused {
		t.Logf("HEAD on the tus upload URL after the PUT: Upload-Offset %d", off)
		if off < 0 || off > size {
			t.Fatalf("HEAD: Upload-Offset %d out of range", off)
		}
		p := sessPatch(t, c, loc, off, fileA[off:])
		t.Logf("PATCH of the rest of A from %d: %s", off, p)
	}

	a := hosPut(t, sl, fileB)
	if a.Status != http.StatusCreated {
		t.Errorf("full PUT of B: %s; want 201", a)
	}
	resp, got, n := download(t, sl.GetURL)
	switch {
	case got == hosSum(fileB):
	case got == hosSum(fileA):
		t.Errorf("GET: the file is A (%d, %d bytes); want B", resp.StatusCode, n)
	case resp.StatusCode == http.StatusOK:
		t.Errorf("GET: %d bytes that are neither A nor B (a mix); want exactly B", n)
	default:
		t.Errorf("GET: %d with %d bytes; want 200 with B", resp.StatusCode, n)
	}
}

// ---------------------------------------------------------------------------
// d. defer-length-bound

func hostileDeferLength(t *testing.T, s *server) {
	c := hosClient()
	sl := hosSlot(t, s, auth.ProtoJWT, "defer.bin", 5)
	a := sessSend(t, c, http.MethodPost, sl.PutURL, sessHeader(
		"Tus-Resumable", "1.0.0",
		"Upload-Defer-Length", "1",
		"Upload-Metadata", hosMeta("filename", "defer.bin"),
		"Authorization", sl.Authorization,
	), nil)
	t.Logf("creation with Upload-Defer-Length: 1 at a 5-byte JWT slot: %s", a)
	if a.Status != http.StatusCreated {
		if !hosIs4xx(a.Status) {
			t.Fatalf("creation with Upload-Defer-Length: %s; want 201 or 4xx", a)
		}
		hosMustNotServe(t, "after the refused creation", sl.GetURL)
		return
	}
	loc := a.Header.Get("Location")
	big := bytes.Repeat([]byte{'x'}, 1000000)
	p, err := sessTrySend(c, http.MethodPatch, loc, sessHeader(
		"Tus-Resumable", "1.0.0",
		"Upload-Offset", "0",
		"Upload-Length", "1000000",
		"Content-Type", "application/offset+octet-stream",
	), big)
	switch {
	case err != nil:
		t.Logf("PATCH of 1,000,000 bytes with Upload-Length 1000000: %v (no answer)", err)
	case p.Status != http.StatusRequestEntityTooLarge && p.Status != http.StatusBadRequest:
		t.Errorf("PATCH of 1,000,000 bytes with Upload-Length 1000000 to a 5-byte slot: %s; want 413 or 400", p)
	}
	if h := sessHead(t, c, loc, ""); h.Status == http.StatusOK && (h.offset(t) > 5 || h.Header.Get("Upload-Length") != "" && h.Header.Get("Upload-Length") != "5") {
		t.Errorf("HEAD on the upload: %s, Upload-Length %q; want at most 5 bytes stored and a length of 5 if any",
			h, h.Header.Get("Upload-Length"))
	}
	g := hosGet(t, sl.GetURL, nil)
	if g.Status != http.StatusNotFound && !(g.Status == http.StatusOK && len(g.Body) <= 5) {
		t.Errorf("GET of the 5-byte slot: %d with %d bytes; want 404 or at most 5 bytes", g.Status, len(g.Body))
	}
}

// ---------------------------------------------------------------------------
// e. partials-bound

func hostilePartials(t *testing.T, s *server) {
	c := hosClient()
	partial := func(sl slot, name string, slotSize, length int64) sessAnswer {
		return sessSend(t, c, http.MethodPost, sl.PutURL, sessHeader(
			"Tus-Resumable", "1.0.0",
			"Upload-Concat", "partial",
			"Upload-Length", strconv.FormatInt(length, 10),
			"Upload-Metadata", hosMeta("filename", name, "filesize", strconv.FormatInt(slotSize, 10)),
		), nil)
	}

	t.Run("huge", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV1, "one.bin", 1)
		a := partial(sl, "one.bin", 1, 1<<40)
		if !hosIs4xx(a.Status) {
			t.Errorf("partial of 1 TiB at a 1-byte slot: %s; want 4xx (413)", a)
		} else if a.Status != http.StatusRequestEntityTooLarge {
			t.Logf("partial of 1 TiB at a 1-byte slot: %s (413 preferred)", a)
		}
	})

	t.Run("sum", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV1, "five.bin", 5)
		var locs []string
		for i := 1; i <= 2; i++ {
			a := partial(sl, "five.bin", 5, 5)
			t.Logf("partial %d of 5 bytes at a 5-byte slot: %s", i, a)
			if a.Status == http.StatusCreated {
				locs = append(locs, a.Header.Get("Location"))
			} else if i == 1 {
				t.Fatalf("the first partial of 5 bytes at a 5-byte slot: %s; want 201", a)
			} else if a.Status != http.StatusRequestEntityTooLarge {
				t.Errorf("the second partial of 5 bytes at a 5-byte slot: %s; want 413", a)
			}
		}
		if len(locs) > 1 {
			t.Errorf("a 5-byte slot accepted %d partials of 5 bytes; want 1", len(locs))
		}
		total := int64(0)
		for _, loc := range locs {
			p := sessPatch(t, c, loc, 0, []byte("12345"))
			t.Logf("PATCH of 5 bytes to %s: %s", loc, p)
			if h := sessHead(t, c, loc, ""); h.Status == http.StatusOK {
				total += h.offset(t)
			}
		}
		if total > 5 {
			t.Errorf("%d bytes stored in the partials of a 5-byte slot; want at most 5", total)
		}
	})

	t.Run("count", func(t *testing.T) {
		const size = 100
		sl := hosSlot(t, s, auth.ProtoV1, "hundred.bin", size)
		accepted, total := 0, int64(0)
		var first sessAnswer
		for i := 0; i < size; i++ {
			a := partial(sl, "hundred.bin", size, 1)
			if a.Status != http.StatusCreated {
				if first.Status == 0 {
					first = a
				}
				continue
			}
			accepted++
			loc := a.Header.Get("Location")
			if p := sessPatch(t, c, loc, 0, []byte{'x'}); p.Status == http.StatusNoContent {
				total++
			}
		}
		t.Logf("%d of %d partials of 1 byte accepted at a %d-byte slot (first refusal: %s); %d bytes written",
			accepted, size, size, first, total)
		if accepted == size || accepted > 64 {
			t.Errorf("%d of %d partials of 1 byte accepted at one slot; want at most 64", accepted, size)
		}
		if total > size {
			t.Errorf("%d bytes written to the partials of a %d-byte slot", total, size)
		}
	})
}

// ---------------------------------------------------------------------------
// f. overlong-bodies

func hostileOverlong(t *testing.T, s *server) {
	c := hosClient()
	long := []byte("hello world!")
	hello := []byte("hello")

	t.Run("chunked-put", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "put.txt", 5)
		hosCreated(t, "tus creation of 5 bytes", sessCreate(t, c, sl, "put.txt", 5, ""))
		a, err := hosChunked(http.MethodPut, sl.PutURL, http.Header{}, long)
		t.Logf("chunked PUT of %q at a 5-byte slot: %s %v", long, a, err)
		if err != nil {
			t.Errorf("chunked PUT of %q at a 5-byte slot: %v; want 413", long, err)
		} else if a.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked PUT of %q at a 5-byte slot: %s; want 413", long, a)
		}
		hosMustNotServe(t, "after the overlong chunked PUT", sl.GetURL)
		sessMustStatus(t, "the genuine PUT afterwards", hosPut(t, sl, hello), http.StatusCreated)
		hosMustServe(t, "the genuine file", sl.GetURL, hello)
	})

	t.Run("chunked-patch", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "patch.txt", 5)
		loc := hosCreated(t, "tus creation of 5 bytes", sessCreate(t, c, sl, "patch.txt", 5, ""))
		a, err := hosChunked(http.MethodPatch, loc, sessHeader(
			"Tus-Resumable", "1.0.0",
			"Upload-Offset", "0",
			"Content-Type", "application/offset+octet-stream",
		), long)
		t.Logf("chunked PATCH of %q to a 5-byte upload: %s %v", long, a, err)
		if err != nil {
			t.Errorf("chunked PATCH of %q to a 5-byte upload: %v; want 413", long, err)
		} else if a.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked PATCH of %q to a 5-byte upload: %s; want 413", long, a)
		}
		hosMustNotServe(t, "after the overlong chunked PATCH", sl.GetURL)
		sessMustStatus(t, "the genuine PUT afterwards", hosPut(t, sl, hello), http.StatusCreated)
		hosMustServe(t, "the genuine file", sl.GetURL, hello)
	})

	t.Run("chunked-range", func(t *testing.T) {
		ten := []byte("HELLOWORLD")
		sl := hosSlot(t, s, auth.ProtoV2, "range.txt", 10)
		a, err := hosChunked(http.MethodPut, sl.PutURL, sessHeader("Content-Range", "bytes 0-4/10"), ten)
		if err != nil {
			t.Logf("chunked PUT of 10 bytes with Content-Range: bytes 0-4/10: %v", err)
		} else if !hosIs4xx(a.Status) {
			t.Errorf("chunked PUT of 10 bytes with Content-Range: bytes 0-4/10: %s; want 4xx", a)
		}
		if h := sessHead(t, c, sl.PutURL, ""); h.Status == http.StatusOK && h.offset(t) > 5 {
			t.Errorf("HEAD on the slot after the overlong range: %s; want Upload-Offset <= 5", h)
		} else {
			t.Logf("HEAD on the slot after the overlong range: %s", h)
		}
		hosMustNotServe(t, "after the overlong range", sl.GetURL)
		sessMustStatus(t, "the genuine PUT afterwards", hosPut(t, sl, ten), http.StatusCreated)
		hosMustServe(t, "the genuine file", sl.GetURL, ten)
	})
}

// ---------------------------------------------------------------------------
// g. limiter

func hostileLimiter(t *testing.T) {
	payload := []byte("0123456789")

	t.Run("genuine-after-forged", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		c := hosClient()
		victim := hosSlot(t, s, auth.ProtoV2, "victim.bin", 10)
		forged := sessForge(t, victim.PutURL)
		var statuses []int
		for i := 0; i < 15; i++ {
			a := sessSend(t, c, http.MethodPut, forged, nil, payload)
			statuses = append(statuses, a.Status)
			if a.Status != http.StatusForbidden && a.Status != http.StatusTooManyRequests {
				t.Errorf("forged PUT %d: %s; want 403 or 429", i+1, a)
			}
		}
		t.Logf("15 forged PUTs: %v", statuses)
		if statuses[len(statuses)-1] != http.StatusTooManyRequests {
			t.Errorf("the 15th forged PUT from one address: %d; want 429", statuses[len(statuses)-1])
		}
		fresh := hosSlot(t, s, auth.ProtoV2, "fresh.bin", 10)
		a := hosPut(t, fresh, payload)
		if a.Status != http.StatusCreated {
			t.Errorf("PUT with a genuine fresh slot after the forged ones: %s; want 201 (never 429)", a)
		}
		if a.Status == http.StatusCreated {
			hosMustServe(t, "the genuine file", fresh.GetURL, payload)
		}
	})

	t.Run("forged-resume-from-counts", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		c := hosClient()
		// An existing upload whose slot URL is forged in Upload-Resume-From,
		// so that the gateway has a signature to check.
		victim := hosSlot(t, s, auth.ProtoV2, "victim.bin", 10)
		hosCreated(t, "creation of the victim's upload", sessCreate(t, c, victim, "victim.bin", 10, ""))
		forged := sessForge(t, victim.PutURL)
		mine := hosSlot(t, s, auth.ProtoV2, "victim.bin", 10)
		var statuses []int
		for i := 0; i < 15; i++ {
			a := sessCreate(t, c, mine, "victim.bin", 10, "", "Upload-Resume-From", forged)
			statuses = append(statuses, a.Status)
			if a.Status/100 == 2 {
				t.Errorf("creation %d with a forged Upload-Resume-From: %s; want it refused", i+1, a)
			}
		}
		t.Logf("15 creations with a forged Upload-Resume-From: %v", statuses)
		seen := false
		for _, st := range statuses {
			seen = seen || st == http.StatusTooManyRequests
		}
		if !seen {
			t.Errorf("15 forged Upload-Resume-From signatures from one address: no 429; want the failed checks counted")
		}
	})

	t.Run("options-oracle", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		c := hosClient()
		sl := hosSlot(t, s, auth.ProtoV2, "sized.bin", 12345)
		hosCreated(t, "creation", sessCreate(t, c, sl, "sized.bin", 12345, ""))
		opts := func(u string) sessAnswer {
			return sessSend(t, c, http.MethodOptions, u, sessHeader("Upload-Draft-Interop-Version", "6"), nil)
		}
		genuine := opts(sl.PutURL)
		forgedURL := sessForge(t, sl.PutURL)
		forged := opts(forgedURL)
		gl, fl := genuine.Header.Get("Upload-Limit"), forged.Header.Get("Upload-Limit")
		t.Logf("OPTIONS: genuine %d Upload-Limit %q; forged %d Upload-Limit %q", genuine.Status, gl, forged.Status, fl)
		if gl == fl && genuine.Status == forged.Status {
			return
		}
		// The answers tell a valid signature from a forged one: the forged
		// ones must then be counted by the failure limiter.
		statuses := []int{forged.Status}
		for i := 1; i < 15 && statuses[len(statuses)-1] != http.StatusTooManyRequests; i++ {
			statuses = append(statuses, opts(forgedURL).Status)
		}
		if statuses[len(statuses)-1] != http.StatusTooManyRequests {
			t.Errorf("OPTIONS tells a genuine signature (Upload-Limit %q) from a forged one (%q), and 15 forged OPTIONS got %v: no 429",
				gl, fl, statuses)
		}
	})
}

// ---------------------------------------------------------------------------
// h. stalled-bodies

// hosRaw opens a connection (from the loopback address local, or any when
// empty) and writes a request with the headers h and a Content-Length of
// total, followed by part of the body; it leaves the connection open.
func hosRaw(rawURL, method, local string, h http.Header, total int64, part []byte) (net.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, u.RequestURI(), u.Host, total)
	if err := h.Write(&b); err != nil {
		conn.Close()
		return nil, err
	}
	b.WriteString("\r\n")
	b.Write(part)
	if _, err := conn.Write(b.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// hosWaitResult is what a stalled client saw of the gateway.
type hosWaitResult struct {
	status   string        // the answer's status line, if one came
	answered time.Duration // when the first byte of an answer came (0: none)
	closed   time.Duration // when the gateway closed the connection (0: not within the limit)
}

func (r hosWaitResult) String() string {
	at := func(d time.Duration) string {
		if d == 0 {
			return "never"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("status line %q, first byte after %s, closed after %s", r.status, at(r.answered), at(r.closed))
}

// hosWait reads from conn for at most limit: until the gateway closes it, or,
// with untilAnswer, until a status line has arrived.
func hosWait(conn net.Conn, limit time.Duration, untilAnswer bool) hosWaitResult {
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(limit))
	var r hosWaitResult
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if r.answered == 0 {
				r.answered = time.Since(start)
			}
			got = append(got, buf[:n]...)
			if line, _, ok := strings.Cut(string(got), "\r\n"); ok {
				r.status = line
				if untilAnswer {
					return r
				}
			}
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				r.closed = time.Since(start)
			}
			if r.status == "" {
				r.status, _, _ = strings.Cut(string(got), "\r\n")
			}
			return r
		}
	}
}

func hostileStalled(t *testing.T) {
	t.Run("forged-no-body", func(t *testing.T) {
		t.Parallel()
		s := startServer(t)
		victim := hosSlot(t, s, auth.ProtoV2, "victim.bin", 1000)
		forged := sessForge(t, victim.PutURL)

		conn, err := hosRaw(forged, http.MethodPut, "", http.Header{}, 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := hosWait(conn, 8*time.Second, false)
		conn.Close()
		t.Logf("forged PUT announcing 1000 bytes, none sent (watched for 8s): %s", r)
		if r.answered == 0 || r.answered > 2*time.Second || !strings.Contains(r.status, " 403 ") {
			t.Errorf("forged PUT announcing 1000 bytes, none sent: %s; want 403 within 2s", r)
		}
		if r.closed == 0 || r.closed > 5*time.Second {
			t.Errorf("forged PUT announcing 1000 bytes, none sent: %s; want the connection closed within 5s", r)
		}

		const n = 50
		var wg sync.WaitGroup
		results := make([]hosWaitResult, n)
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := hosRaw(forged, http.MethodPut, "127.0.0.4", http.Header{}, 1000, nil)
				if err != nil {
					errs[i] = err
					return
				}
				defer conn.Close()
				results[i] = hosWait(conn, time.Until(start.Add(5*time.Second)), true)
			}()
		}
		wg.Wait()
		late := 0
		statuses := map[string]int{}
		for i := range n {
			if errs[i] != nil {
				t.Errorf("stalled forged PUT %d: %v", i, errs[i])
				continue
			}
			if results[i].status == "" {
				late++
			}
			statuses[results[i].status]++
		}
		t.Logf("%d stalled forged PUTs at once: %v", n, statuses)
		if late > 0 {
			t.Errorf("%d of %d stalled forged PUTs at once were not answered within 5s", late, n)
		}
	})

	t.Run("network-timeout", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, "--network-timeout", "3s")
		const limit = 6 * time.Second // the timeout, plus a margin

		t.Run("complete-file", func(t *testing.T) {
			t.Parallel()
			data := []byte("0123456789")
			sl := hosSlot(t, s, auth.ProtoV2, "done.bin", 10)
			sessMustStatus(t, "PUT", hosPut(t, sl, data), http.StatusCreated)
			conn, err := hosRaw(sl.PutURL, http.MethodPut, "", http.Header{}, 10, []byte("ab"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := hosWait(conn, limit, true)
			t.Logf("PUT of other bytes to the complete file, stalled after 2 bytes: %s", r)
			if r.answered == 0 && r.closed == 0 {
				t.Errorf("PUT of other bytes to the complete file, stalled after 2 bytes: neither answered nor closed within %v", limit)
			}
			hosMustServe(t, "the complete file", sl.GetURL, data)
		})

		t.Run("partial-retry", func(t *testing.T) {
			t.Parallel()
			data, _ := sessRandomBytes(t, 20*KiB)
			sl := hosSlot(t, s, auth.ProtoV2, "part.bin", int64(len(data)))
			sessCutPut(t, sl.PutURL, http.Header{}, int64(len(data)), data[:10*KiB])
			resumeSettled(t, sl, int64(len(data)), 10*KiB)
			conn, err := hosRaw(sl.PutURL, http.MethodPut, "", http.Header{}, int64(len(data)), data[:2])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			r := hosWait(conn, limit, true)
			t.Logf("full retry of a partial upload, stalled after 2 bytes: %s", r)
			if r.answered == 0 && r.closed == 0 {
				t.Errorf("full retry of a partial upload, stalled after 2 bytes: neither answered nor closed within %v", limit)
			}
			conn.Close()
			// The client retries the whole file.
			deadline := time.Now().Add(15 * time.Second)
			for {
				a := hosPut(t, sl, data)
				if a.Status == http.StatusCreated {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("full PUT after the stalled one: %s; want 201", a)
				}
				time.Sleep(200 * time.Millisecond)
			}
			hosMustServe(t, "the file", sl.GetURL, data)
		})
	})
}

// ---------------------------------------------------------------------------
// i. range-flood

func hostileRangeFlood(t *testing.T, s *server) {
	data, _ := sessRandomBytes(t, 4*KiB)
	sl := hosSlot(t, s, auth.ProtoV2, "ranged.bin", int64(len(data)))
	sessMustStatus(t, "PUT", hosPut(t, sl, data), http.StatusCreated)
	hosMustServe(t, "the file", sl.GetURL, data)
	ranges := "bytes=0-0" + strings.Repeat(",0-0", 999)
	a := hosGet(t, sl.GetURL, sessHeader("Range", ranges))
	t.Logf("GET with 1000 ranges: %d, %d bytes, Content-Type %q", a.Status, len(a.Body), a.Header.Get("Content-Type"))
	if a.Status != http.StatusOK && a.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("GET with 1000 ranges of a 4 KiB file: %d; want 200 (the whole file) or 416", a.Status)
	}
	if len(a.Body) > 5*KiB {
		t.Errorf("GET with 1000 ranges of a 4 KiB file: %d bytes; want at most %d", len(a.Body), 5*KiB)
	}
	if a.Status == http.StatusOK && a.Body != string(data) {
		t.Errorf("GET with 1000 ranges answered 200 but not with the file (%d bytes)", len(a.Body))
	}
}

// ---------------------------------------------------------------------------
// j. concat-path

func hostileConcatPath(t *testing.T, s *server) {
	c := hosClient()
	const size = 10
	sl := hosSlot(t, s, auth.ProtoV1, "joined.bin", size)
	a := sessSend(t, c, http.MethodPost, sl.PutURL, sessHeader(
		"Tus-Resumable", "1.0.0",
		"Upload-Concat", "partial",
		"Upload-Length", strconv.Itoa(size),
		"Upload-Metadata", hosMeta("filename", "joined.bin", "filesize", strconv.Itoa(size)),
	), nil)
	loc := hosCreated(t, "creation of a partial", a)
	sessMustStatus(t, "PATCH of the partial", sessPatch(t, c, loc, 0, []byte("0123456789")), http.StatusNoContent)
	id := uploadID(t, loc)
	final := func(concat string) sessAnswer {
		return sessSend(t, c, http.MethodPost, sl.PutURL, sessHeader(
			"Tus-Resumable", "1.0.0",
			"Upload-Concat", concat,
			"Upload-Metadata", hosMeta("filename", "joined.bin"),
		), nil)
	}
	for _, concat := range []string{
		"final;/files/../files/" + id,
		"final;" + s.URL + "/files/../files/" + id,
	} {
		if a := final(concat); a.Status != http.StatusBadRequest {
			t.Errorf("Upload-Concat: %s: %s; want 400", concat, a)
		}
	}
	hosMustNotServe(t, "after the refused final uploads", sl.GetURL)
	// The same final upload with the partial's own path is the genuine one.
	hosCreated(t, "Upload-Concat: final;/files/"+id, final("final;/files/"+id))
	hosMustServe(t, "the final upload", sl.GetURL, []byte("0123456789"))
}

// ---------------------------------------------------------------------------
// k. genuine-after-hostile

func hostileGenuine(t *testing.T, s *server) {
	c := hosClient()
	put, _ := sessRandomBytes(t, 64*KiB)
	sl := hosSlot(t, s, auth.ProtoV2, "genuine-put.bin", int64(len(put)))
	sessMustStatus(t, "genuine XEP-0363 PUT", hosPut(t, sl, put), http.StatusCreated)
	hosMustServe(t, "the genuine PUT's file", sl.GetURL, put)

	tus, _ := sessRandomBytes(t, 64*KiB)
	tl := hosSlot(t, s, auth.ProtoV2, "genuine-tus.bin", int64(len(tus)))
	loc := hosCreated(t, "genuine tus creation", sessCreate(t, c, tl, "genuine-tus.bin", int64(len(tus)), ""))
	sessMustStatus(t, "genuine tus PATCH", sessPatch(t, c, loc, 0, tus), http.StatusNoContent)
	hosMustServe(t, "the genuine tus upload's file", tl.GetURL, tus)
}

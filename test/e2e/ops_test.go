package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// Operations: the metrics of the real binary around real uploads, checked
// against docs/metrics.md, and a graceful shutdown in the middle of uploads.
// Helpers here start with ops.

// opsServer is a server whose /metrics is on a listener of its own.
type opsServer struct {
	*server
	MetricsURL string
}

// opsStart starts `uploadgate serve` with --metrics-listen on a free port
// and the flags extra, retrying when a port was taken meanwhile.
func opsStart(t *testing.T, extra ...string) *opsServer {
	t.Helper()
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		s, err := tryStartServer(t, append([]string{"--metrics-listen", addr}, extra...))
		if err == nil {
			return &opsServer{server: s, MetricsURL: "http://" + addr + "/metrics"}
		}
		last = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting uploadgate serve: %v", last)
	return nil
}

// opsSample is one series of a scrape.
type opsSample struct {
	name   string
	labels map[string]string
	value  float64
}

// opsScrape is a parsed /metrics answer.
type opsScrape struct {
	samples []opsSample
	// family maps each series name to its metric family (a histogram's
	// _bucket, _sum and _count to the histogram).
	family map[string]string
	types  map[string]string
}

func opsGetMetrics(t testing.TB, u string) opsScrape {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return opsParse(t, string(body))
}

var opsLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func opsParse(t testing.TB, text string) opsScrape {
	t.Helper()
	sc := opsScrape{family: map[string]string{}, types: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				sc.types[f[0]] = f[1]
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("/metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		series := line[:i]
		s := opsSample{name: series, labels: map[string]string{}, value: v}
		if j := strings.IndexByte(series, '{'); j >= 0 {
			s.name = series[:j]
			for _, m := range opsLabelRE.FindAllStringSubmatch(series[j:], -1) {
				s.labels[m[1]] = m[2]
			}
		}
		sc.samples = append(sc.samples, s)
	}
	for _, s := range sc.samples {
		fam := s.name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(s.name, suffix); ok && (sc.types[base] == "histogram" || sc.types[base] == "summary") {
				fam = base
			}
		}
		sc.family[s.name] = fam
	}
	return sc
}

// sum adds the values of the series name whose labels include want
// ("key=value" pairs), and reports whether there was any.
func (sc opsScrape) sum(name string, want ...string) (float64, bool) {
	var total float64
	found := false
	for _, s := range sc.samples {
		if s.name != name {
			continue
		}
		match := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			total += s.value
			found = true
		}
	}
	return total, found
}

// has reports whether any series of the family (or with the prefix, for a
// documented family such as go_*) exists.
func (sc opsScrape) has(family string) bool {
	prefix, glob := strings.CutSuffix(family, "*")
	for name, fam := range sc.family {
		if (glob && strings.HasPrefix(name, prefix)) || fam == family {
			return true
		}
	}
	return false
}

// opsDocumented are the series named in the tables of docs/metrics.md
// (first cell, in backticks), in their order there.
func opsDocumented(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_]+\\*?)` \\|")
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) < 10 {
		t.Fatalf("docs/metrics.md names only %d series: %v", len(names), names)
	}
	return names
}

// opsDo sends a request with a body (nil for none) and reads the answer.
func opsDo(t testing.TB, method, u string, h http.Header, body []byte) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func opsMust(t testing.TB, what string, got, want int, body string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d (%s), want %d", what, got, strings.TrimSpace(body), want)
	}
}

// opsCutPut sends a PUT that announces total bytes but sends only part, then
// closes its side: a client whose network went away mid-upload.
func opsCutPut(t testing.TB, rawURL string, total int64, part []byte) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host, total)
	if _, err := conn.Write(append([]byte(head), part...)); err != nil {
		t.Fatalf("PUT %s: %v", rawURL, err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	_, _ = io.ReadAll(conn)
}

// opsSignedOffset polls HEAD on a signed slot URL until the stored offset is
// at least min, and returns it.
func opsSignedOffset(t testing.TB, putURL string, min int64) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, h, _ := opsDo(t, http.MethodHead, putURL, nil, nil)
		if code == http.StatusOK {
			if off, err := strconv.ParseInt(h.Get("Upload-Offset"), 10, 64); err == nil && off >= min {
				return off
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s: status %d, Upload-Offset %q; want an offset of at least %d", opsRedact(putURL), code, h.Get("Upload-Offset"), min)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// opsRedact drops the query (the signature) of a slot URL for messages.
func opsRedact(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}

func opsRandom(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// opsHaveNode reports whether tus-js-client can run; it fails the test when
// it cannot, unless UPLOADGATE_E2E_SKIP_NODE=1 allows going without.
func opsHaveNode(t testing.TB) bool {
	t.Helper()
	if os.Getenv("UPLOADGATE_E2E_SKIP_NODE") == "1" {
		if _, err := exec.LookPath("node"); err != nil {
			t.Log("node not found; the tus-js-client part is left out (UPLOADGATE_E2E_SKIP_NODE=1)")
			return false
		}
		if _, err := os.Stat(filepath.Join(repoRoot, "test", "js", "node_modules", "tus-js-client", "package.json")); err != nil {
			t.Log("test/js/node_modules is missing; the tus-js-client part is left out (UPLOADGATE_E2E_SKIP_NODE=1)")
			return false
		}
	}
	requireNode(t)
	return true
}

// opsWaitMetric polls a scrape until cond holds for it.
func opsWaitMetric(t testing.TB, u, what string, cond func(opsScrape) bool) opsScrape {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		sc := opsGetMetrics(t, u)
		if cond(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: %s did not happen within 15s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpsMetrics runs uploads of every kind against the binary and checks
// that each series docs/metrics.md documents exists and moved as the uploads
// say, and that the binary exposes no uploadgate_ or tusd_ series the
// document does not name.
func TestOpsMetrics(t *testing.T) {
	t.Parallel()
	documented := opsDocumented(t)

	a := opsStart(t, "--max-size", "4MiB", "--trusted-proxies", "127.0.0.1")
	// /metrics is on its own listener only; /healthz stays on the main one.
	if code, err := a.status("/metrics"); err != nil || code != http.StatusNotFound {
		t.Fatalf("GET /metrics on the main listener: %d %v; want 404 with --metrics-listen", code, err)
	}
	if code, err := a.status("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /healthz: %d %v", code, err)
	}
	before := opsGetMetrics(t, a.MetricsURL)

	// 1. A plain PUT, and its download.
	file, sum := opsRandom(t, 1*MiB)
	plain := a.sign(t, "v2", "plain.bin", int64(len(file)), "")
	code, _, body := opsDo(t, http.MethodPut, plain.PutURL, nil, file)
	opsMust(t, "PUT", code, http.StatusCreated, body)
	if _, got, _ := download(t, plain.GetURL); got != sum {
		t.Fatalf("download of the PUT: SHA-256 %s, want %s", got, sum)
	}

	// 2. A tus upload: creation, a PATCH, then a HEAD and a PATCH from its offset.
	tusFile, tusSum := opsRandom(t, 256*KiB)
	ts := a.sign(t, "v2", "tus.bin", int64(len(tusFile)), "")
	code, h, body := opsDo(t, http.MethodPost, ts.PutURL, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {strconv.Itoa(len(tusFile))}}, nil)
	opsMust(t, "tus creation", code, http.StatusCreated, body)
	loc := h.Get("Location")
	tusPatch := func(off int, chunk []byte) (int, string) {
		c, _, b := opsDo(t, http.MethodPatch, loc, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {strconv.Itoa(off)},
			"Content-Type": {"application/offset+octet-stream"}}, chunk)
		return c, b
	}
	code, body = tusPatch(0, tusFile[:100*KiB])
	opsMust(t, "first PATCH", code, http.StatusNoContent, body)
	if st := headUpload(t, loc); st.Status != http.StatusOK || st.Offset != 100*KiB {
		t.Fatalf("HEAD of the tus upload: %+v", st)
	}
	code, body = tusPatch(100*KiB, tusFile[100*KiB:])
	opsMust(t, "resumed PATCH", code, http.StatusNoContent, body)
	if _, got, _ := download(t, ts.GetURL); got != tusSum {
		t.Fatalf("download of the tus upload: SHA-256 %s, want %s", got, tusSum)
	}
	// A tus upload terminated by its client.
	del := a.sign(t, "v2", "deleted.bin", 10, "")
	code, h, body = opsDo(t, http.MethodPost, del.PutURL, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {"10"}}, nil)
	opsMust(t, "tus creation", code, http.StatusCreated, body)
	code, _, body = opsDo(t, http.MethodDelete, h.Get("Location"), http.Header{"Tus-Resumable": {"1.0.0"}}, nil)
	opsMust(t, "tus DELETE", code, http.StatusNoContent, body)

	// 3. A PUT cut off, resumed with Content-Range after its (v3) slot
	// expired, from another client address.
	rfile, rsum := opsRandom(t, 1*MiB)
	rs, expired := opsExpiringSlot(t, a.server, "range.bin", int64(len(rfile)), 3*time.Second)
	opsCutPut(t, rs.PutURL, int64(len(rfile)), rfile[:300*KiB])
	off := opsSignedOffset(t, rs.PutURL, 1)
	time.Sleep(time.Until(expired))
	code, _, body = opsDo(t, http.MethodPut, rs.PutURL, http.Header{
		"Content-Range":   {fmt.Sprintf("bytes %d-%d/%d", off, len(rfile)-1, len(rfile))},
		"X-Forwarded-For": {"192.0.2.7"},
	}, rfile[off:])
	opsMust(t, "Content-Range PUT after the slot expired", code, http.StatusCreated, body)
	if _, got, _ := download(t, rs.GetURL); got != rsum {
		t.Fatalf("download of the range-resumed PUT: SHA-256 %s, want %s", got, rsum)
	}

	// 4. A PUT cut off, then retried in full: the stored prefix is equal.
	pfile, psum := opsRandom(t, 1*MiB)
	ps := a.sign(t, "v2", "retry.bin", int64(len(pfile)), "")
	opsCutPut(t, ps.PutURL, int64(len(pfile)), pfile[:200*KiB])
	opsSignedOffset(t, ps.PutURL, 1)
	code, _, body = opsDo(t, http.MethodPut, ps.PutURL, nil, pfile)
	opsMust(t, "full PUT retry", code, http.StatusCreated, body)
	if _, got, _ := download(t, ps.GetURL); got != psum {
		t.Fatalf("download of the retried PUT: SHA-256 %s, want %s", got, psum)
	}

	// 5. Refused: larger than --max-size, and a forged signature.
	big := a.sign(t, "v2", "big.bin", 5*MiB, "")
	code, _, body = opsDo(t, http.MethodPut, big.PutURL, nil, make([]byte, 5*MiB))
	opsMust(t, "PUT above --max-size", code, http.StatusRequestEntityTooLarge, body)
	forged := a.sign(t, "v2", "forged.bin", 4, "")
	fu, _ := url.Parse(forged.PutURL)
	q := fu.Query()
	q.Set("v2", strings.Repeat("0", len(q.Get("v2"))))
	fu.RawQuery = q.Encode()
	code, _, body = opsDo(t, http.MethodPut, fu.String(), nil, []byte("evil"))
	opsMust(t, "forged PUT", code, http.StatusForbidden, body)

	// 6. A PUT in progress is an active upload, and no longer once it ended.
	sfile, _ := opsRandom(t, 64*KiB)
	ss := a.sign(t, "v2", "slow.bin", int64(len(sfile)), "")
	pr, pw := io.Pipe()
	putDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, ss.PutURL, pr)
		req.ContentLength = int64(len(sfile))
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
		if err != nil {
			putDone <- 0
			return
		}
		resp.Body.Close()
		putDone <- resp.StatusCode
	}()
	if _, err := pw.Write(sfile[:1000]); err != nil {
		t.Fatal(err)
	}
	opsWaitMetric(t, a.MetricsURL, "uploadgate_sessions_active = 1 during a PUT", func(sc opsScrape) bool {
		v, _ := sc.sum("uploadgate_sessions_active")
		return v == 1
	})
	if _, err := pw.Write(sfile[1000:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-putDone; code != http.StatusCreated {
		t.Fatalf("slow PUT answered %d", code)
	}

	// 7. A real tus client (tus-js-client), interrupted and resumed.
	js := 0.0 // 1 when it ran
	if opsHaveNode(t) {
		js = 1
		jsPath, jsSum := randomFile(t, "js.bin", 3*MiB)
		sl := a.sign(t, "v2", "js.bin", 3*MiB, "")
		urls := filepath.Join(t.TempDir(), "tus-urls.json")
		first := runTus(t, "--endpoint", sl.PutURL, "--file", jsPath, "--chunk-size", strconv.Itoa(512*KiB), "--url-storage", urls,
			"--mode", "interrupt", "--interrupt-after", strconv.Itoa(1*MiB))
		if !first.OK || !first.Interrupted {
			t.Fatalf("tus-js-client interrupt: %+v", first)
		}
		second := runTus(t, "--endpoint", sl.PutURL, "--file", jsPath, "--chunk-size", strconv.Itoa(512*KiB), "--url-storage", urls, "--mode", "resume")
		if !second.OK {
			t.Fatalf("tus-js-client resume: %+v", second)
		}
		if _, got, _ := download(t, sl.GetURL); got != jsSum {
			t.Fatalf("download of the tus-js-client upload: SHA-256 %s, want %s", got, jsSum)
		}
	}
	if code, err := a.status("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /readyz: %d %v", code, err)
	}

	after := opsWaitMetric(t, a.MetricsURL, "the cut PUTs counted as interrupted, the active gauge back at 0", func(sc opsScrape) bool {
		f, _ := sc.sum("uploadgate_uploads_failed_total", "reason=interrupted")
		b, _ := before.sum("uploadgate_uploads_failed_total", "reason=interrupted")
		v, _ := sc.sum("uploadgate_sessions_active")
		return f-b >= 2 && v == 0
	})

	// Server B: sessions that end 2 s after they opened, partial data kept
	// 5 s more; a re-bind, and a clean-up.
	const bTTL, bRetention = 2 * time.Second, 5 * time.Second
	bFlags := []string{"--session-idle-ttl", bTTL.String(), "--session-max-ttl", bTTL.String(), "--retention", bRetention.String()}
	b := opsStart(t, bFlags...)
	bfile, bsum := opsRandom(t, 512*KiB)
	gone, _ := opsRandom(t, 64*KiB)
	old := b.sign(t, "v2", "rebound.bin", int64(len(bfile)), "")
	abandoned := b.sign(t, "v2", "abandoned.bin", int64(len(gone)), "")
	fresh := b.sign(t, "v2", "rebound.bin", int64(len(bfile)), "") // a re-bind needs the same file name
	opened := time.Now()
	opsCutPut(t, old.PutURL, int64(len(bfile)), bfile[:100*KiB])
	opsCutPut(t, abandoned.PutURL, int64(len(gone)), gone[:10*KiB])
	boff := opsSignedOffset(t, old.PutURL, 1)
	opsSignedOffset(t, abandoned.PutURL, 1)
	time.Sleep(time.Until(opened.Add(bTTL + 500*time.Millisecond))) // both sessions ended; the data is kept
	code, _, body = opsDo(t, http.MethodPut, fresh.PutURL, http.Header{
		"Content-Range":      {fmt.Sprintf("bytes %d-%d/%d", boff, len(bfile)-1, len(bfile))},
		"Upload-Resume-From": {old.PutURL},
	}, bfile[boff:])
	opsMust(t, "re-bound PUT", code, http.StatusCreated, body)
	if _, got, _ := download(t, fresh.GetURL); got != bsum {
		t.Fatalf("download of the re-bound upload: SHA-256 %s, want %s", got, bsum)
	}
	bAfter := opsGetMetrics(t, b.MetricsURL)
	// The clean-up runs at start: a restart after the retention removes the
	// abandoned upload.
	time.Sleep(time.Until(opened.Add(bTTL + bRetention + time.Second)))
	opsTerm(t, b.server)
	b2 := opsStart(t, append([]string{"--data-dir", b.DataDir, "--secret", b.Secret}, bFlags...)...)
	b2After := opsWaitMetric(t, b2.MetricsURL, "uploadgate_sessions_expired_total = 1 after the restart", func(sc opsScrape) bool {
		v, _ := sc.sum("uploadgate_sessions_expired_total")
		return v == 1
	})
	if code, _, body := opsDo(t, http.MethodHead, opsOn(t, abandoned.PutURL, b2.server), nil, nil); code != http.StatusNotFound {
		t.Errorf("HEAD of the abandoned upload after the clean-up: %d %s; want 404", code, body)
	}

	// What each documented series must show.
	delta := func(name string, labels ...string) float64 {
		x, _ := after.sum(name, labels...)
		y, _ := before.sum(name, labels...)
		return x - y
	}
	atLeast := func(got, want float64) error {
		if got < want {
			return fmt.Errorf("moved by %v, want at least %v", got, want)
		}
		return nil
	}
	exactly := func(got, want float64) error {
		if got != want {
			return fmt.Errorf("moved by %v, want %v", got, want)
		}
		return nil
	}
	all := func(errs ...error) error { return errors.Join(errs...) }
	bDelta := func(name string, labels ...string) float64 { v, _ := bAfter.sum(name, labels...); return v }
	checks := map[string]func() error{
		"uploadgate_http_requests_total": func() error {
			return all(
				exactly(delta("uploadgate_http_requests_total", "door=put", "method=PUT", "code_class=2xx"), 4),
				// too large, forged, and the two cut off
				exactly(delta("uploadgate_http_requests_total", "door=put", "method=PUT", "code_class=4xx"), 4),
				atLeast(delta("uploadgate_http_requests_total", "door=put", "method=HEAD", "code_class=2xx"), 2),
				atLeast(delta("uploadgate_http_requests_total", "door=tus", "method=POST", "code_class=2xx"), 3),
				atLeast(delta("uploadgate_http_requests_total", "door=tus", "method=PATCH", "code_class=2xx"), 4),
				exactly(delta("uploadgate_http_requests_total", "door=tus", "method=DELETE", "code_class=2xx"), 1),
				atLeast(delta("uploadgate_http_requests_total", "door=download", "method=GET", "code_class=2xx"), 4+js),
				atLeast(delta("uploadgate_http_requests_total", "door=ops", "method=GET", "code_class=2xx"), 2),
				// GET /metrics on the main listener, before the first scrape
				atLeast(opsValue(before, "uploadgate_http_requests_total", "door=ops", "method=GET", "code_class=4xx"), 1),
			)
		},
		"uploadgate_http_request_duration_seconds": func() error {
			return all(
				atLeast(delta("uploadgate_http_request_duration_seconds_count", "door=put", "method=PUT"), 7),
				atLeast(delta("uploadgate_http_request_duration_seconds_bucket", "door=put", "method=PUT", "le=+Inf"), 7),
				atLeast(delta("uploadgate_http_request_duration_seconds_sum", "door=tus", "method=PATCH"), 1e-9),
			)
		},
		"uploadgate_bytes_received_total": func() error {
			// Every byte of the plain PUT, the retried PUT (compared and
			// appended) and the range resume, at least.
			return all(
				atLeast(delta("uploadgate_bytes_received_total", "door=put"), float64(len(file)+len(pfile)+len(rfile))),
				atLeast(delta("uploadgate_bytes_received_total", "door=tus"), float64(len(tusFile))+js*3*MiB),
			)
		},
		"uploadgate_uploads_completed_total": func() error {
			return all(
				exactly(delta("uploadgate_uploads_completed_total", "door=put"), 4),
				exactly(delta("uploadgate_uploads_completed_total", "door=tus"), 1+js),
			)
		},
		"uploadgate_uploads_failed_total": func() error {
			return all(
				atLeast(delta("uploadgate_uploads_failed_total", "reason=interrupted"), 2),
				exactly(delta("uploadgate_uploads_failed_total", "reason=too_large"), 1),
				exactly(delta("uploadgate_uploads_failed_total", "reason=denied"), 1),
				exactly(delta("uploadgate_uploads_failed_total", "reason=storage"), 0),
				exactly(delta("uploadgate_uploads_failed_total", "reason=internal"), 0),
			)
		},
		"uploadgate_resumes_total": func() error {
			return all(
				exactly(delta("uploadgate_resumes_total", "door=tus"), 1+js), // the Go client's and tus-js-client's
				exactly(delta("uploadgate_resumes_total", "door=put_range"), 1),
				exactly(delta("uploadgate_resumes_total", "door=put_retry"), 1),
				exactly(bDelta("uploadgate_resumes_total", "door=rebind"), 1),
			)
		},
		"uploadgate_sessions_active": func() error {
			// 1 during the slow PUT (waited for above), 0 now.
			v, ok := after.sum("uploadgate_sessions_active")
			if !ok || v != 0 {
				return fmt.Errorf("%v (present %v) after the uploads, want 0", v, ok)
			}
			return nil
		},
		"uploadgate_slot_checks_total": func() error {
			return all(
				atLeast(delta("uploadgate_slot_checks_total", "protocol=v2", "result=ok"), 6),
				atLeast(delta("uploadgate_slot_checks_total", "protocol=v3", "result=ok"), 1),
				atLeast(delta("uploadgate_slot_checks_total", "protocol=v3", "result=expired"), 1),
				atLeast(delta("uploadgate_slot_checks_total", "protocol=v2", "result=invalid"), 1),
			)
		},
		"uploadgate_sessions_opened_total": func() error {
			// plain, tus, deleted, range, retry, slow, tus-js-client.
			return exactly(delta("uploadgate_sessions_opened_total"), 6+js)
		},
		"uploadgate_session_accepts_total": func() error {
			return atLeast(delta("uploadgate_session_accepts_total", "door=put"), 1)
		},
		"uploadgate_client_address_changes_total": func() error {
			return exactly(delta("uploadgate_client_address_changes_total"), 1)
		},
		"uploadgate_rebinds_total": func() error {
			return all(exactly(delta("uploadgate_rebinds_total"), 0), exactly(bDelta("uploadgate_rebinds_total"), 1))
		},
		"uploadgate_sessions_expired_total": func() error {
			// Nothing before the clean-up, one abandoned upload after it.
			return all(exactly(bDelta("uploadgate_sessions_expired_total"), 0), exactly(opsValue(b2After, "uploadgate_sessions_expired_total"), 1))
		},
		"uploadgate_storage_operation_duration_seconds": func() error {
			var errs []error
			for _, op := range []string{"create", "get", "info", "write", "finish", "terminate", "lock", "unlock",
				"session_create", "session_get", "session_resolve_slot", "session_update", "session_delete", "session_ping"} {
				if d := delta("uploadgate_storage_operation_duration_seconds_count", "op="+op); d < 1 {
					errs = append(errs, fmt.Errorf("op %s: %v calls during the uploads", op, d))
				}
			}
			// The clean-up's query runs at start, before the first scrape.
			if v := opsValue(before, "uploadgate_storage_operation_duration_seconds_count", "op=session_expired"); v < 1 {
				errs = append(errs, fmt.Errorf("op session_expired: %v calls at start", v))
			}
			return errors.Join(errs...)
		},
		"uploadgate_build_info": func() error {
			v, ok := after.sum("uploadgate_build_info", "goversion="+runtime.Version(), "version=dev")
			if !ok || v != 1 {
				return fmt.Errorf("no series with goversion=%s version=dev and value 1", runtime.Version())
			}
			return nil
		},
		"go_*":      func() error { return opsPresent(after, "go_goroutines") },
		"process_*": func() error { return opsPresent(after, "process_start_time_seconds") },
		"tusd_requests_total": func() error {
			return atLeast(delta("tusd_requests_total", "method=PATCH"), 4)
		},
		"tusd_errors_total": func() error {
			return atLeast(delta("tusd_errors_total"), 1) // the cut PUTs
		},
		"tusd_bytes_received": func() error {
			return atLeast(delta("tusd_bytes_received"), float64(len(file)+len(tusFile)))
		},
		"tusd_uploads_created": func() error {
			return atLeast(delta("tusd_uploads_created"), 6+js)
		},
		"tusd_uploads_finished": func() error {
			return exactly(delta("tusd_uploads_finished"), 5+js)
		},
		"tusd_uploads_terminated": func() error {
			return exactly(delta("tusd_uploads_terminated"), 1)
		},
	}
	seen := map[string]bool{}
	for _, name := range documented {
		seen[name] = true
		check, ok := checks[name]
		if !ok {
			t.Errorf("docs/metrics.md documents %s, but this test does not check it: add a check", name)
			continue
		}
		if !after.has(name) {
			t.Errorf("%s: documented, but not exposed by the binary", name)
			continue
		}
		if err := check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name := range checks {
		if !seen[name] {
			t.Errorf("this test checks %s, which docs/metrics.md does not document", name)
		}
	}
	var undocumented []string
	for _, sc := range []opsScrape{after, bAfter, b2After} {
		for _, fam := range sc.family {
			if (strings.HasPrefix(fam, "uploadgate_") || strings.HasPrefix(fam, "tusd_")) && !seen[fam] && !slices.Contains(undocumented, fam) {
				undocumented = append(undocumented, fam)
			}
		}
	}
	if len(undocumented) > 0 {
		t.Errorf("the binary exposes series that docs/metrics.md does not document: %v", undocumented)
	}
	// Nothing in the log of a slot URL's query or of an upload ID.
	for _, s := range []*server{a.server, b.server} {
		log := s.log()
		for _, leak := range []string{"v2=", "v3=", uploadID(t, loc)} {
			if strings.Contains(log, leak) {
				t.Errorf("the log of %s contains %q", s.URL, leak)
			}
		}
		if !strings.Contains(log, "msg=request") {
			t.Errorf("the log of %s has no request lines", s.URL)
		}
	}
}

// opsExpiringSlot mints a v3 slot that the gateway stops accepting (its
// expiry plus the allowed clock skew) validFor from now, and returns when.
func opsExpiringSlot(t testing.TB, s *server, name string, size int64, validFor time.Duration) (slot, time.Time) {
	t.Helper()
	issued := time.Now().Add(-auth.DefaultLeeway)
	ss, err := auth.SignSlot(s.Secret, auth.SignRequest{
		BaseURL: s.URL + "/upload/", Name: name, Size: size, Protocol: auth.ProtoV3, TTL: validFor, Now: issued,
	})
	if err != nil {
		t.Fatal(err)
	}
	// v3 expires is whole seconds, rounded down.
	end := time.Unix(issued.Add(validFor).Unix(), 0).Add(auth.DefaultLeeway).Add(100 * time.Millisecond)
	return slot{PutURL: ss.PutURL, GetURL: ss.GetURL}, end
}

// opsValue is the sum of the matching series of a scrape (0 when none).
func opsValue(sc opsScrape, name string, labels ...string) float64 {
	v, _ := sc.sum(name, labels...)
	return v
}

func opsPresent(sc opsScrape, name string) error {
	if _, ok := sc.sum(name); !ok {
		return fmt.Errorf("%s missing", name)
	}
	return nil
}

// opsTerm sends SIGTERM to the server and waits until it has exited; a
// graceful shutdown exits 0.
func opsTerm(t testing.TB, s *server) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM uploadgate serve (pid %d): %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("uploadgate serve (pid %d) still runs 30s after SIGTERM", s.cmd.Process.Pid)
	}
	if s.err != nil {
		t.Fatalf("uploadgate serve exited with %v after SIGTERM; want exit status 0; log:\n%s", s.err, s.log())
	}
}

// opsOn is rawURL on the host and port of s (a restarted server listens elsewhere).
func opsOn(t testing.TB, rawURL string, s *server) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = base.Host
	return u.String()
}

// TestOpsSIGTERMDuringUpload stops the gateway with SIGTERM while a PUT and a
// tus PATCH are sending: it exits 0, keeps the bytes that arrived, and after
// a restart on the same data directory both uploads continue and complete.
func TestOpsSIGTERMDuringUpload(t *testing.T) {
	t.Parallel()
	for _, door := range []string{"put", "tus"} {
		t.Run(door, func(t *testing.T) {
			t.Parallel()
			s := startServer(t)
			const size = 4 * MiB
			const sent = 1 * MiB
			data, sum := opsRandom(t, size)
			sl := s.sign(t, "v2", "term-"+door+".bin", size, "")

			pr, pw := io.Pipe()
			answer := make(chan int, 1)
			var req *http.Request
			var uploadURL string
			switch door {
			case "put":
				req, _ = http.NewRequest(http.MethodPut, sl.PutURL, pr)
			case "tus":
				code, h, body := opsDo(t, http.MethodPost, sl.PutURL, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Length": {strconv.Itoa(size)}}, nil)
				opsMust(t, "tus creation", code, http.StatusCreated, body)
				uploadURL = h.Get("Location")
				req, _ = http.NewRequest(http.MethodPatch, uploadURL, pr)
				req.Header.Set("Tus-Resumable", "1.0.0")
				req.Header.Set("Upload-Offset", "0")
				req.Header.Set("Content-Type", "application/offset+octet-stream")
			}
			req.ContentLength = size
			go func() {
				resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
				if err != nil {
					answer <- 0
					return
				}
				resp.Body.Close()
				answer <- resp.StatusCode
			}()
			if _, err := pw.Write(data[:sent]); err != nil {
				t.Fatal(err)
			}
			// Everything sent has been written before the signal.
			opsSignedOffset(t, sl.PutURL, sent)

			opsTerm(t, s)
			pw.CloseWithError(errors.New("the server went away"))
			if code := <-answer; code != http.StatusServiceUnavailable && code != 0 {
				t.Errorf("the running %s was answered %d during the shutdown; want 503 (retry) or no answer", req.Method, code)
			}
			if log := s.log(); !strings.Contains(log, "shutting down") || !strings.Contains(log, "stopped") {
				t.Errorf("no graceful shutdown in the log:\n%s", log)
			}

			s2 := opsRestartOn(t, s)
			putURL := opsOn(t, sl.PutURL, s2)
			off := opsSignedOffset(t, putURL, 1)
			if off != sent {
				t.Errorf("after the restart the upload's offset is %d; want the %d bytes that arrived before SIGTERM", off, sent)
			}
			switch door {
			case "put":
				code, _, body := opsDo(t, http.MethodPut, putURL, http.Header{"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", off, size-1, size)}}, data[off:])
				opsMust(t, "Content-Range PUT after the restart", code, http.StatusCreated, body)
			case "tus":
				u := opsOn(t, uploadURL, s2)
				if st := headUpload(t, u); st.Status != http.StatusOK || st.Offset != off {
					t.Fatalf("HEAD %s after the restart: %+v; want 200 and offset %d", uploadID(t, u), st, off)
				}
				code, _, body := opsDo(t, http.MethodPatch, u, http.Header{"Tus-Resumable": {"1.0.0"}, "Upload-Offset": {strconv.FormatInt(off, 10)},
					"Content-Type": {"application/offset+octet-stream"}}, data[off:])
				opsMust(t, "PATCH after the restart", code, http.StatusNoContent, body)
			}
			resp, got, n := download(t, opsOn(t, sl.GetURL, s2))
			if resp.StatusCode != http.StatusOK || got != sum || n != size {
				t.Fatalf("download after the restart: %d, %d bytes, SHA-256 %s; want 200, %d bytes, %s", resp.StatusCode, n, got, size, sum)
			}
		})
	}
}

// opsRestartOn starts the server again on the data directory and secret of
// old, which has exited, on a new port.
func opsRestartOn(t *testing.T, old *server) *server {
	t.Helper()
	select {
	case <-old.exited:
	default:
		t.Fatal("the old server still runs")
	}
	return startServer(t, "--data-dir", old.DataDir, "--secret", old.Secret)
}

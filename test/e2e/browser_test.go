package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromiumPath is Debian's chromium package; the tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// browserResult is the JSON line test/browser/demo.mjs prints.
type browserResult struct {
	OK                bool     `json:"ok"`
	Error             string   `json:"error"`
	Events            []string `json:"events"`
	ConsoleErrors     []string `json:"consoleErrors"`
	OfflineShown      string   `json:"offlineShown"`
	BytesWhileOffline int64    `json:"bytesWhileOffline"`
	BytesBeforeReload int64    `json:"bytesBeforeReload"`
	State             struct {
		Posts    int      `json:"posts"`
		Patches  int      `json:"patches"`
		Heads    int      `json:"heads"`
		Requests []string `json:"requests"`
		Uploads  []struct {
			Name             string `json:"name"`
			Size             int64  `json:"size"`
			Bytes            int64  `json:"bytes"`
			URL              string `json:"url"`
			GetURL           string `json:"getURL"`
			FirstPatchOffset *int64 `json:"firstPatchOffset"`
			Resumed          bool   `json:"resumed"`
			Done             bool   `json:"done"`
		} `json:"uploads"`
	} `json:"state"`
	Uppy struct {
		Done []struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			URL    string `json:"url"`
			GetURL string `json:"getURL"`
		} `json:"done"`
		Failed []json.RawMessage `json:"failed"`
	} `json:"uppy"`
}

// requireBrowser fails the test when Chromium or the npm packages of
// test/browser are missing, or skips it when UPLOADGATE_E2E_SKIP_BROWSER=1
// asks for that (where Chromium cannot be installed).
func requireBrowser(t *testing.T) {
	t.Helper()
	skip := os.Getenv("UPLOADGATE_E2E_SKIP_BROWSER") == "1"
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node (Node.js >= 18) is not in PATH"
	} else if _, err := os.Stat(chromiumPath); err != nil {
		missing = chromiumPath + " is missing (Debian package chromium)"
	} else if _, err := os.Stat(filepath.Join(repoRoot, "test", "browser", "node_modules", "playwright-core", "package.json")); err != nil {
		missing = "test/browser/node_modules/playwright-core is missing"
	}
	if missing == "" {
		return
	}
	if skip {
		t.Skipf("%s; skipped because UPLOADGATE_E2E_SKIP_BROWSER=1", missing)
	}
	t.Fatalf("%s: run `make deps` (scripts/install-test-deps.sh), or set UPLOADGATE_E2E_SKIP_BROWSER=1 "+
		"where Chromium cannot be installed", missing)
}

// runBrowser runs test/browser/demo.mjs with args and returns its result.
func runBrowser(t *testing.T, args ...string) browserResult {
	t.Helper()
	requireBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"demo.mjs", "--executable", chromiumPath}, args...)...)
	cmd.Dir = filepath.Join(repoRoot, "test", "browser")
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res browserResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		t.Fatalf("node demo.mjs %s: %v; no JSON result (%v)\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, jerr, stdout.Bytes(), stderr.Bytes())
	}
	for _, e := range res.Events {
		t.Logf("browser: %s", e)
	}
	if !res.OK || err != nil {
		t.Fatalf("node demo.mjs %s: %v: %s\nconsole errors: %q\nstderr:\n%s",
			strings.Join(args, " "), err, res.Error, res.ConsoleErrors, stderr.Bytes())
	}
	return res
}

// startDemoServer runs the gateway with the demo pages; any origin may use
// the doors, so that a page on another origin can upload.
func startDemoServer(t *testing.T) *server {
	t.Helper()
	requireBrowser(t)
	return startServer(t, "--demo-ui", "--cors-origins", "*")
}

// crossOriginPage is the tus-js-client page served from "localhost" while the
// slots name 127.0.0.1: another origin for the browser, so every tus request
// goes through CORS (preflight, exposed Location and Upload-Offset).
func crossOriginPage(s *server) string {
	return strings.Replace(s.URL, "127.0.0.1", "localhost", 1) + "/demo/"
}

// tusPOSTs is uploadgate_http_requests_total{door="tus",method="POST"}, all codes.
func tusPOSTs(t *testing.T, s *server) int {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "uploadgate_http_requests_total{") && strings.Contains(l, `door="tus"`) && strings.Contains(l, `method="POST"`) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", l, err)
			}
			n += int(v)
		}
	}
	return n
}

// checkStored compares the stored bytes of the upload at uploadURL with want.
func checkStored(t *testing.T, s *server, uploadURL, want string, size int64) {
	t.Helper()
	got, n := s.storedSHA256(t, uploadID(t, uploadURL))
	if got != want || n != size {
		t.Errorf("stored %s: %d bytes, SHA-256 %s; want %d bytes, %s", uploadURL, n, got, size, want)
	}
}

// artifactDir is where screenshots go: $UPLOADGATE_E2E_ARTIFACTS when set
// (kept after the run), else the test's temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("UPLOADGATE_E2E_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func checkScreenshot(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
		t.Fatalf("screenshot %s is not a PNG image (%d bytes)", p, len(b))
	}
	t.Logf("screenshot during the upload: %s", p)
}

func TestBrowserDemoDisabledByDefault(t *testing.T) {
	s := startServer(t)
	for _, p := range []string{"/demo/", "/demo/demo.js"} {
		if code, err := s.status(p); err != nil || code != http.StatusNotFound {
			t.Errorf("GET %s without --demo-ui: %d, %v; want 404", p, code, err)
		}
	}
}

func TestBrowserTusJSClient(t *testing.T) {
	s := startDemoServer(t)
	const size = 64 * MiB
	src, sum := randomFile(t, "big.bin", size)
	sl := s.sign(t, "v2", "big.bin", size, "")
	shot := filepath.Join(artifactDir(t), "tus-js-client-upload.png")
	res := runBrowser(t, "--mode", "tus", "--page", crossOriginPage(s), "--slot", sl.PutURL, "--file", src, "--screenshot", shot)
	if len(res.State.Uploads) != 1 {
		t.Fatalf("the page reports %d uploads; want 1", len(res.State.Uploads))
	}
	u := res.State.Uploads[0]
	if !strings.HasPrefix(u.URL, s.URL+"/files/") {
		t.Errorf("upload URL %q: want one under %s/files/ (Location readable across origins)", u.URL, s.URL)
	}
	if u.GetURL != sl.GetURL {
		t.Errorf("the page shows GET URL %q; want %q", u.GetURL, sl.GetURL)
	}
	checkStored(t, s, u.URL, sum, size)
	checkScreenshot(t, shot)
	_, got, n := download(t, sl.GetURL)
	if got != sum || n != size {
		t.Errorf("GET %s: %d bytes, %s; want %d, %s", sl.GetURL, n, got, size, sum)
	}
}

func TestBrowserTusJSClientOffline(t *testing.T) {
	s := startDemoServer(t)
	const size = 64 * MiB
	src, sum := randomFile(t, "offline.bin", size)
	sl := s.sign(t, "v2", "offline.bin", size, "")
	// 1 MiB chunks keep requests going while the browser goes offline.
	res := runBrowser(t, "--mode", "offline", "--page", crossOriginPage(s), "--slot", sl.PutURL, "--file", src,
		"--chunk-size", strconv.Itoa(MiB), "--offline-ms", "4000")
	if !strings.Contains(res.OfflineShown, "offline") {
		t.Errorf("while offline the page showed %q; want the offline state", res.OfflineShown)
	}
	if res.State.Posts != 1 {
		t.Errorf("the page sent %d POSTs; want exactly 1 creation", res.State.Posts)
	}
	if n := tusPOSTs(t, s); n != 1 {
		t.Errorf("the server counted %d tus POSTs; want 1 (no second creation)", n)
	}
	// After the outage tus-js-client asks for the offset (HEAD) and goes on
	// from there; that offset is not zero.
	resumedAt := int64(-1)
	for i, r := range res.State.Requests {
		if strings.HasPrefix(r, "HEAD") {
			for _, next := range res.State.Requests[i+1:] {
				if off, ok := strings.CutPrefix(next, "PATCH "); ok {
					resumedAt, _ = strconv.ParseInt(off, 10, 64)
					break
				}
			}
			break
		}
	}
	if resumedAt <= 0 {
		t.Errorf("no PATCH from a non-zero offset after a HEAD; requests: %q", res.State.Requests)
	} else {
		t.Logf("resumed at offset %d after being offline (at %d bytes while offline)", resumedAt, res.BytesWhileOffline)
	}
	checkStored(t, s, res.State.Uploads[0].URL, sum, size)
}

func TestBrowserTusJSClientReload(t *testing.T) {
	s := startDemoServer(t)
	const size = 64 * MiB
	src, sum := randomFile(t, "reload.bin", size)
	sl := s.sign(t, "v2", "reload.bin", size, "")
	// Throttled to 8 MiB/s so that the reload comes in the middle of the upload.
	res := runBrowser(t, "--mode", "reload", "--page", crossOriginPage(s), "--slot", sl.PutURL, "--file", src,
		"--throttle", strconv.Itoa(8*MiB))
	if len(res.State.Uploads) != 1 {
		t.Fatalf("after the reload the page reports %d uploads; want 1", len(res.State.Uploads))
	}
	u := res.State.Uploads[0]
	if !u.Resumed {
		t.Errorf("after the reload tus-js-client found no previous upload to resume")
	}
	if res.State.Posts != 0 {
		t.Errorf("after the reload the page sent %d POSTs; want 0 (resume at the stored upload URL)", res.State.Posts)
	}
	if u.FirstPatchOffset == nil || *u.FirstPatchOffset <= 0 {
		t.Errorf("after the reload the first PATCH started at %v; want an offset > 0", u.FirstPatchOffset)
	} else {
		t.Logf("reloaded at %d bytes sent; resumed from offset %d", res.BytesBeforeReload, *u.FirstPatchOffset)
	}
	if n := tusPOSTs(t, s); n != 1 {
		t.Errorf("the server counted %d tus POSTs; want 1", n)
	}
	checkStored(t, s, u.URL, sum, size)
}

func TestBrowserUppy(t *testing.T) {
	s := startDemoServer(t)
	sizes := map[string]int64{"one.bin": 3 * MiB, "two.bin": 12*MiB + 17, "three.txt": 5 * KiB}
	sums := map[string]string{}
	args := []string{"--mode", "uppy", "--page", s.URL + "/demo/uppy.html"}
	for name, size := range sizes {
		p, sum := randomFile(t, name, size)
		sums[name] = sum
		args = append(args, "--file", p)
	}
	shot := filepath.Join(artifactDir(t), "uppy-upload.png")
	args = append(args, "--screenshot", shot)
	res := runBrowser(t, args...)
	if len(res.Uppy.Done) != len(sizes) || len(res.Uppy.Failed) != 0 {
		t.Fatalf("Uppy finished %d uploads and failed %d; want %d and 0", len(res.Uppy.Done), len(res.Uppy.Failed), len(sizes))
	}
	for _, d := range res.Uppy.Done {
		size, ok := sizes[d.Name]
		if !ok {
			t.Errorf("Uppy uploaded %q, which the test did not choose", d.Name)
			continue
		}
		checkStored(t, s, d.URL, sums[d.Name], size)
		_, got, n := download(t, d.GetURL)
		if got != sums[d.Name] || n != size {
			t.Errorf("GET %s: %d bytes, %s; want %d, %s", d.GetURL, n, got, size, sums[d.Name])
		}
	}
	checkScreenshot(t, shot)
}

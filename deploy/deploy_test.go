// Package deploy_test checks the deployment files against the real binary:
// the Dockerfile's build steps run as plain commands, the compose stack's
// gateway, Redis and S3 settings run as local processes, every flag and
// UPLOADGATE_* variable of the manifests is a flag of `uploadgate serve`,
// every metric of the alert rules and of the Grafana dashboard is served by
// the binary, promtool checks and unit-tests the alert rules, and the systemd
// unit passes systemd-analyze verify and its command lines run.
//
// The tests need promtool (Debian's prometheus package), redis-server,
// versitygw and systemd-analyze, which `make deps` installs;
// UPLOADGATE_SKIP_PROMTOOL=1, UPLOADGATE_SKIP_REDIS=1, UPLOADGATE_SKIP_S3=1
// and UPLOADGATE_SKIP_SYSTEMD_ANALYZE=1 skip the tests that need them instead
// of failing.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// repoRoot is the repository's top directory.
	repoRoot string
	// binary is the uploadgate binary built for this test run.
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		var b []byte
		b, err = os.ReadFile(filepath.Join(root, "go.mod"))
		if err == nil && !bytes.Contains(b, []byte("module github.com/uploadgate/uploadgate\n")) {
			err = errors.New("the parent directory is not the uploadgate module")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "uploadgate-deploy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "uploadgate")
	build := exec.Command("go", "build", "-o", binary, "./cmd/uploadgate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "deploy: go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// path is a file of the repository.
func path(rel string) string { return filepath.Join(repoRoot, filepath.FromSlash(rel)) }

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	flagsOnce sync.Once
	flagSet   map[string]bool
	flagsErr  error
)

// serveFlags returns the flags of `uploadgate serve`, read from its -h output.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		out, err := exec.Command(binary, "serve", "-h").CombinedOutput()
		if err != nil {
			flagsErr = fmt.Errorf("uploadgate serve -h: %v\n%s", err, out)
			return
		}
		flagSet = map[string]bool{}
		re := regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)(\s|$)`)
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			flagSet[m[1]] = true
		}
		for _, want := range []string{"listen", "data-dir", "secret-file", "storage", "redis-url"} {
			if !flagSet[want] {
				flagsErr = fmt.Errorf("uploadgate serve -h lists no -%s; the output changed its form:\n%s", want, out)
			}
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagSet
}

// envName is the environment variable of a flag: max-size → UPLOADGATE_MAX_SIZE.
func envName(flag string) string {
	return "UPLOADGATE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

var envRef = regexp.MustCompile(`UPLOADGATE_[A-Z0-9_]+`)

// checkEnvNames fails for every UPLOADGATE_* name in text that is not the
// variable of a flag of `uploadgate serve`.
func checkEnvNames(t *testing.T, where, text string) {
	t.Helper()
	valid := map[string]bool{}
	for f := range serveFlags(t) {
		valid[envName(f)] = true
	}
	for _, name := range envRef.FindAllString(text, -1) {
		if !valid[name] {
			t.Errorf("%s: %s is not the variable of a flag of uploadgate serve", where, name)
		}
	}
}

// checkFlagArgs fails for every argument "--name" or "--name=value" that is
// not a flag of `uploadgate serve`, and returns the flags' values.
func checkFlagArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	flags := serveFlags(t)
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("%s: %s is not a flag of uploadgate serve", where, a)
			continue
		}
		if !hasVal && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		vals[name] = val
	}
	return vals
}

// gateway is one running `uploadgate serve`.
type gateway struct {
	URL        string // http://127.0.0.1:PORT
	MetricsURL string // where /metrics is served
	logPath    string
	cmd        *exec.Cmd
	exited     chan struct{}
	waitErr    error
}

var listenLog = regexp.MustCompile(`"?msg"?[=:]"?(uploadgate listening|metrics listening)"?.*?"?addr"?[=:]"?([0-9.:\[\]a-f]+)`)

// startGateway runs bin with args (normally "serve" and flags that include
// --listen 127.0.0.1:0) and env added to this process's environment, and
// waits until it listens and /healthz answers 200. The process is stopped when
// the test ends; its log is printed if the test failed.
func startGateway(t *testing.T, bin string, args, env []string) *gateway {
	t.Helper()
	g := &gateway{logPath: filepath.Join(t.TempDir(), "uploadgate.log"), exited: make(chan struct{})}
	logf, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	g.cmd = exec.Command(bin, args...)
	g.cmd.Env = append(os.Environ(), env...)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(g.logPath)
			t.Logf("log of %s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	withMetrics := strings.Contains(strings.Join(append(append([]string{}, args...), env...), " "), "metrics-listen") ||
		strings.Contains(strings.Join(env, " "), "UPLOADGATE_METRICS_LISTEN=")
	for g.URL == "" || (g.MetricsURL == "" && withMetrics) {
		select {
		case <-g.exited:
			b, _ := os.ReadFile(g.logPath)
			t.Fatalf("uploadgate exited during start-up (%v):\n%s", g.waitErr, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(g.logPath)
			t.Fatalf("uploadgate did not log its listening address within 20 s:\n%s", b)
		}
		b, _ := os.ReadFile(g.logPath)
		for _, m := range listenLog.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "uploadgate listening" {
				g.URL = "http://" + m[2]
			} else {
				g.MetricsURL = "http://" + m[2]
			}
		}
	}
	if g.MetricsURL == "" {
		g.MetricsURL = g.URL
	}
	for {
		resp, err := http.Get(g.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz: no 200 within 20 s (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 40 s); it returns
// the exit error.
func (g *gateway) stop(t *testing.T) error {
	select {
	case <-g.exited:
		return g.waitErr
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(40 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
		t.Errorf("uploadgate did not stop within 40 s of SIGTERM")
	}
	return g.waitErr
}

// runToFailure runs `uploadgate serve` expecting it to refuse to start; it
// returns the exit code and the output.
func runToFailure(t *testing.T, args, env []string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("uploadgate %s ran for 30 s; it should have refused to start:\n%s", strings.Join(args, " "), out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("uploadgate %s: want a non-zero exit, got %v:\n%s", strings.Join(args, " "), err, out)
	}
	if strings.Contains(string(out), "uploadgate listening") {
		t.Errorf("uploadgate %s started listening before it failed:\n%s", strings.Join(args, " "), out)
	}
	return ee.ExitCode(), string(out)
}

// sign mints a slot with `uploadgate sign` and returns the PUT and GET URLs.
func sign(t *testing.T, secretFile, baseURL string, extra ...string) (putURL, getURL string) {
	t.Helper()
	args := append([]string{"sign", "--secret-file", secretFile, "--base-url", baseURL}, extra...)
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("uploadgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		t.Fatalf("uploadgate sign printed %q, want two URLs", out)
	}
	return lines[0], lines[1]
}

// do sends one request and returns the status, headers and body.
func do(t *testing.T, method, url string, body []byte, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// cutPut sends the headers of a PUT for the whole file and the first n bytes
// of its body, then closes the connection, as a client whose network went
// away does.
func cutPut(t *testing.T, putURL, contentType string, file []byte, n int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, putURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		req.URL.RequestURI(), req.URL.Host, contentType, len(file))
	if _, err := conn.Write(file[:n]); err != nil {
		t.Fatal(err)
	}
	// Let the gateway read what was sent before the connection goes.
	time.Sleep(300 * time.Millisecond)
}

// storedOffset asks a gateway, with HEAD on the signed PUT URL, how many bytes
// of the upload are stored, until it answers 200 with an offset of at least
// min (a cut request may still hold the upload for a moment).
func storedOffset(t *testing.T, putURL string, min int) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, h, _ := do(t, http.MethodHead, putURL, nil, nil)
		off := h.Get("Upload-Offset")
		if n, err := strconv.Atoi(off); status == http.StatusOK && err == nil && n >= min {
			return off
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s: %d, Upload-Offset %q; want 200 and at least %d within 15 s", putURL, status, off, min)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape returns the names of the samples served at /metrics.
func scrape(t *testing.T, g *gateway) map[string]bool {
	t.Helper()
	status, _, body := do(t, http.MethodGet, g.MetricsURL+"/metrics", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// needTool returns the path of a tool that `make deps` installs, or skips the
// test when skipVar=1, or fails it.
func needTool(t *testing.T, name, skipVar string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv(skipVar) == "1" {
		t.Skipf("%s not installed and %s=1", name, skipVar)
	}
	t.Fatalf("%s not found in PATH: run `make deps` (scripts/install-test-deps.sh installs it), or set %s=1 to skip", name, skipVar)
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonStrings returns the strings of a JSON array instruction argument such
// as ["uploadgate", "serve"].
func jsonStrings(s string) ([]string, error) {
	var out []string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

// Package e2e holds black-box tests: they build the uploadgate binary, run
// `uploadgate serve` on a loopback port and drive it with real clients.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/internal/testproc"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

var (
	// repoRoot is the repository's top directory.
	repoRoot string
	// binary is the uploadgate binary built for this test run.
	binary string
	// raceEnabled is set by race_test.go when the tests run with -race; the
	// server binary is then built with the race detector as well.
	raceEnabled bool
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "uploadgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "uploadgate")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/uploadgate")
	build := exec.Command("go", args...)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// findRepoRoot walks up from the working directory to the directory holding
// the uploadgate go.mod.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/uploadgate/uploadgate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod of github.com/uploadgate/uploadgate) not found")
		}
		dir = parent
	}
}

// server is one running `uploadgate serve`.
type server struct {
	URL     string // http://127.0.0.1:PORT
	DataDir string
	Secret  string
	LogPath string

	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	err       error         // the result of Wait, valid once exited is closed
	abandoned bool          // start-up failed and was reported (or retried) already
}

// startServer runs `uploadgate serve` on a free loopback port with a fresh
// data directory and secret, plus extra flags, and waits until /healthz
// answers 200. The process is stopped (SIGTERM, then SIGKILL) when the test
// ends; a non-zero exit status or a data race report fails the test, and the
// server's log is printed when the test failed.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s, err := tryStartServer(t, extra)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting uploadgate serve: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("port already in use")

func tryStartServer(t testing.TB, extra []string) (*server, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	s := &server{
		URL:     "http://127.0.0.1:" + strconv.Itoa(port),
		DataDir: filepath.Join(dir, "data"),
		Secret:  randomHex(t, 24),
		LogPath: filepath.Join(dir, "server.log"),
		exited:  make(chan struct{}),
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--data-dir", s.DataDir,
	}
	// A test that gives --secret-file gives its own secrets.
	if !slices.Contains(extra, "--secret-file") {
		args = append(args, "--secret", s.Secret)
	}
	args = append(args, extra...)
	s.cmd = exec.Command(binary, args...)
	s.cmd.Env = childEnv()
	if err := testproc.StartLogged(s.cmd, s.LogPath); err != nil {
		return nil, err
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })

	healthy := func() error {
		code, err := s.status("/healthz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/healthz answered %d", code)
		}
		return err
	}
	err = testproc.WaitReady(s.exited, 30*time.Second, 50*time.Millisecond, healthy)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, testproc.ErrExited):
		s.abandoned = true
		log := s.log()
		if strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%w: %d", errPortTaken, port)
		}
		return nil, fmt.Errorf("uploadgate serve exited before it was healthy (%v); log:\n%s", s.err, log)
	default:
		s.abandoned = true
		return nil, fmt.Errorf("/healthz did not answer 200 within 30s; log:\n%s", s.log())
	}
}

// stop ends the process: SIGTERM, up to 15 s for a graceful shutdown, then
// SIGKILL. Only this server's own PID is signalled.
func (s *server) stop(t testing.TB) {
	if testproc.Stop(s.cmd.Process, s.exited, 15*time.Second) {
		t.Errorf("uploadgate serve (pid %d) did not exit within 15s of SIGTERM; killed", s.cmd.Process.Pid)
	}
	log := s.log()
	if s.err != nil && !s.abandoned && !t.Failed() {
		t.Errorf("uploadgate serve (pid %d) exited with %v", s.cmd.Process.Pid, s.err)
	}
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a data race in uploadgate serve")
	}
	if t.Failed() {
		const keep = 64 * KiB
		if len(log) > keep {
			log = "…" + log[len(log)-keep:]
		}
		t.Logf("uploadgate serve log (%s):\n%s", s.URL, log)
	}
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// status GETs a path of the server and returns the status code.
func (s *server) status(p string) (int, error) {
	return testproc.HTTPStatus(s.URL + p)
}

// childEnv is the environment for processes the tests start, without any
// UPLOADGATE_* variable of the developer's shell that could change their
// configuration.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UPLOADGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort is a free port on 127.0.0.1.
func freePort() (int, error) {
	return testproc.FreePort()
}

// slot is what `uploadgate sign` prints.
type slot struct {
	PutURL        string
	GetURL        string
	Authorization string // "Bearer …" for JWT slots, else empty
}

// sign mints a slot for name with `uploadgate sign`; ctype is passed as
// --type when not empty, extra flags (such as --ttl) as they are.
func (s *server) sign(t testing.TB, protocol, name string, size int64, ctype string, extra ...string) slot {
	t.Helper()
	args := []string{"sign",
		"--secret", s.Secret,
		"--base-url", s.URL + "/upload/",
		"--size", strconv.FormatInt(size, 10),
		"--protocol", protocol,
	}
	if ctype != "" {
		args = append(args, "--type", ctype)
	}
	args = append(append(args, extra...), name)
	cmd := exec.Command(binary, args...)
	cmd.Env = childEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("uploadgate %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("uploadgate sign printed %q; want a PUT URL and a GET URL", out)
	}
	sl := slot{PutURL: lines[0], GetURL: lines[1]}
	for _, u := range []string{sl.PutURL, sl.GetURL} {
		if !strings.HasPrefix(u, s.URL+"/upload/") {
			t.Fatalf("uploadgate sign printed URL %q; want one under %s/upload/", u, s.URL)
		}
	}
	if len(lines) > 2 {
		v, ok := strings.CutPrefix(lines[2], "Authorization: ")
		if !ok {
			t.Fatalf("uploadgate sign printed %q as line 3; want Authorization: …", lines[2])
		}
		sl.Authorization = v
	}
	if protocol == "jwt" && sl.Authorization == "" {
		t.Fatalf("uploadgate sign --protocol jwt printed no Authorization line: %q", out)
	}
	return sl
}

// tusState is what HEAD on an upload URL reports.
type tusState struct {
	Status int
	Offset int64 // -1 when absent
	Length int64 // -1 when absent
}

func headUpload(t testing.TB, uploadURL string) tusState {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, uploadURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("HEAD %s: %v", uploadURL, err)
	}
	resp.Body.Close()
	num := func(name string) int64 {
		v := resp.Header.Get(name)
		if v == "" {
			return -1
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("HEAD %s: %s: %q is not a number", uploadURL, name, v)
		}
		return n
	}
	return tusState{Status: resp.StatusCode, Offset: num("Upload-Offset"), Length: num("Upload-Length")}
}

// settledOffset polls HEAD until it answers 2xx with the same Upload-Offset
// twice in a row 100 ms apart, for an upload whose last PATCH was cut off and
// may still be finishing on the server.
func settledOffset(t testing.TB, uploadURL string) int64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := int64(-2)
	var st tusState
	for time.Now().Before(deadline) {
		st = headUpload(t, uploadURL)
		if st.Status/100 == 2 && st.Offset >= 0 {
			if st.Offset == last {
				return st.Offset
			}
			last = st.Offset
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("HEAD %s did not settle within 15s; last answer %+v", uploadURL, st)
	return 0
}

// uploadID is the last path segment of an upload URL.
func uploadID(t testing.TB, uploadURL string) string {
	t.Helper()
	u, err := url.Parse(uploadURL)
	if err != nil {
		t.Fatalf("upload URL %q: %v", uploadURL, err)
	}
	id := path.Base(u.Path)
	if id == "" || id == "." || id == "/" {
		t.Fatalf("upload URL %q has no ID", uploadURL)
	}
	return id
}

// storedSHA256 hashes the bytes of upload id in the disk store.
func (s *server) storedSHA256(t testing.TB, id string) (string, int64) {
	t.Helper()
	return fileSHA256(t, filepath.Join(s.DataDir, "uploads", id))
}

func fileSHA256(t testing.TB, p string) (string, int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// download GETs u and returns the response headers and the SHA-256 and length
// of the body.
func download(t testing.TB, u string) (*http.Response, string, int64) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", u, err)
	}
	return resp, hex.EncodeToString(h.Sum(nil)), n
}

// randomFile writes size random bytes to a new file in a temporary directory
// and returns its path and SHA-256.
func randomFile(t testing.TB, name string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), MiB)
	if _, err := io.CopyN(w, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tusResult is the JSON line test/js/tus-upload.mjs prints.
type tusResult struct {
	OK            bool   `json:"ok"`
	Error         string `json:"error"`
	URL           string `json:"url"`
	Size          int64  `json:"size"`
	OffsetAtStart *int64 `json:"offsetAtStart"`
	BytesUploaded int64  `json:"bytesUploaded"`
	BytesSent     int64  `json:"bytesSent"`
	// BytesTransferred counts the body bytes of all PATCH requests.
	BytesTransferred int64          `json:"bytesTransferred"`
	Interrupted      bool           `json:"interrupted"`
	Requests         map[string]int `json:"requests"`
	Statuses         []string       `json:"statuses"`
}

// requireNode fails the test when Node.js or the npm packages of test/js are
// missing, or skips it when UPLOADGATE_E2E_SKIP_NODE=1 asks for that.
func requireNode(t testing.TB) {
	t.Helper()
	skip := os.Getenv("UPLOADGATE_E2E_SKIP_NODE") == "1"
	if _, err := exec.LookPath("node"); err != nil {
		if skip {
			t.Skip("node not found; skipped because UPLOADGATE_E2E_SKIP_NODE=1")
		}
		t.Fatal("node (Node.js >= 18) not found in PATH: run `make deps` (scripts/install-test-deps.sh), " +
			"or set UPLOADGATE_E2E_SKIP_NODE=1 to skip the tests that need it")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "test", "js", "node_modules", "tus-js-client", "package.json")); err != nil {
		if skip {
			t.Skip("test/js/node_modules is not installed; skipped because UPLOADGATE_E2E_SKIP_NODE=1")
		}
		t.Fatal("test/js/node_modules/tus-js-client is missing: run `make deps` (scripts/install-test-deps.sh)")
	}
}

// runTus runs test/js/tus-upload.mjs with args and returns its result. It fails
// the test when the script does not print a result line, or when its exit
// status disagrees with the result's ok field. An ok:false result is returned
// for the caller to judge.
func runTus(t testing.TB, args ...string) tusResult {
	t.Helper()
	requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"tus-upload.mjs"}, args...)...)
	cmd.Dir = filepath.Join(repoRoot, "test", "js")
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res tusResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
		t.Fatalf("node tus-upload.mjs %s: %v; no JSON result (%v)\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, jerr, stdout.Bytes(), stderr.Bytes())
	}
	if (err == nil) != res.OK {
		t.Fatalf("node tus-upload.mjs %s: exit status %v disagrees with the result %s\nstderr:\n%s",
			strings.Join(args, " "), err, lines[len(lines)-1], stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("tus-upload.mjs stderr:\n%s", stderr.Bytes())
	}
	return res
}

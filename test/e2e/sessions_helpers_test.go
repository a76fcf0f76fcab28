package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// Helpers of the upload-session tests (sessions_test.go); their names start
// with sess so that they do not collide with the other files of the package.

// sessAnswer is a response whose body has been read.
type sessAnswer struct {
	Status int
	Header http.Header
	Body   string
}

func (a sessAnswer) String() string {
	s := fmt.Sprintf("%d %q", a.Status, strings.TrimSpace(a.Body))
	if v := a.Header.Get("Upload-Offset"); v != "" {
		s += " Upload-Offset: " + v
	}
	return s
}

// offset is the answer's Upload-Offset, -1 when absent.
func (a sessAnswer) offset(t testing.TB) int64 {
	t.Helper()
	v := a.Header.Get("Upload-Offset")
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("Upload-Offset %q is not a number", v)
	}
	return n
}

// sessClientFrom is an HTTP client whose connections leave from the loopback
// address ip (on Linux all of 127.0.0.0/8 is on lo), standing for one network
// of a mobile client.
func sessClientFrom(t testing.TB, ip string) *http.Client {
	t.Helper()
	a := net.ParseIP(ip)
	if a == nil || !a.IsLoopback() {
		t.Fatalf("source address %q: want a loopback address", ip)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: a}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// sessHeader builds a header from name/value pairs; pairs with an empty value are left out.
func sessHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			h.Set(kv[i], kv[i+1])
		}
	}
	return h
}

// sessSend makes one request (body nil: none) and reads the whole answer.
func sessSend(t testing.TB, c *http.Client, method, u string, h http.Header, body []byte) sessAnswer {
	t.Helper()
	a, err := sessTrySend(c, method, u, h, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return a
}

// sessTrySend is sessSend for goroutines other than the test's own.
func sessTrySend(c *http.Client, method, u string, h http.Header, body []byte) (sessAnswer, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return sessAnswer{}, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return sessAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return sessAnswer{}, fmt.Errorf("reading the answer: %w", err)
	}
	return sessAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// sessCreate POSTs a tus creation for a file of size bytes to the slot's URL,
// with the slot's Authorization (if any), the metadata filename and, when
// ctype is not empty, filetype; extra are more header name/value pairs.
func sessCreate(t testing.TB, c *http.Client, sl slot, name string, size int64, ctype string, extra ...string) sessAnswer {
	t.Helper()
	meta := "filename " + base64.StdEncoding.EncodeToString([]byte(name))
	if ctype != "" {
		meta += ",filetype " + base64.StdEncoding.EncodeToString([]byte(ctype))
	}
	h := sessHeader(append([]string{
		"Tus-Resumable", "1.0.0",
		"Upload-Length", strconv.FormatInt(size, 10),
		"Upload-Metadata", meta,
		"Authorization", sl.Authorization,
	}, extra...)...)
	return sessSend(t, c, http.MethodPost, sl.PutURL, h, nil)
}

// sessPatch sends chunk at offset to a tus upload URL; extra are more header
// name/value pairs.
func sessPatch(t testing.TB, c *http.Client, u string, offset int64, chunk []byte, extra ...string) sessAnswer {
	t.Helper()
	h := sessHeader(append([]string{
		"Tus-Resumable", "1.0.0",
		"Upload-Offset", strconv.FormatInt(offset, 10),
		"Content-Type", "application/offset+octet-stream",
	}, extra...)...)
	return sessSend(t, c, http.MethodPatch, u, h, chunk)
}

// sessHead sends HEAD to an upload URL or to a signed slot URL (authorization:
// the slot's Authorization header value, or empty); extra are more header
// name/value pairs.
func sessHead(t testing.TB, c *http.Client, u, authorization string, extra ...string) sessAnswer {
	t.Helper()
	h := sessHeader(append([]string{"Tus-Resumable", "1.0.0", "Authorization", authorization}, extra...)...)
	return sessSend(t, c, http.MethodHead, u, h, nil)
}

// sessMustStatus fails the test unless a answered want.
func sessMustStatus(t testing.TB, what string, a sessAnswer, want int) {
	t.Helper()
	if a.Status != want {
		t.Fatalf("%s: %s; want %d", what, a, want)
	}
}

// sessWaitOffset polls HEAD on u (an upload URL, or a slot URL with its
// authorization) until it answers 200 with Upload-Offset want.
func sessWaitOffset(t testing.TB, c *http.Client, u, authorization string, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var a sessAnswer
	for time.Now().Before(deadline) {
		a = sessHead(t, c, u, authorization)
		if a.Status == http.StatusOK && a.offset(t) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("HEAD %s: last answer %s; want 200 with Upload-Offset %d within 15s", u, a, want)
}

// sessRandomBytes returns n random bytes and their SHA-256.
func sessRandomBytes(t testing.TB, n int64) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// sessMintSlot signs a slot the way an XMPP server would, with the server's
// secret, as of now (zero: the current time), valid for ttl (v3 and jwt).
func sessMintSlot(t testing.TB, s *server, proto auth.Protocol, name string, size int64, ctype *string, ttl time.Duration, now time.Time) slot {
	t.Helper()
	ss, err := auth.SignSlot(s.Secret, auth.SignRequest{
		BaseURL:  s.URL + "/upload/",
		Name:     name,
		Size:     size,
		Type:     ctype,
		Protocol: proto,
		TTL:      ttl,
		Now:      now,
	})
	if err != nil {
		t.Fatalf("sign a %s slot: %v", proto, err)
	}
	return slot{PutURL: ss.PutURL, GetURL: ss.GetURL, Authorization: ss.Authorization}
}

// sessExpiringSlot mints a v3 or jwt slot that the gateway accepts for about
// validFor more (it was issued a verifier's clock leeway ago), and returns the
// instant after which the gateway surely refuses it as expired: its expiry
// plus that leeway. No test has to wait out the leeway itself.
func sessExpiringSlot(t testing.TB, s *server, proto auth.Protocol, name string, size int64, ctype *string, validFor time.Duration) (slot, time.Time) {
	t.Helper()
	issued := time.Now().Add(-auth.DefaultLeeway)
	sl := sessMintSlot(t, s, proto, name, size, ctype, validFor, issued)
	// Both v3 expires and JWT exp are whole seconds, rounded down.
	expires := time.Unix(issued.Add(validFor).Unix(), 0)
	return sl, expires.Add(auth.DefaultLeeway).Add(100 * time.Millisecond)
}

// sessForge returns a slot URL whose query signature (v, v2, v3 or token) has
// been altered in its last hex digit.
func sessForge(t testing.TB, putURL string) string {
	t.Helper()
	u, err := url.Parse(putURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for _, k := range []string{"v3", "v2", "token", "v"} {
		if v := q.Get(k); v != "" {
			last := v[len(v)-1]
			repl := "0"
			if last == '0' {
				repl = "1"
			}
			q.Set(k, v[:len(v)-1]+repl)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	t.Fatalf("slot URL %s has no query signature", putURL)
	return ""
}

// sessCutPut sends a PUT announcing a body of total bytes with the headers h, but
// only part of the body, and then closes its side of the connection: a client
// whose network went away mid-upload. It returns the gateway's answer's status
// line, if one came.
func sessCutPut(t testing.TB, rawURL string, h http.Header, total int64, part []byte) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", u.RequestURI(), u.Host, total)
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\r\n")
	if _, err := conn.Write(append(b.Bytes(), part...)); err != nil {
		t.Fatalf("PUT %s: writing the first %d bytes: %v", rawURL, len(part), err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, _ := io.ReadAll(conn) // a reset or a timeout only means no answer
	line, _, _ := strings.Cut(string(resp), "\r\n")
	return line
}

// sessMetric reads one series from the server's /metrics (e.g.
// `uploadgate_rebinds_total` or `uploadgate_session_accepts_total{door="put"}`)
// and reports whether it was there.
func (s *server) sessMetric(t testing.TB, series string) (float64, bool) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	a := sessSend(t, c, http.MethodGet, s.URL+"/metrics", nil, nil)
	sessMustStatus(t, "GET /metrics", a, http.StatusOK)
	for _, line := range strings.Split(a.Body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// sessCheckDownload GETs a slot's GET URL and compares the file with the
// expected SHA-256 and size (and, when ctype is not empty, its type).
func sessCheckDownload(t testing.TB, getURL string, size int64, sum, ctype string) {
	t.Helper()
	resp, got, n := download(t, getURL)
	if resp.StatusCode != http.StatusOK || got != sum || n != size {
		t.Errorf("GET %s: status %d, %d bytes, SHA-256 %s; want 200, %d bytes, %s",
			getURL, resp.StatusCode, n, got, size, sum)
	}
	if ct := resp.Header.Get("Content-Type"); ctype != "" && !strings.HasPrefix(ct, ctype) {
		t.Errorf("GET %s: Content-Type %q; want %q", getURL, ct, ctype)
	}
}

// sessCheckStored compares the bytes of upload URL u in the disk store with the
// expected SHA-256 and size.
func sessCheckStored(t testing.TB, s *server, u string, size int64, sum string) {
	t.Helper()
	got, n := s.storedSHA256(t, uploadID(t, u))
	if got != sum || n != size {
		t.Errorf("stored upload %s: %d bytes, SHA-256 %s; want %d bytes, %s", u, n, got, size, sum)
	}
}

// sessStoredSize is the number of bytes of upload id on disk (-1: no file yet).
func (s *server) sessStoredSize(id string) int64 {
	fi, err := os.Stat(filepath.Join(s.DataDir, "uploads", id))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// sessWaitStored polls the disk store until upload id holds want bytes: the
// gateway has written everything sent so far.
func (s *server) sessWaitStored(t testing.TB, id string, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.sessStoredSize(id) < want {
		if time.Now().After(deadline) {
			t.Fatalf("upload %s holds %d bytes on disk after 15s; want %d", id, s.sessStoredSize(id), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessKill ends the server with SIGKILL (no graceful shutdown) and waits for it.
func (s *server) sessKill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL uploadgate serve (pid %d): %v", s.cmd.Process.Pid, err)
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("uploadgate serve (pid %d) still runs 10s after SIGKILL", s.cmd.Process.Pid)
	}
	// The exit status is the kill's, not a failure of the server.
	s.abandoned = true
}

// sessRestart starts `uploadgate serve` again on the port, data directory
// and secret of old, which has exited, with the flags extra, and waits until
// /healthz answers 200. It is stopped when the test ends, like startServer's.
func sessRestart(t testing.TB, old *server, extra ...string) *server {
	t.Helper()
	select {
	case <-old.exited:
	default:
		t.Fatal("restartServer: the old server still runs")
	}
	hostPort := strings.TrimPrefix(old.URL, "http://")
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		s := &server{
			URL:     old.URL,
			DataDir: old.DataDir,
			Secret:  old.Secret,
			LogPath: filepath.Join(t.TempDir(), fmt.Sprintf("server-restart-%d.log", attempt)),
			exited:  make(chan struct{}),
		}
		logFile, err := os.Create(s.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"serve", "--listen", hostPort, "--data-dir", s.DataDir, "--secret", s.Secret}, extra...)
		s.cmd = exec.Command(binary, args...)
		s.cmd.Env = childEnv()
		s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
		err = s.cmd.Start()
		logFile.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			s.err = s.cmd.Wait()
			close(s.exited)
		}()
		t.Cleanup(func() { s.stop(t) })
		err = sessWaitHealthy(s, deadline)
		if err == nil {
			return s
		}
		s.abandoned = true
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			t.Fatalf("restarting uploadgate serve on %s: %v", hostPort, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sessWaitHealthy waits until s answers /healthz with 200.
func sessWaitHealthy(s *server, deadline time.Time) error {
	for {
		select {
		case <-s.exited:
			log := s.log()
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, s.URL)
			}
			return fmt.Errorf("exited before it was healthy (%v); log:\n%s", s.err, log)
		default:
		}
		if code, err := s.status("/healthz"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/healthz did not answer 200 in time; log:\n%s", s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessSlowBody streams data into a request body in pieces of step bytes, one
// every pause, until it is all written or the request stops reading. With
// hold it then stalls instead of ending the body, until stop.
type sessSlowBody struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	quit chan struct{}
	once sync.Once
	done chan struct{}
}

func newSessSlowBody(data []byte, step int, pause time.Duration, hold bool) *sessSlowBody {
	pr, pw := io.Pipe()
	b := &sessSlowBody{pr: pr, pw: pw, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for off := 0; off < len(data); off += step {
			if _, err := pw.Write(data[off:min(off+step, len(data))]); err != nil {
				return
			}
			if pause > 0 {
				select {
				case <-time.After(pause):
				case <-b.quit:
					return
				}
			}
		}
		if hold {
			<-b.quit
			return
		}
		pw.Close()
	}()
	return b
}

// stop ends the body early (if it is still being written) and waits for the
// writer. It may be called more than once.
func (b *sessSlowBody) stop() {
	b.once.Do(func() {
		close(b.quit)
		b.pr.CloseWithError(errors.New("body stopped by the test"))
	})
	<-b.done
}

// sessPatchResult is how a streamed PATCH ended.
type sessPatchResult struct {
	a   sessAnswer
	err error
}

// sessStartPatch sends a PATCH at offset whose body comes from body, of length
// bytes, in the background.
func sessStartPatch(c *http.Client, u string, offset, length int64, body io.Reader) <-chan sessPatchResult {
	out := make(chan sessPatchResult, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPatch, u, body)
		if err != nil {
			out <- sessPatchResult{err: err}
			return
		}
		req.ContentLength = length
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		resp, err := c.Do(req)
		if err != nil {
			out <- sessPatchResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- sessPatchResult{a: sessAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}}
	}()
	return out
}

package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	encbinary "encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/internal/testredis"
	"github.com/uploadgate/uploadgate/internal/tests3"
)

// Helpers of the scale-out tests (scaleout_test.go); their names start with
// scale so that they do not collide with the other files of the package.

// scaleCluster is what several gateway instances share: one redis-server (sessions
// and upload locks), one versitygw bucket (the uploads), the slot secret and
// the upload-ID key.
type scaleCluster struct {
	redis    *testredis.Server  // one redis-server, or
	cluster  *testredis.Cluster // a Redis Cluster (newScaleRedisCluster)
	redisURL string             // the --redis-url of either
	s3       *tests3.Server
	secret   string
	idKey    string
}

// newScaleCluster starts redis-server and versitygw and puts the S3
// credentials into the test's environment, from where the harness passes them
// to the gateways it starts (t.Setenv: the test must not be parallel).
func newScaleCluster(t *testing.T) *scaleCluster {
	t.Helper()
	r := testredis.Start(t)
	return newScaleShared(t, &scaleCluster{redis: r, redisURL: "redis://" + r.Addr + "/0"})
}

// newScaleRedisCluster is newScaleCluster with a three-master Redis Cluster
// (redis+cluster://, the sharded session layout) instead of one redis-server.
func newScaleRedisCluster(t *testing.T) *scaleCluster {
	t.Helper()
	rc := testredis.StartCluster(t, 3)
	addrs := rc.Addrs()
	u := "redis+cluster://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	return newScaleShared(t, &scaleCluster{cluster: rc, redisURL: u})
}

// newScaleShared adds versitygw, the secret and the ID key to c.
func newScaleShared(t *testing.T, c *scaleCluster) *scaleCluster {
	t.Helper()
	c.s3 = tests3.Start(t)
	c.secret = randomHex(t, 24)
	c.idKey = randomHex(t, 32)
	c.s3.Setenv(t)
	return c
}

// start runs one gateway instance of the cluster: its own data directory,
// holding the cluster's id.key, and the cluster's secret, S3 bucket and Redis.
func (c *scaleCluster) start(t *testing.T) *server {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id.key"), []byte(c.idKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The harness puts its own --data-dir and --secret first: a later
	// --data-dir wins, and --secret adds the cluster's secret to the
	// instance's own (all of them verify).
	s := startServer(t,
		"--data-dir", dir,
		"--secret", c.secret,
		"--storage", "s3",
		"--s3-bucket", c.s3.Bucket,
		"--s3-endpoint", c.s3.Endpoint,
		"--s3-path-style",
		"--redis-url", c.redisURL,
	)
	s.DataDir = dir
	s.Secret = c.secret // s.sign mints slots with the cluster's secret
	return s
}

// derivedID is the upload ID the cluster's id.key derives from the path of
// a slot's PUT URL.
func (c *scaleCluster) derivedID(t testing.TB, putURL string) string {
	t.Helper()
	u, err := url.Parse(putURL)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(u.Path, "/upload/")
	if !ok {
		t.Fatalf("slot URL %q is not under /upload/", putURL)
	}
	key, err := hex.DecodeString(c.idKey)
	if err != nil {
		t.Fatal(err)
	}
	return auth.DeriveUploadID(key, p)
}

// scaleOn is u with its scheme and host replaced by those of instance s: the
// same slot or upload URL, asked at another instance.
func scaleOn(t testing.TB, u string, s *server) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("URL %q: %v", u, err)
	}
	base, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.Scheme, p.Host = base.Scheme, base.Host
	return p.String()
}

// scaleSum is the hex SHA-256 of b.
func scaleSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// scaleClient is an HTTP client that keeps no connections between requests,
// so that every request of a test is a fresh connection to the instance it
// names.
func scaleClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// scaleGet GETs u (with a Range header when rng is not empty) and returns the
// answer with its whole body.
func scaleGet(t testing.TB, u, rng string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := scaleClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", u, err)
	}
	return resp.StatusCode, resp.Header, b
}

// scaleCheckDownload GETs the slot's GET URL at instance s, whole and with a
// Range of [from, to], and compares both with data by SHA-256.
func scaleCheckDownload(t testing.TB, s *server, getURL string, data []byte, from, to int64) {
	t.Helper()
	u := scaleOn(t, getURL, s)
	status, _, body := scaleGet(t, u, "")
	if status != http.StatusOK || len(body) != len(data) || scaleSum(body) != scaleSum(data) {
		t.Errorf("GET %s: %d, %d bytes, SHA-256 %s; want 200, %d bytes, %s",
			u, status, len(body), scaleSum(body), len(data), scaleSum(data))
	}
	rng := fmt.Sprintf("bytes=%d-%d", from, to)
	status, h, body := scaleGet(t, u, rng)
	want := data[from : to+1]
	wantCR := fmt.Sprintf("bytes %d-%d/%d", from, to, len(data))
	if status != http.StatusPartialContent || h.Get("Content-Range") != wantCR || scaleSum(body) != scaleSum(want) {
		t.Errorf("GET %s with Range: %s: %d, Content-Range %q, %d bytes, SHA-256 %s; want 206, %q, %d bytes, %s",
			u, rng, status, h.Get("Content-Range"), len(body), scaleSum(body), wantCR, len(want), scaleSum(want))
	}
}

// scaleHeadResult is how a poll of HEAD ended.
type scaleHeadResult struct {
	last    sessAnswer
	locked  int           // 423 answers before the last one
	elapsed time.Duration // from the first HEAD to the last answer
}

// scaleWaitOffset sends HEAD to u until it answers 200 with an Upload-Offset
// in [lo, hi]. u is a tus upload URL (tus: with Tus-Resumable) or a signed
// slot URL of the PUT door (as an XMPP client asks, without it). 423 (busy, or
// the session store unavailable) and 200 with an offset below lo (a write
// still being saved) are retried; any other answer fails the test, as does no
// success within timeout.
func scaleWaitOffset(t testing.TB, u string, tus bool, lo, hi int64, timeout time.Duration) scaleHeadResult {
	t.Helper()
	c := scaleClient()
	h := http.Header{}
	if tus {
		h.Set("Tus-Resumable", "1.0.0")
	}
	start := time.Now()
	deadline := start.Add(timeout)
	var r scaleHeadResult
	for {
		r.last = sessSend(t, c, http.MethodHead, u, h, nil)
		r.elapsed = time.Since(start)
		off := r.last.offset(t)
		switch {
		case r.last.Status == http.StatusOK && off >= lo && off <= hi:
			return r
		case r.last.Status == http.StatusOK && off >= 0 && off < lo:
		case r.last.Status == http.StatusLocked:
			r.locked++
		default:
			t.Fatalf("HEAD %s after %v: %s; want 200 with Upload-Offset in [%d, %d] (or 423 while busy)", u, r.elapsed, r.last, lo, hi)
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD %s: last answer %s after %v; want 200 with Upload-Offset in [%d, %d] within %v",
				u, r.last, r.elapsed, lo, hi, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scaleRaw is a request written by hand on a TCP connection, so that the test
// decides when each byte of the body leaves, and when the body stops.
type scaleRaw struct {
	t    testing.TB
	what string
	conn *net.TCPConn
}

// scaleOpen connects to the host of rawURL and sends the request line and
// header of a request whose body will be length bytes.
func scaleOpen(t testing.TB, method, rawURL string, h http.Header, length int64) *scaleRaw {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	r := &scaleRaw{t: t, what: method + " " + rawURL, conn: conn.(*net.TCPConn)}
	t.Cleanup(func() { r.conn.Close() })
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", method, u.RequestURI(), u.Host, length)
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\r\n")
	r.write(b.Bytes())
	return r
}

// write sends p as the next bytes of the request.
func (r *scaleRaw) write(p []byte) {
	r.t.Helper()
	if err := r.conn.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.Write(p); err != nil {
		r.t.Fatalf("%s: writing %d bytes: %v", r.what, len(p), err)
	}
}

// cut ends the body early, as a client whose network went away does after
// everything it wrote has left: it closes its sending side and returns the
// status line of the gateway's answer, if one came before the connection
// closed.
func (r *scaleRaw) cut() string {
	r.t.Helper()
	if err := r.conn.CloseWrite(); err != nil {
		r.t.Fatalf("%s: closing the sending side: %v", r.what, err)
	}
	line, _ := r.answer(30 * time.Second)
	return line
}

// answer reads until the gateway closes the connection or timeout passes, and
// returns the status line it sent ("" for none) and whether the gateway
// closed the connection within timeout (a reset counts as closed).
func (r *scaleRaw) answer(timeout time.Duration) (string, bool) {
	r.t.Helper()
	if err := r.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		r.t.Fatal(err)
	}
	br := bufio.NewReader(r.conn)
	line, _ := br.ReadString('\n')
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	return strings.TrimSpace(line), !timedOut
}

// waitReceived waits until the gateway process has read every byte written on
// the connection so far: the client's send queue and the gateway's receive
// queue of this connection are both empty (Linux, /proc/net/tcp). Without
// this, bytes still in a socket buffer when the test acts would make the
// expected offset a guess.
func (r *scaleRaw) waitReceived(timeout time.Duration) {
	r.t.Helper()
	local := r.conn.LocalAddr().(*net.TCPAddr)
	remote := r.conn.RemoteAddr().(*net.TCPAddr)
	deadline := time.Now().Add(timeout)
	for {
		tx, rx, err := scaleQueues(local, remote)
		if err != nil {
			r.t.Fatalf("%s: reading the socket queues: %v", r.what, err)
		}
		if tx == 0 && rx == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: after %v, %d bytes are still unsent and %d unread by the gateway", r.what, timeout, tx, rx)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scaleQueues reads /proc/net/tcp for the loopback connection local→remote
// and returns the send queue of the local socket and the receive queue of
// the remote one (the peer's socket of the same connection).
func scaleQueues(local, remote *net.TCPAddr) (tx, rx int64, err error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, 0, fmt.Errorf("%w (the scale-out tests need Linux's /proc/net/tcp)", err)
	}
	l, rm := scaleProcAddr(local), scaleProcAddr(remote)
	if l == "" || rm == "" {
		return 0, 0, fmt.Errorf("%v → %v is not an IPv4 connection", local, remote)
	}
	foundL, foundR := false, false
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		txS, rxS, ok := strings.Cut(f[4], ":")
		if !ok {
			continue
		}
		switch {
		case f[1] == l && f[2] == rm:
			foundL = true
			tx, err = strconv.ParseInt(txS, 16, 64)
		case f[1] == rm && f[2] == l:
			foundR = true
			rx, err = strconv.ParseInt(rxS, 16, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/net/tcp: %q: %w", line, err)
		}
	}
	if !foundL || !foundR {
		return 0, 0, fmt.Errorf("connection %v → %v not found in /proc/net/tcp (ours %v, the gateway's %v)", local, remote, foundL, foundR)
	}
	return tx, rx, nil
}

// scaleProcAddr is addr as /proc/net/tcp writes it: the IPv4 address as a
// native-endian 32-bit number and the port, both in upper-case hex.
func scaleProcAddr(a *net.TCPAddr) string {
	ip4 := a.IP.To4()
	if ip4 == nil {
		return ""
	}
	return fmt.Sprintf("%08X:%04X", encbinary.NativeEndian.Uint32(ip4), a.Port)
}

// scaleTusHeader is the header of a tus PATCH at offset.
func scaleTusHeader(offset int64) http.Header {
	return sessHeader(
		"Tus-Resumable", "1.0.0",
		"Upload-Offset", strconv.FormatInt(offset, 10),
		"Content-Type", "application/offset+octet-stream",
	)
}

// scaleMustRetryLater fails the test unless a has status want (503, or 423
// for a tus HEAD) and Retry-After; it names 401, 403 and 404 specially, since
// those would make a client give the upload up.
func scaleMustRetryLater(t testing.TB, what string, a sessAnswer, want int) {
	t.Helper()
	switch {
	case a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden || a.Status == http.StatusNotFound:
		t.Errorf("%s while Redis is down: %s; a client gives the upload up on this; want %d", what, a, want)
	case a.Status != want:
		t.Errorf("%s while Redis is down: %s; want %d", what, a, want)
	case a.Header.Get("Retry-After") == "":
		t.Errorf("%s while Redis is down: %s without Retry-After", what, a)
	}
}

// scaleSlot mints a v2 slot for name at instance s with the cluster's secret,
// in process (as `uploadgate sign` does, without a process start per slot).
func scaleSlot(t testing.TB, s *server, name string, size int64, ctype string) slot {
	t.Helper()
	return sessMintSlot(t, s, auth.ProtoV2, name, size, &ctype, 0, time.Time{})
}

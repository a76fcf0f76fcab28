package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
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
	"sync/atomic"
	"syscall"
	"time"
)

// faultEnv is what the fault cases share.
type faultEnv struct {
	Short bool
	// UG is the uploadgate binary, Self this program (or a test binary that
	// runs `serve-…` when ULBENCH_SERVE=1).
	UG, Self string
	// SelfEnv is added to the environment of Self's server processes.
	SelfEnv []string
	Dir     string
	Logf    func(format string, args ...any)
	n       atomic.Int64
}

// errSkip marks a case that cannot run here (with the reason).
type errSkip struct{ reason string }

func (e errSkip) Error() string { return "skipped: " + e.reason }

type faultCase struct {
	Name string
	Run  func(*faultEnv) error
}

var faultCases = []faultCase{
	{"kill-resume-disk", func(e *faultEnv) error { return e.killResume(false) }},
	{"kill-resume-s3", func(e *faultEnv) error { return e.killResume(true) }},
	{"many-small", (*faultEnv).manySmall},
	{"slowloris", (*faultEnv).slowloris},
	{"disk-full", (*faultEnv).diskFull},
}

func runFaults(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	short := fs.Bool("short", false, "smaller sizes and a short body timeout (the in-process gateway) — what `make test` runs")
	ug := fs.String("uploadgate", "", "uploadgate binary (built from ./cmd/uploadgate when empty)")
	cases := fs.String("cases", "", "comma-separated cases (default: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ulbench-faults-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e := &faultEnv{Short: *short, UG: *ug, Self: self, Dir: dir,
		Logf: func(f string, a ...any) { fmt.Fprintf(stdout, "   "+f+"\n", a...) }}
	if e.UG == "" {
		e.UG = filepath.Join(dir, "uploadgate")
		if err := goBuild(e.UG, "./cmd/uploadgate"); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, c := range strings.Split(*cases, ",") {
		if c = strings.TrimSpace(c); c != "" {
			want[c] = true
		}
	}
	failed := 0
	for _, c := range faultCases {
		if len(want) > 0 && !want[c.Name] {
			continue
		}
		fmt.Fprintf(stdout, "== %s (load average %s)\n", c.Name, loadAvg())
		start := time.Now()
		err := c.Run(e)
		var sk errSkip
		switch {
		case errors.As(err, &sk):
			fmt.Fprintf(stdout, "-- SKIP %s: %s\n", c.Name, sk.reason)
		case err != nil:
			failed++
			fmt.Fprintf(stdout, "-- FAIL %s (%.1f s): %v\n", c.Name, time.Since(start).Seconds(), err)
		default:
			fmt.Fprintf(stdout, "-- ok   %s (%.1f s)\n", c.Name, time.Since(start).Seconds())
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d fault cases failed", failed)
	}
	return nil
}

func (e *faultEnv) subdir(name string) string {
	d := filepath.Join(e.Dir, fmt.Sprintf("%s-%d", name, e.n.Add(1)))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// startUG runs the uploadgate binary on dataDir.
func (e *faultEnv) startUG(name, dataDir string, env []string, extra ...string) (*target, error) {
	secret := randHex(24)
	args := append([]string{"serve", "--listen", "{addr}", "--data-dir", dataDir, "--secret", secret, "--log-level", "warn"}, extra...)
	p, err := startProc(name, e.UG, args, env, dataDir, filepath.Join(filepath.Dir(dataDir), name+".log"), "/healthz")
	if err != nil {
		return nil, err
	}
	return &target{Name: name, Server: p, Secret: secret}, nil
}

// startInProcGateway runs `ulbench serve-gateway` (the gateway wired in
// process) with a per-read network timeout.
func (e *faultEnv) startInProcGateway(name string, timeout time.Duration) (*target, error) {
	dir := e.subdir(name)
	secret := randHex(24)
	data := filepath.Join(dir, "data")
	args := []string{"serve-gateway", "--listen", "{addr}", "--data-dir", data, "--secret", secret, "--network-timeout", timeout.String()}
	p, err := startProc(name, e.Self, args, e.SelfEnv, data, filepath.Join(dir, name+".log"), "/healthz")
	if err != nil {
		return nil, err
	}
	return &target{Name: name, Server: p, Secret: secret}, nil
}

// gate is a body that stops after n bytes until released, then fails.
type gate struct {
	r       io.Reader
	n       int64
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(r io.Reader, n int64) *gate {
	return &gate{r: r, n: n, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) Read(p []byte) (int, error) {
	if g.n <= 0 {
		g.once.Do(func() { close(g.reached) })
		<-g.release
		return 0, errors.New("client gave up")
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	k, err := g.r.Read(p)
	g.n -= int64(k)
	return k, err
}

// getSHA downloads u and returns the SHA-256 of the body.
func getSHA(ctx context.Context, c *http.Client, u string) (int, string, int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := c.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	defer res.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	return res.StatusCode, hex.EncodeToString(h.Sum(nil)), n, err
}

// killResume: SIGKILL the server while a PATCH (tus door) and a PUT (XEP-0363
// door) are half sent, restart it, resume both and compare every byte.
func (e *faultEnv) killResume(s3 bool) error {
	size := int64(256 * MiB)
	if e.Short {
		size = 48 * MiB
	}
	var env, extra []string
	name := "ug-disk"
	if s3 {
		name = "ug-s3"
		gw, err := startVersityGW(e.subdir("versitygw"))
		if err != nil {
			return errSkip{err.Error()}
		}
		defer gw.Stop()
		if err := gw.CreateBucket(context.Background(), "faults"); err != nil {
			return err
		}
		env = gw.Env()
		extra = []string{"--storage", "s3", "--s3-bucket", "faults", "--s3-endpoint", gw.URL, "--s3-path-style"}
	}
	t, err := e.startUG(name, filepath.Join(e.subdir(name), "data"), env, extra...)
	if err != nil {
		return err
	}
	defer t.Server.Stop()
	ctx := context.Background()
	c := newClient(4)
	const seedTus, seedPut = 101, 202
	half := size/2 + 12345

	// tus: creation, then a PATCH that stalls after half the file.
	t.Door = door{Kind: "ug-tus"}
	tusSlot, err := signSlot(t, "kill-tus.bin", size)
	if err != nil {
		return err
	}
	loc, _, err := tusCreateAt(ctx, c, tusSlot.PutURL, size)
	if err != nil {
		return err
	}
	tusBody := newGate(newPattern(seedTus, 0, size), half)
	tusDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, tusBody)
		req.ContentLength = size
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", "0")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		res, err := c.Do(req)
		if err == nil {
			drain(res)
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		tusDone <- err
	}()
	// PUT: the same, through the XEP-0363 door.
	putSlot, err := signSlot(t, "kill-put.bin", size)
	if err != nil {
		return err
	}
	putBody := newGate(newPattern(seedPut, 0, size), half)
	putDone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, putSlot.PutURL, putBody)
		req.ContentLength = size
		req.Header.Set("Content-Type", ctypeOctet)
		res, err := c.Do(req)
		if err == nil {
			drain(res)
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		putDone <- err
	}()
	for _, g := range []*gate{tusBody, putBody} {
		select {
		case <-g.reached:
		case <-time.After(60 * time.Second):
			return errors.New("the bodies did not reach half way within 60s")
		}
	}
	time.Sleep(300 * time.Millisecond) // let the server write what it received
	t.Server.Kill()
	close(tusBody.release)
	close(putBody.release)
	<-tusDone
	<-putDone
	c.CloseIdleConnections()
	if err := t.Server.Restart(); err != nil {
		return fmt.Errorf("restart after SIGKILL: %w", err)
	}

	// Resume the tus upload from the offset HEAD reports.
	st, off, err := tusHead(ctx, c, loc, nil)
	if err != nil || st != http.StatusOK {
		return fmt.Errorf("HEAD after restart: %d %v", st, err)
	}
	if off > half {
		return fmt.Errorf("tus: offset %d after restart, but only %d bytes were sent", off, half)
	}
	e.Logf("%s tus door: SIGKILL after %d bytes sent; offset after restart %d", name, half, off)
	if r := tusSend(ctx, c, loc, seedTus, off, size, 0); r.Err != nil {
		return fmt.Errorf("tus resume: %w", r.Err)
	}
	// Resume the PUT with Content-Range from the offset the slot URL reports.
	putOff, err := slotOffset(ctx, c, putSlot.PutURL)
	if err != nil {
		return err
	}
	if putOff > half {
		return fmt.Errorf("PUT: offset %d after restart, but only %d bytes were sent", putOff, half)
	}
	e.Logf("%s PUT door: SIGKILL after %d bytes sent; offset after restart %d", name, half, putOff)
	if st, err := putRange(ctx, c, putSlot.PutURL, seedPut, putOff, size); err != nil || st != http.StatusCreated {
		return fmt.Errorf("PUT resume from %d: status %d %v", putOff, st, err)
	}
	for _, u := range []struct {
		what, get string
		seed      uint64
	}{{"tus", tusSlot.GetURL, seedTus}, {"PUT", putSlot.GetURL, seedPut}} {
		st, sum, n, err := getSHA(ctx, c, u.get)
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("%s download: %d %v", u.what, st, err)
		}
		if want := patternSHA256(u.seed, size); sum != want || n != size {
			return fmt.Errorf("%s: stored file differs (%d bytes, sha256 %s, want %d bytes %s)", u.what, n, sum, size, want)
		}
	}
	e.Logf("%s: both %s files complete and byte-equal after the resume", name, fmtSize(size))
	return nil
}

// tusCreateAt creates a tus upload at a slot URL.
func tusCreateAt(ctx context.Context, c *http.Client, putURL string, size int64) (string, int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, putURL, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", "filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt") // application/octet-stream
	res, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	drain(res)
	if res.StatusCode != http.StatusCreated {
		return "", res.StatusCode, fmt.Errorf("POST: status %d", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		u, _ := url.Parse(putURL)
		loc = u.Scheme + "://" + u.Host + loc
	}
	return loc, res.StatusCode, nil
}

// slotOffset is the offset a signed HEAD on a slot URL reports.
func slotOffset(ctx context.Context, c *http.Client, putURL string) (int64, error) {
	st, off, err := tusHead(ctx, c, putURL, nil)
	if err != nil || st != http.StatusOK {
		return 0, fmt.Errorf("HEAD on the slot URL: %d %v", st, err)
	}
	return off, nil
}

// putRange PUTs bytes [from, size) with Content-Range.
func putRange(ctx context.Context, c *http.Client, putURL string, seed uint64, from, size int64) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, putURL, newPattern(seed, from, size-from))
	req.ContentLength = size - from
	req.Header.Set("Content-Type", ctypeOctet)
	if from > 0 {
		req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, size-1, size))
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	drain(res)
	return res.StatusCode, nil
}

// manySmall: 1,000 concurrent small uploads (half PUT, half tus) all complete
// and are byte-equal.
func (e *faultEnv) manySmall() error {
	n, size := 1000, int64(16*KiB)
	t, err := e.startUG("ug-many", filepath.Join(e.subdir("many"), "data"), nil)
	if err != nil {
		return err
	}
	defer t.Server.Stop()
	ctx := context.Background()
	c := newClient(n)
	defer c.CloseIdleConnections()
	type up struct {
		get  string
		seed uint64
		err  error
	}
	ups := make([]up, n)
	var wg sync.WaitGroup
	start := time.Now()
	startGun := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tt := *t
			tt.Door = door{Kind: "ug-put"}
			if i%2 == 1 {
				tt.Door = door{Kind: "ug-tus"}
			}
			<-startGun
			name := fmt.Sprintf("small-%d.bin", i)
			slot, err := signSlot(&tt, name, size)
			if err != nil {
				ups[i].err = err
				return
			}
			// Sign and upload to the same slot: upload() signs a fresh one.
			var r upResult
			if tt.Door.Kind == "ug-put" {
				st, err := putRange(ctx, c, slot.PutURL, uint64(i), 0, size)
				r.Err = err
				if err == nil && st != http.StatusCreated {
					r.Err = fmt.Errorf("PUT: status %d", st)
				}
				if st, e2 := slotOffset(ctx, c, slot.PutURL); r.Err == nil && (e2 != nil || st != size) {
					r.Err = fmt.Errorf("PUT: offset %d after the upload (%v)", st, e2)
				}
			} else {
				loc, _, err := tusCreateAt(ctx, c, slot.PutURL, size)
				if err != nil {
					r.Err = err
				} else {
					r = tusSend(ctx, c, loc, uint64(i), 0, size, 0)
				}
			}
			ups[i] = up{get: slot.GetURL, seed: uint64(i), err: r.Err}
		}()
	}
	close(startGun)
	wg.Wait()
	el := time.Since(start)
	failed := 0
	var first error
	for _, u := range ups {
		if u.err != nil {
			failed++
			if first == nil {
				first = u.err
			}
		}
	}
	e.Logf("%d concurrent uploads of %s (half PUT, half tus): %d failed, %.2f s", n, fmtSize(size), failed, el.Seconds())
	if failed > 0 {
		return fmt.Errorf("%d of %d uploads failed; first: %v", failed, n, first)
	}
	for i, u := range ups {
		st, sum, got, err := getSHA(ctx, c, u.get)
		if err != nil || st != http.StatusOK || got != size || sum != patternSHA256(u.seed, size) {
			return fmt.Errorf("upload %d: download %d, %d bytes, %v (or content differs)", i, st, got, err)
		}
	}
	e.Logf("all %d downloads byte-equal", n)
	return nil
}

// slowloris: clients that trickle headers, and clients that trickle a body
// slower than the per-read timeout, are cut by the server's timeouts while
// normal uploads complete.
func (e *faultEnv) slowloris() error {
	headerClients, bodyClients := 200, 50
	var t *target
	var err error
	var bodyTimeout time.Duration
	if e.Short {
		// The binary's per-read timeout is fixed at 60 s: the short form uses
		// the gateway in process with 2 s.
		bodyTimeout = 2 * time.Second
		t, err = e.startInProcGateway("gw-slowloris", bodyTimeout)
	} else {
		bodyTimeout = 60 * time.Second
		t, err = e.startUG("ug-slowloris", filepath.Join(e.subdir("slowloris"), "data"), nil)
	}
	if err != nil {
		return err
	}
	defer t.Server.Stop()
	const headerTimeout = 10 * time.Second // ReadHeaderTimeout of uploadgate serve
	ctx := context.Background()

	normal := func(label string) (p50, p99 float64, err error) {
		c := newClient(8)
		defer c.CloseIdleConnections()
		var lat []time.Duration
		var mu sync.Mutex
		var wg sync.WaitGroup
		var first atomic.Value
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tt := *t
				tt.Door = door{Kind: "ug-put"}
				s := time.Now()
				r := upload(ctx, c, &tt, fmt.Sprintf("%s-%d.bin", label, i), uint64(i), MiB)
				mu.Lock()
				lat = append(lat, time.Since(s))
				mu.Unlock()
				if r.Err != nil {
					first.CompareAndSwap(nil, r.Err)
				}
			}()
			if i%8 == 7 {
				wg.Wait()
			}
		}
		wg.Wait()
		if f := first.Load(); f != nil {
			err = f.(error)
		}
		return percentileMS(lat, 50), percentileMS(lat, 99), err
	}
	b50, b99, err := normal("before")
	if err != nil {
		return fmt.Errorf("normal uploads before the attack: %w", err)
	}

	// Body tricklers: valid requests whose body stops after 8 KiB and then
	// sends a byte every bodyTimeout+2s.
	type cut struct {
		after  time.Duration
		answer string
	}
	cuts := make(chan cut, headerClients+bodyClients)
	attack, stopAttack := context.WithCancel(ctx)
	defer stopAttack()
	var bodyLocs []string
	for i := 0; i < bodyClients; i++ {
		tt := *t
		slot, err := signSlot(&tt, fmt.Sprintf("slow-%d.bin", i), MiB)
		if err != nil {
			return err
		}
		var head string
		u, _ := url.Parse(slot.PutURL)
		if i%2 == 0 {
			head = fmt.Sprintf("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, ctypeOctet, MiB)
		} else {
			loc, _, err := tusCreateAt(ctx, http.DefaultClient, slot.PutURL, MiB)
			if err != nil {
				return err
			}
			bodyLocs = append(bodyLocs, loc)
			lu, _ := url.Parse(loc)
			head = fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n", lu.RequestURI(), lu.Host, MiB)
		}
		first := make([]byte, 8*KiB)
		_, _ = newPattern(uint64(1000+i), 0, 8*KiB).Read(first)
		go trickle(attack, t.Server.Addr, []byte(head), first, bodyTimeout+2*time.Second, func(d time.Duration, ans string) { cuts <- cut{d, ans} })
	}
	// Header tricklers: one header byte per second, never ending.
	for i := 0; i < headerClients; i++ {
		head := fmt.Sprintf("PUT /upload/slow/h-%d.bin?v2=00 HTTP/1.1\r\nHost: %s\r\nX-Slow: ", i, t.Server.Addr)
		go trickle(attack, t.Server.Addr, []byte(head), nil, time.Second, func(d time.Duration, ans string) { cuts <- cut{d, ans} })
	}
	time.Sleep(500 * time.Millisecond)
	d50, d99, nerr := normal("during")
	var headerCut, bodyCut []time.Duration
	deadline := time.After(max(headerTimeout, bodyTimeout) + 15*time.Second)
	var answers = map[string]int{}
	for len(headerCut)+len(bodyCut) < headerClients+bodyClients {
		select {
		case c := <-cuts:
			answers[c.answer]++
			if c.after < 0 {
				return fmt.Errorf("a slow client could not connect: %s", c.answer)
			}
			// The body tricklers stall for bodyTimeout+2s; the header tricklers never stall long.
			if strings.HasPrefix(c.answer, "header:") {
				headerCut = append(headerCut, c.after)
			} else {
				bodyCut = append(bodyCut, c.after)
			}
		case <-deadline:
			return fmt.Errorf("slow clients not cut in time: %d of %d header tricklers and %d of %d body tricklers were", len(headerCut), headerClients, len(bodyCut), bodyClients)
		}
	}
	stopAttack()
	e.Logf("normal 1 MiB PUTs (32, 8 at a time): p50 %.1f ms, p99 %.1f ms before; p50 %.1f ms, p99 %.1f ms during the attack", b50, b99, d50, d99)
	e.Logf("%d header tricklers cut after %.1f–%.1f s (ReadHeaderTimeout %s)", len(headerCut), minD(headerCut), maxD(headerCut), headerTimeout)
	e.Logf("%d body tricklers cut after %.1f–%.1f s (per-read timeout %s)", len(bodyCut), minD(bodyCut), maxD(bodyCut), bodyTimeout)
	e.Logf("answers seen by the slow clients: %v", answers)
	if nerr != nil {
		return fmt.Errorf("normal uploads during the attack failed: %w", nerr)
	}
	if len(headerCut) != headerClients || maxD(headerCut) > (headerTimeout+5*time.Second).Seconds() {
		return fmt.Errorf("header tricklers: %d cut, latest after %.1f s", len(headerCut), maxD(headerCut))
	}
	if maxD(bodyCut) > (bodyTimeout + 5*time.Second).Seconds() {
		return fmt.Errorf("body tricklers: latest cut after %.1f s", maxD(bodyCut))
	}
	// What a cut PATCH received is kept: its upload resumes at 8 KiB.
	c := newClient(1)
	defer c.CloseIdleConnections()
	for _, loc := range bodyLocs {
		var st int
		var off int64
		for i := 0; i < 50; i++ { // the lock is released once the cut request ends
			st, off, _ = tusHead(ctx, c, loc, nil)
			if st == http.StatusOK {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st != http.StatusOK || off != 8*KiB {
			return fmt.Errorf("a cut PATCH: HEAD %d, offset %d, want 200 and %d", st, off, 8*KiB)
		}
	}
	return nil
}

func minD(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m.Seconds()
}

func maxD(d []time.Duration) float64 {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m.Seconds()
}

// trickle connects to addr, sends head and first, then one byte of filler
// every interval until the server answers or closes; done gets the time from
// the last full write to the cut, and the server's first line ("header:" or
// "body:" tells which kind of client it was).
func trickle(ctx context.Context, addr string, head, first []byte, interval time.Duration, done func(time.Duration, string)) {
	kind := "header:"
	if first != nil {
		kind = "body:"
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		done(-1, err.Error())
		return
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write(head); err != nil {
		done(time.Since(start), kind+" write failed")
		return
	}
	if first != nil {
		_, _ = conn.Write(first)
	}
	answered := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil && line == "" {
			var ne net.Error
			if errors.Is(err, io.EOF) {
				line = "closed"
			} else if errors.As(err, &ne) {
				line = "error"
			} else if errors.Is(err, syscall.ECONNRESET) {
				line = "reset"
			} else {
				line = "error"
			}
		}
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case ans := <-answered:
			done(time.Since(start), kind+" "+statusOnly(ans))
			return
		case <-ctx.Done():
			done(time.Since(start), kind+" still open when the attack stopped")
			return
		case <-tick.C:
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte("x"))
		}
	}
}

func statusOnly(line string) string {
	if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		return f[1]
	}
	return line
}

// diskFull: the data directory on a small tmpfs. A PUT larger than the free
// space gets 507; a complete upload and a partial one are untouched; once
// the file system grows, both incomplete uploads resume to byte-equal files.
func (e *faultEnv) diskFull() error {
	if os.Geteuid() != 0 {
		return errSkip{"mounting a small tmpfs needs root"}
	}
	mnt := e.subdir("tmpfs")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		return errSkip{fmt.Sprintf("mount -t tmpfs failed (%v: %s); a loop device would need mkfs and losetup as root as well", err, strings.TrimSpace(string(out)))}
	}
	defer func() { _ = exec.Command("umount", "-l", mnt).Run() }()
	t, err := e.startUG("ug-full", filepath.Join(mnt, "data"), nil)
	if err != nil {
		return err
	}
	defer t.Server.Stop()
	ctx := context.Background()
	c := newClient(2)
	defer c.CloseIdleConnections()
	const seedA, seedB, seedC = 11, 22, 33
	sizeA, sizeB, sizeC := int64(8*MiB), int64(48*MiB), int64(16*MiB)

	// A: complete. C: 4 MiB of 16 stored.
	ta := *t
	ta.Door = door{Kind: "ug-put"}
	ra := upload(ctx, c, &ta, "a.bin", seedA, sizeA)
	if ra.Err != nil {
		return fmt.Errorf("upload A: %w", ra.Err)
	}
	slotC, err := signSlot(t, "c.bin", sizeC)
	if err != nil {
		return err
	}
	locC, _, err := tusCreateAt(ctx, c, slotC.PutURL, sizeC)
	if err != nil {
		return err
	}
	if r := tusSend(ctx, c, locC, seedC, 0, 4*MiB, 0); r.Err != nil {
		return fmt.Errorf("upload C: %w", r.Err)
	}
	// B: larger than what is free.
	slotB, err := signSlot(t, "b.bin", sizeB)
	if err != nil {
		return err
	}
	stB, err := putRange(ctx, c, slotB.PutURL, seedB, 0, sizeB)
	if err != nil {
		return fmt.Errorf("PUT B: %w", err)
	}
	e.Logf("PUT of %s onto a 40 MiB tmpfs holding %s: status %d", fmtSize(sizeB), fmtSize(sizeA+4*MiB), stB)
	if stB != http.StatusInsufficientStorage {
		return fmt.Errorf("PUT B on a full disk: status %d, want 507", stB)
	}
	// C continues on the full disk: 507 as well, nothing else.
	offC, err := waitOffset(ctx, c, locC)
	if err != nil {
		return err
	}
	rc := tusSend(ctx, c, locC, seedC, offC, sizeC, 0)
	e.Logf("PATCH of C at %d on the full disk: status %d", offC, rc.Status)
	if rc.Err == nil || rc.Status != http.StatusInsufficientStorage {
		return fmt.Errorf("PATCH C on a full disk: status %d (%v), want 507", rc.Status, rc.Err)
	}
	// Nothing else is corrupted: A downloads equal; C's stored bytes are its prefix.
	if st, sum, _, err := getSHA(ctx, c, ra.Location); err != nil || st != http.StatusOK || sum != patternSHA256(seedA, sizeA) {
		return fmt.Errorf("upload A after the disk filled: %d %v (or content differs)", st, err)
	}
	offC, err = waitOffset(ctx, c, locC)
	if err != nil {
		return err
	}
	if err := checkPrefix(filepath.Join(mnt, "data", "uploads", idOf(locC)), seedC, offC); err != nil {
		return fmt.Errorf("upload C: %w", err)
	}
	offB, err := slotOffset(ctx, c, slotB.PutURL)
	if err != nil {
		return err
	}
	e.Logf("after the 507s: A intact; C holds %d bytes, B %d, each equal to what was sent", offC, offB)
	// The operator grows the file system: both resume to complete, equal files.
	if out, err := exec.Command("mount", "-o", "remount,size=128m", mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("grow tmpfs: %v %s", err, out)
	}
	if r := tusSend(ctx, c, locC, seedC, offC, sizeC, 0); r.Err != nil {
		return fmt.Errorf("resume C after growing the disk: %w", r.Err)
	}
	if st, err := putRange(ctx, c, slotB.PutURL, seedB, offB, sizeB); err != nil || st != http.StatusCreated {
		return fmt.Errorf("resume B after growing the disk: %d %v", st, err)
	}
	for _, u := range []struct {
		get  string
		seed uint64
		size int64
	}{{slotB.GetURL, seedB, sizeB}, {slotC.GetURL, seedC, sizeC}, {ra.Location, seedA, sizeA}} {
		if st, sum, _, err := getSHA(ctx, c, u.get); err != nil || st != http.StatusOK || sum != patternSHA256(u.seed, u.size) {
			return fmt.Errorf("download %s after the resume: %d %v (or content differs)", u.get, st, err)
		}
	}
	e.Logf("after growing the tmpfs: B and C resumed; A, B and C byte-equal")
	return nil
}

func idOf(loc string) string { return loc[strings.LastIndexByte(loc, '/')+1:] }

// waitOffset is the offset of a tus upload once its lock is free.
func waitOffset(ctx context.Context, c *http.Client, loc string) (int64, error) {
	for i := 0; i < 100; i++ {
		st, off, err := tusHead(ctx, c, loc, nil)
		if err == nil && st == http.StatusOK {
			return off, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("HEAD %s did not answer 200", loc)
}

// checkPrefix compares a stored file with the first n bytes of the stream.
func checkPrefix(path string, seed uint64, n int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != n {
		return fmt.Errorf("stored file has %d bytes, offset says %d", fi.Size(), n)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != patternSHA256(seed, n) {
		return errors.New("stored bytes differ from what was sent")
	}
	return nil
}

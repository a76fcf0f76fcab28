package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchConfig is what `ulbench run` measures.
type benchConfig struct {
	Uploadgate     string        `json:"-"`
	Self           string        `json:"-"`
	Dir            string        `json:"-"`
	Out            string        `json:"-"`
	Scenarios      string        `json:"scenarios"`
	Rounds         int           `json:"rounds"`
	BigSize        int64         `json:"big_size"`
	SmallSize      int64         `json:"small_size"`
	Chunk          int64         `json:"chunk"`
	Conc           int           `json:"concurrent_uploads"`
	ConcSize       int64         `json:"concurrent_size"`
	HeadConns      int           `json:"head_conns"`
	HeadDuration   time.Duration `json:"head_duration"`
	CreateConns    int           `json:"create_conns"`
	CreateDuration time.Duration `json:"create_duration"`
	S3Size         int64         `json:"s3_size"`
}

type benchReport struct {
	Machine   machine           `json:"machine"`
	Config    benchConfig       `json:"config"`
	Scenarios []*scenarioResult `json:"scenarios"`
	Goals     []goal            `json:"goals"`
}

func runBench(args []string, stdout io.Writer) error {
	var c benchConfig
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&c.Uploadgate, "uploadgate", "", "uploadgate binary (built from ./cmd/uploadgate when empty)")
	fs.StringVar(&c.Dir, "dir", "", "work directory for the servers' data (a new temporary directory when empty; removed at the end)")
	fs.StringVar(&c.Out, "out", filepath.Join(os.TempDir(), "ulbench-results.json"), "JSON file for the results")
	fs.StringVar(&c.Scenarios, "scenarios", "big,conc,head,create,s3,mem", "comma-separated scenarios to run")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds per scenario (targets alternate within each round)")
	sizeFlag(fs, &c.BigSize, "big-size", GiB, "size of the large upload")
	sizeFlag(fs, &c.SmallSize, "small-size", 64*MiB, "size of the small upload that the large one's peak RSS is compared with (0: skip)")
	sizeFlag(fs, &c.Chunk, "chunk", 8*MiB, "PATCH size of the chunked tus uploads")
	fs.IntVar(&c.Conc, "conc", 64, "concurrent uploads")
	sizeFlag(fs, &c.ConcSize, "conc-size", 4*MiB, "size of each concurrent upload")
	fs.IntVar(&c.HeadConns, "head-conns", 32, "connections sending HEAD")
	fs.DurationVar(&c.HeadDuration, "head-duration", 5*time.Second, "HEAD load per target and round")
	fs.IntVar(&c.CreateConns, "create-conns", 32, "connections sending tus creations")
	fs.DurationVar(&c.CreateDuration, "create-duration", 5*time.Second, "creation load per target and round")
	sizeFlag(fs, &c.S3Size, "s3-size", GiB, "size of the upload through S3 (versitygw)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	b, err := newBench(c)
	if err != nil {
		return err
	}
	defer b.close()
	report := &benchReport{Machine: describeMachine(b.dir), Config: c}
	fmt.Fprintf(stdout, "ulbench: %d CPUs (%s), %s, %s, Go %s; data in %s (%s)\n", report.Machine.CPUs, report.Machine.CPUModel,
		report.Machine.MemTotal, report.Machine.Kernel, report.Machine.Go, b.dir, report.Machine.Filesys)
	for _, name := range strings.Split(c.Scenarios, ",") {
		var sc *scenarioResult
		start := time.Now()
		load := loadAvg()
		switch strings.TrimSpace(name) {
		case "big":
			if c.SmallSize > 0 {
				sc = b.bigUpload("big-small", c.SmallSize)
				sc.LoadBefore, sc.LoadAfter, sc.Seconds = load, loadAvg(), time.Since(start).Seconds()
				report.Scenarios = append(report.Scenarios, sc)
				sc.print(stdout)
				start, load = time.Now(), loadAvg()
			}
			sc = b.bigUpload("big", c.BigSize)
		case "conc":
			sc = b.concurrent()
		case "head":
			sc = b.heads()
		case "create":
			sc = b.creations()
		case "s3":
			sc = b.s3Upload()
		case "mem":
			sc = b.memory()
		case "":
			continue
		default:
			return fmt.Errorf("unknown scenario %q", name)
		}
		sc.LoadBefore, sc.LoadAfter, sc.Seconds = load, loadAvg(), time.Since(start).Seconds()
		report.Scenarios = append(report.Scenarios, sc)
		sc.print(stdout)
	}
	report.Goals = checkGoals(report.Scenarios)
	printGoals(stdout, report.Goals)
	return writeResults(stdout, c.Out, report)
}

// writeResults writes v as indented JSON to path and says so on stdout.
func writeResults(stdout io.Writer, path string, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", path)
	return nil
}

func sizeFlag(fs *flag.FlagSet, p *int64, name string, def int64, usage string) {
	*p = def
	fs.Func(name, usage+" (bytes, or with KiB/MiB/GiB; default "+fmtSize(def)+")", func(s string) error {
		n, err := parseSize(s)
		*p = n
		return err
	})
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"G", GiB}, {"M", MiB}, {"K", KiB}} {
		if rest, ok := strings.CutSuffix(s, u.s); ok {
			s, mult = rest, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n >= GiB && n%GiB == 0:
		return fmt.Sprintf("%dGiB", n/GiB)
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%dMiB", n/MiB)
	case n >= KiB && n%KiB == 0:
		return fmt.Sprintf("%dKiB", n/KiB)
	}
	return strconv.FormatInt(n, 10)
}

// bench holds what the scenarios share.
type bench struct {
	c       benchConfig
	dir     string
	ownDir  bool
	ug      string // uploadgate binary
	self    string // this binary, for the stock servers
	n       atomic.Int64
	cleanup []func()
}

func newBench(c benchConfig) (*bench, error) {
	b := &bench{c: c, dir: c.Dir}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "ulbench-")
		if err != nil {
			return nil, err
		}
		b.dir, b.ownDir = d, true
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if c.Self != "" {
		self = c.Self
	}
	// The servers start from binaries out of the page cache (pagecache.go).
	if b.self, err = coldCopy(self, b.dir); err != nil {
		b.close()
		return nil, err
	}
	b.ug = c.Uploadgate
	if b.ug == "" {
		b.ug = filepath.Join(b.dir, "uploadgate")
		if err := goBuild(b.ug, "./cmd/uploadgate"); err != nil {
			b.close()
			return nil, err
		}
	}
	if err := evictPageCache(b.ug); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	for i := len(b.cleanup) - 1; i >= 0; i-- {
		b.cleanup[i]()
	}
	b.cleanup = nil
	if b.ownDir {
		_ = os.RemoveAll(b.dir)
	}
}

func (b *bench) subdir(name string) string {
	d := filepath.Join(b.dir, fmt.Sprintf("%s-%d", name, b.n.Add(1)))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// startUploadgate runs `uploadgate serve` on a fresh data directory.
func (b *bench) startUploadgate(name string, env []string, extra ...string) (*proc, string, error) {
	dir := b.subdir(name)
	secret := randHex(24)
	// Its default log: a line per request at info, as stock tusd logs its
	// events (the output goes to a file).
	args := append([]string{"serve", "--listen", "{addr}", "--data-dir", filepath.Join(dir, "data"),
		"--secret", secret}, extra...)
	p, err := startProc(name, b.ug, args, env, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), "/healthz")
	return p, secret, err
}

func (b *bench) startTusd(name string, env []string, extra ...string) (*proc, error) {
	dir := b.subdir(name)
	args := append([]string{"serve-tusd", "--listen", "{addr}", "--dir", filepath.Join(dir, "data")}, extra...)
	return startProc(name, b.self, args, env, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), "/healthz")
}

func (b *bench) startCopy(name string, extra ...string) (*proc, error) {
	dir := b.subdir(name)
	args := append([]string{"serve-copy", "--listen", "{addr}", "--dir", filepath.Join(dir, "data")}, extra...)
	return startProc(name, b.self, args, nil, filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), "/healthz")
}

// copyLargeBuffer is the limit server copying in 128 KiB pieces, as
// uploadgate does once a client's bytes arrive faster than it reads them
// (io.Copy into a file uses 32 KiB).
func copyLargeBuffer() targetSpec {
	return targetSpec{name: "copy-128k", door: door{Kind: "copy"}, extra: []string{"--buffer", "131072"}}
}

// startTarget starts a fresh server for a door.
func (b *bench) startTarget(name string, d door, env []string, extra ...string) (*target, error) {
	t := &target{Name: name, Door: d}
	var err error
	switch d.Kind {
	case "copy":
		t.Server, err = b.startCopy(name, extra...)
	case "tusd", "tusd-post":
		t.Server, err = b.startTusd(name, env, extra...)
	default:
		t.Server, t.Secret, err = b.startUploadgate(name, env, extra...)
	}
	return t, err
}

// removeUploads deletes the uploaded files of a server between rounds
// (the disk must not fill up); session records stay.
func removeUploads(p *proc) {
	for _, d := range []string{p.DataDir, filepath.Join(p.DataDir, "uploads")} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Type().IsRegular() && e.Name() != "sessions.db" && !strings.HasSuffix(e.Name(), ".key") {
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
	}
}

// rounds runs fn for each target in each round, rotating the order so that
// no target always runs first.
func (b *bench) rounds(targets []*target, fn func(round int, t *target)) {
	for r := 0; r < b.c.Rounds; r++ {
		for i := range targets {
			fn(r, targets[(i+r)%len(targets)])
		}
	}
}

func (b *bench) stopAll(sc *scenarioResult, targets []*target) {
	seen := map[*proc]bool{}
	for _, t := range targets {
		if t.Server == nil {
			continue
		}
		tr := sc.target(t.Name)
		tr.PeakRSSKiB = t.Server.PeakRSS()
		if !seen[t.Server] {
			seen[t.Server] = true
			if !t.Server.Alive() {
				tr.Notes = append(tr.Notes, "server died: "+t.Server.Log())
			}
			t.Server.Stop()
		}
	}
}

func (b *bench) startTargets(sc *scenarioResult, specs []targetSpec) ([]*target, bool) {
	var targets []*target
	for _, s := range specs {
		t, err := b.startTarget(s.name, s.door, s.env, s.extra...)
		if err != nil {
			sc.Skipped = fmt.Sprintf("start %s: %v", s.name, err)
			b.stopAll(sc, targets)
			return nil, false
		}
		targets = append(targets, t)
	}
	return targets, true
}

type targetSpec struct {
	name  string
	door  door
	env   []string
	extra []string
}

// bigUpload: one upload of size bytes per target and round.
func (b *bench) bigUpload(name string, size int64) *scenarioResult {
	ch := b.c.Chunk
	sc := &scenarioResult{Name: name, Primary: "MiB/s",
		Description: fmt.Sprintf("one %s upload to disk (no fsync anywhere), fresh server per target", fmtSize(size))}
	specs := []targetSpec{
		{name: "copy", door: door{Kind: "copy"}},
		copyLargeBuffer(),
		{name: "ug-put", door: door{Kind: "ug-put"}},
		{name: "ug-tus-1patch", door: door{Kind: "ug-tus"}},
		{name: "ug-tus-" + fmtSize(ch), door: door{Kind: "ug-tus", Chunk: ch}},
		{name: "tusd-1patch", door: door{Kind: "tusd"}},
		{name: "tusd-" + fmtSize(ch), door: door{Kind: "tusd", Chunk: ch}},
	}
	targets, ok := b.startTargets(sc, specs)
	if !ok {
		return sc
	}
	b.rounds(targets, func(r int, t *target) {
		tr := sc.target(t.Name)
		c := newClient(1)
		cpu0 := t.Server.CPUTime()
		start := time.Now()
		res := upload(context.Background(), c, t, fmt.Sprintf("big-%d.bin", b.n.Add(1)), uint64(r), size)
		d := time.Since(start)
		cpu := t.Server.CPUTime() - cpu0
		c.CloseIdleConnections()
		if res.Err != nil {
			tr.Notes = append(tr.Notes, fmt.Sprintf("round %d: %v", r, res.Err))
			tr.metric("errors", "").add(1)
		} else {
			tr.metric("MiB/s", "MiB/s").add(float64(size) / MiB / d.Seconds())
			tr.metric("server CPU s/GiB", "s").add(cpu.Seconds() / (float64(size) / GiB))
		}
		removeUploads(t.Server)
	})
	b.stopAll(sc, targets)
	sc.finish([][2]string{
		{"ug-put", "copy"}, {"ug-put", "copy-128k"}, {"tusd-1patch", "copy"}, {"ug-put", "tusd-1patch"},
		{"ug-tus-1patch", "tusd-1patch"}, {"ug-tus-" + fmtSize(ch), "tusd-" + fmtSize(ch)},
	})
	return sc
}

// concurrent: c.Conc uploads of c.ConcSize at once per target and round.
func (b *bench) concurrent() *scenarioResult {
	c := b.c
	sc := &scenarioResult{Name: "conc", Primary: "MiB/s",
		Description: fmt.Sprintf("%d concurrent uploads of %s (tus: creation + one PATCH; tusd-post: creation with the body)", c.Conc, fmtSize(c.ConcSize))}
	specs := []targetSpec{
		{name: "copy", door: door{Kind: "copy"}},
		copyLargeBuffer(),
		{name: "ug-put", door: door{Kind: "ug-put"}},
		{name: "ug-tus", door: door{Kind: "ug-tus"}},
		{name: "tusd", door: door{Kind: "tusd"}},
		// The PUT door hands tusd a creation with the body in it.
		{name: "tusd-post", door: door{Kind: "tusd-post"}},
	}
	targets, ok := b.startTargets(sc, specs)
	if !ok {
		return sc
	}
	b.rounds(targets, func(r int, t *target) {
		tr := sc.target(t.Name)
		client := newClient(c.Conc)
		lat := make([]time.Duration, c.Conc)
		var errs atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		cpu0, reads0 := t.Server.CPUTime(), t.Server.ReadCalls()
		ops0 := t.Server.opSeconds(context.Background())
		start := time.Now()
		for i := 0; i < c.Conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := time.Now()
				res := upload(context.Background(), client, t, fmt.Sprintf("c-%d.bin", b.n.Add(1)), uint64(i), c.ConcSize)
				lat[i] = time.Since(s)
				if res.Err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, res.Err.Error())
				}
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		cpu, reads := t.Server.CPUTime()-cpu0, t.Server.ReadCalls()-reads0
		client.CloseIdleConnections()
		ok := int64(c.Conc) - errs.Load()
		tr.metric("MiB/s", "MiB/s").add(float64(ok*c.ConcSize) / MiB / wall.Seconds())
		if ok > 0 {
			mib := float64(ok*c.ConcSize) / MiB
			tr.metric("server CPU ms/MiB", "ms").add(float64(cpu.Microseconds()) / 1000 / mib)
			tr.metric("server reads/MiB", "").add(float64(reads) / mib)
			addOpWaits(tr, ops0, t.Server.opSeconds(context.Background()), ok)
		}
		tr.metric("p50 ms", "ms").add(percentileMS(lat, 50))
		tr.metric("p99 ms", "ms").add(percentileMS(lat, 99))
		tr.metric("errors", "").add(float64(errs.Load()))
		if e := firstErr.Load(); e != nil {
			tr.Notes = append(tr.Notes, fmt.Sprintf("round %d: %d errors, first: %v", r, errs.Load(), e))
		}
		removeUploads(t.Server)
	})
	b.stopAll(sc, targets)
	sc.finish([][2]string{{"ug-put", "copy"}, {"ug-put", "copy-128k"}, {"ug-tus", "copy-128k"}, {"tusd", "copy"}, {"ug-put", "tusd"}, {"ug-tus", "tusd"}, {"ug-put", "tusd-post"}, {"tusd-post", "copy"}})
	return sc
}

// addOpWaits records, for an uploadgate server, how long each upload spent on
// average in each session store operation, creating its file and taking its
// lock: the growth of the server's operation time sums between before and
// after, divided by the uploads.
func addOpWaits(tr *targetResult, before, after map[string]float64, uploads int64) {
	if len(after) == 0 || uploads == 0 {
		return
	}
	for _, op := range slices.Sorted(maps.Keys(after)) {
		d := (after[op] - before[op]) * 1000 / float64(uploads)
		switch {
		case strings.HasPrefix(op, "session_") && after[op] > 0:
			tr.metric(op+" ms/upload", "ms").add(d)
		case op == "create":
			tr.metric("file creation ms/upload", "ms").add(d)
		case op == "lock":
			tr.metric("lock wait ms/upload", "ms").add(d)
		}
	}
}

// load runs fn on conns goroutines for d and returns the rate of successes,
// latency percentiles and errors.
func load(conns int, d time.Duration, fn func(c *http.Client) error) (rate, p50, p99 float64, errs int64, firstErr string) {
	client := newClient(conns)
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var all []time.Duration
	var okCount, errCount atomic.Int64
	var first atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				s := time.Now()
				if err := fn(client); err != nil {
					errCount.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				lat = append(lat, time.Since(s))
				okCount.Add(1)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := first.Load(); f != nil {
		firstErr = f.(string)
	}
	return float64(okCount.Load()) / el.Seconds(), percentileMS(all, 50), percentileMS(all, 99), errCount.Load(), firstErr
}

func (b *bench) redis(sc *scenarioResult) (*proc, bool) {
	r, err := startRedis(b.subdir("redis"))
	if err != nil {
		sc.Skipped = err.Error()
		return nil, false
	}
	return r, true
}

// heads: HEAD on one half-written upload with c.HeadConns connections.
func (b *bench) heads() *scenarioResult {
	c := b.c
	sc := &scenarioResult{Name: "head", Primary: "req/s",
		Description: fmt.Sprintf("HEAD on one upload (1 MiB, half written), %d connections, %s per round", c.HeadConns, c.HeadDuration)}
	rd, ok := b.redis(sc)
	if !ok {
		return sc
	}
	defer rd.Stop()
	specs := []targetSpec{
		{name: "ug-pebble", door: door{Kind: "ug-tus"}},
		{name: "ug-pebble-slot", door: door{Kind: "ug-put"}},
		{name: "ug-redis", door: door{Kind: "ug-tus"}, extra: []string{"--redis-url", rd.URL}},
		{name: "tusd", door: door{Kind: "tusd"}},
	}
	targets, ok := b.startTargets(sc, specs)
	if !ok {
		return sc
	}
	// One upload per target, half written.
	urls := map[*target]string{}
	hdrs := map[*target]http.Header{}
	for _, t := range targets {
		cl := newClient(1)
		tt := *t
		tt.Door = door{Kind: t.Door.Kind, Chunk: 512 * KiB}
		if t.Door.Kind == "ug-put" {
			tt.Door.Kind = "ug-tus"
		}
		loc, putURL, err := tusCreate(context.Background(), cl, &tt, "head.bin", MiB)
		if err == nil {
			if r := tusSend(context.Background(), cl, loc, 1, 0, 512*KiB, 0); r.Err != nil {
				err = r.Err
			}
		}
		if err != nil {
			sc.target(t.Name).Notes = append(sc.target(t.Name).Notes, "set-up: "+err.Error())
			continue
		}
		urls[t] = loc
		if t.Door.Kind == "ug-put" {
			urls[t] = putURL // HEAD at the signed slot URL: the PUT door's resume check
		}
	}
	b.rounds(targets, func(r int, t *target) {
		u, ok := urls[t]
		if !ok {
			return
		}
		h := hdrs[t]
		cpu0 := t.Server.CPUTime()
		rate, p50, p99, errs, first := load(c.HeadConns, c.HeadDuration, func(cl *http.Client) error {
			st, off, err := tusHead(context.Background(), cl, u, h)
			if err != nil {
				return err
			}
			if st != http.StatusOK || off != 512*KiB {
				return fmt.Errorf("HEAD: status %d, offset %d", st, off)
			}
			return nil
		})
		sc.target(t.Name).addLoad(r, rate, p50, p99, errs, first)
		sc.target(t.Name).addServerCPU(t.Server.CPUTime()-cpu0, rate*c.HeadDuration.Seconds())
	})
	b.stopAll(sc, targets)
	sc.finish([][2]string{{"ug-pebble", "tusd"}, {"ug-redis", "tusd"}, {"ug-pebble-slot", "tusd"}, {"ug-redis", "ug-pebble"}})
	return sc
}

// creations: tus creations (1 KiB, no body) per second.
func (b *bench) creations() *scenarioResult {
	c := b.c
	sc := &scenarioResult{Name: "create", Primary: "req/s",
		Description: fmt.Sprintf("tus creations (POST, Upload-Length 1 KiB, no body), %d connections, %s per round", c.CreateConns, c.CreateDuration)}
	rd, ok := b.redis(sc)
	if !ok {
		return sc
	}
	defer rd.Stop()
	specs := []targetSpec{
		{name: "ug-pebble", door: door{Kind: "ug-tus"}},
		{name: "ug-redis", door: door{Kind: "ug-tus"}, extra: []string{"--redis-url", rd.URL}},
		{name: "tusd", door: door{Kind: "tusd"}},
	}
	targets, ok := b.startTargets(sc, specs)
	if !ok {
		return sc
	}
	b.rounds(targets, func(r int, t *target) {
		cpu0 := t.Server.CPUTime()
		rate, p50, p99, errs, first := load(c.CreateConns, c.CreateDuration, func(cl *http.Client) error {
			_, _, err := tusCreate(context.Background(), cl, t, fmt.Sprintf("n-%d.bin", b.n.Add(1)), KiB)
			return err
		})
		sc.target(t.Name).addLoad(r, rate, p50, p99, errs, first)
		sc.target(t.Name).addServerCPU(t.Server.CPUTime()-cpu0, rate*c.CreateDuration.Seconds())
	})
	// The files are removed after the last round, not between rounds: on
	// ext4 without a journal, creating a file costs more for every inode
	// freed in the last minutes (recently_deleted()), so a removal between
	// rounds would slow the next target's round down (docs/performance.md).
	for _, t := range targets {
		removeUploads(t.Server)
	}
	b.stopAll(sc, targets)
	sc.finish([][2]string{{"ug-pebble", "tusd"}, {"ug-redis", "tusd"}})
	return sc
}

// removeObjects deletes the completed objects in versitygw's posix root
// (directly on disk; nothing uses them any more).
func removeObjects(gw *s3Server) {
	buckets, _ := os.ReadDir(filepath.Join(gw.DataDir, "root"))
	for _, bk := range buckets {
		if !bk.IsDir() {
			continue
		}
		entries, _ := os.ReadDir(filepath.Join(gw.DataDir, "root", bk.Name()))
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".info") {
				_ = os.Remove(filepath.Join(gw.DataDir, "root", bk.Name(), e.Name()))
			}
		}
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/uploadgate/uploadgate/auth/pebblestore"
)

// soakConfig is what `ulbench soak` runs.
type soakConfig struct {
	Uploadgate string        `json:"-"`
	Dir        string        `json:"-"`
	Out        string        `json:"-"`
	Uploads    int           `json:"uploads"`
	Phases     int           `json:"phases"`
	Conns      int           `json:"conns"`
	Size       int64         `json:"size"`
	History    time.Duration `json:"history"`
	SessionTTL time.Duration `json:"session_ttl"`
	Redis      bool          `json:"redis"`
}

// soakPhase is the session store after one phase of uploads and the
// clean-up that the restart after it ran.
type soakPhase struct {
	Uploads int64 `json:"uploads"`
	// StoreBytes: the size of sessions.db, or Redis's used_memory.
	StoreBytes int64 `json:"store_bytes"`
	// UsedBytes: the session database's tables, settled (without its
	// write-ahead log).
	UsedBytes int64 `json:"used_bytes,omitempty"`
	// Records: the session records in sessions.db, or DBSIZE of Redis.
	Records int64 `json:"records"`
	// PeakRSSKiB is the gateway's peak RSS (VmHWM) during the phase's
	// uploads: each phase runs on a freshly started gateway. A finished
	// request must keep nothing, so it stays flat in the number of uploads
	// and their rate.
	PeakRSSKiB int64 `json:"peak_rss_kib,omitempty"`
}

// soakResult is one soak run: a session store, with or without the history bound.
type soakResult struct {
	Name    string  `json:"name"`
	Store   string  `json:"store"`
	History string  `json:"history"`
	Uploads int64   `json:"uploads"`
	Errors  int64   `json:"errors"`
	FirstEr string  `json:"first_error,omitempty"`
	Seconds float64 `json:"seconds"`
	// UploadSeconds is the time of the uploads alone (without the waits
	// for sessions to end and the restarts).
	UploadSeconds float64     `json:"upload_seconds"`
	Base          soakPhase   `json:"base"`
	Phases        []soakPhase `json:"phases"`
}

// runSoak runs the soak: many small uploads through the PUT door of the real
// binary, in phases, with a restart after each (the gateway's clean-up runs
// at start), once without and once with the history bound, and reports the
// session store's size after each phase.
func runSoak(args []string, stdout io.Writer) error {
	var c soakConfig
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.StringVar(&c.Uploadgate, "uploadgate", "", "uploadgate binary (built from ./cmd/uploadgate when empty)")
	fs.StringVar(&c.Dir, "dir", "", "work directory for the servers' data (a new temporary directory when empty; removed at the end)")
	fs.StringVar(&c.Out, "out", filepath.Join(os.TempDir(), "ulbench-soak.json"), "JSON file for the results")
	fs.IntVar(&c.Uploads, "uploads", 50000, "uploads per run")
	fs.IntVar(&c.Phases, "phases", 5, "phases per run: the gateway restarts after each, which runs its clean-up")
	fs.IntVar(&c.Conns, "conns", 32, "concurrent uploads")
	sizeFlag(fs, &c.Size, "size", KiB, "size of each upload")
	fs.DurationVar(&c.History, "history", time.Second, "--history of the bounded run (0: no bounded run, for a binary without --history)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 2*time.Second, "--session-idle-ttl and --session-max-ttl of both runs, so that sessions end within the soak")
	fs.BoolVar(&c.Redis, "redis", false, "also run both with the sessions in Redis (INFO memory, DBSIZE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Uploads < 1 || c.Phases < 1 || c.Conns < 1 {
		return errors.New("-uploads, -phases and -conns must be positive")
	}
	b, err := newBench(benchConfig{Uploadgate: c.Uploadgate, Dir: c.Dir})
	if err != nil {
		return err
	}
	defer b.close()
	fmt.Fprintf(stdout, "ulbench soak: %d uploads of %s per run through the PUT door, %d connections, %d phases; sessions end after %s\n",
		c.Uploads, fmtSize(c.Size), c.Conns, c.Phases, c.SessionTTL)
	stores := []string{"pebble"}
	if c.Redis {
		stores = append(stores, "redis")
	}
	var results []*soakResult
	for _, store := range stores {
		for _, history := range []time.Duration{0, c.History} {
			if history <= 0 && len(results) > 0 && results[len(results)-1].Store == store {
				continue
			}
			r, err := b.soak(c, store, history)
			if err != nil {
				return err
			}
			r.print(stdout)
			results = append(results, r)
		}
	}
	return writeResults(stdout, c.Out, struct {
		Config  soakConfig    `json:"config"`
		Results []*soakResult `json:"results"`
	}{c, results})
}

// soak runs one soak against a fresh gateway.
func (b *bench) soak(c soakConfig, store string, history time.Duration) (*soakResult, error) {
	r := &soakResult{Name: store + "-" + map[bool]string{false: "unbounded", true: "history"}[history > 0], Store: store, History: history.String()}
	ttl := c.SessionTTL.String()
	extra := []string{"--session-idle-ttl", ttl, "--session-max-ttl", ttl, "--log-level", "warn"}
	if history > 0 {
		extra = append(extra, "--history", history.String())
	}
	var rc *redis.Client
	if store == "redis" {
		rd, err := startRedis(b.subdir("redis"))
		if err != nil {
			return nil, err
		}
		defer rd.Stop()
		extra = append(extra, "--redis-url", rd.URL)
		rc = redis.NewClient(&redis.Options{Addr: rd.Addr})
		defer rc.Close()
	}
	t, err := b.startTarget(r.Name, door{Kind: "ug-put"}, nil, extra...)
	if err != nil {
		return nil, err
	}
	defer t.Server.Stop()
	ctx := context.Background()
	// measure reads the store's size with the gateway stopped (it holds
	// sessions.db locked) and starts the gateway again.
	measure := func(uploads int64) (soakPhase, error) {
		p := soakPhase{Uploads: uploads}
		var err error
		if rc == nil {
			t.Server.Stop()
			p, err = measureEmbedded(filepath.Join(t.Server.DataDir, "sessions.db"))
			p.Uploads = uploads
			if err != nil {
				return p, err
			}
			return p, t.Server.Restart()
		}
		if p.StoreBytes, err = redisUsedMemory(ctx, rc); err != nil {
			return p, err
		}
		p.Records, err = rc.DBSize(ctx).Result()
		return p, err
	}
	if r.Base, err = measure(0); err != nil {
		return nil, err
	}
	client := newClient(c.Conns)
	var n, next atomic.Int64
	var firstErr sync.Once
	start := time.Now()
	var uploading time.Duration
	for phase := range c.Phases {
		phaseStart := time.Now()
		end := int64(c.Uploads) * int64(phase+1) / int64(c.Phases)
		var wg sync.WaitGroup
		for range c.Conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < end; i = next.Add(1) - 1 {
					res := upload(ctx, client, t, fmt.Sprintf("soak-%d.bin", i), uint64(i), c.Size)
					if res.Err != nil {
						atomic.AddInt64(&r.Errors, 1)
						firstErr.Do(func() { r.FirstEr = res.Err.Error() })
						continue
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		uploading += time.Since(phaseStart)
		peak := t.Server.PeakRSS()
		next.Store(end)
		// Every session of the phase ends, and the restart's clean-up
		// forgets what the history bound lets go (it logs each record it
		// forgets at debug level, and the wait is for its log to go quiet).
		time.Sleep(c.SessionTTL + history + 500*time.Millisecond)
		setLogLevel(t.Server, "debug")
		if err := t.Server.Restart(); err != nil {
			return nil, err
		}
		if err := waitCleanup(t.Server.LogPath); err != nil {
			return nil, err
		}
		setLogLevel(t.Server, "warn")
		p, err := measure(n.Load())
		if err != nil {
			return nil, err
		}
		p.PeakRSSKiB = peak
		r.Phases = append(r.Phases, p)
	}
	r.Uploads, r.Seconds, r.UploadSeconds = n.Load(), time.Since(start).Seconds(), uploading.Seconds()
	return r, nil
}

// setLogLevel sets the --log-level of the server's next start.
func setLogLevel(p *proc, level string) {
	for i := range p.args[:len(p.args)-1] {
		if p.args[i] == "--log-level" {
			p.args[i+1] = level
		}
	}
}

// measureEmbedded reads a session database that no process holds, once it
// has settled (what it keeps, without superseded versions): its files' size,
// its tables' size and its session records.
func measureEmbedded(path string) (soakPhase, error) {
	st, err := pebblestore.Open(path, nil)
	if err != nil {
		return soakPhase{}, err
	}
	defer st.Close()
	if err := st.Settle(context.Background()); err != nil {
		return soakPhase{}, err
	}
	stats, err := st.Stats()
	return soakPhase{StoreBytes: stats.DiskBytes, UsedBytes: stats.TableBytes, Records: stats.Sessions}, err
}

// waitCleanup gives the clean-up that a gateway runs at start the time to
// finish: it waits until the log has not grown for a second, at most a minute.
func waitCleanup(logPath string) error {
	var last int64 = -1
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		fi, err := os.Stat(logPath)
		if err != nil {
			return err
		}
		if fi.Size() == last {
			return nil
		}
		last = fi.Size()
		time.Sleep(time.Second)
	}
	return nil
}

// redisUsedMemory is INFO memory's used_memory.
func redisUsedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory without used_memory")
}

func (r *soakResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s: %d uploads in %.0f s (uploading %.0f s, %.0f/s), %d errors%s\n", r.Name, r.Uploads, r.Seconds,
		r.UploadSeconds, float64(r.Uploads)/r.UploadSeconds, r.Errors,
		map[bool]string{true: " (first: " + r.FirstEr + ")"}[r.FirstEr != ""])
	if r.Store == "redis" {
		fmt.Fprintf(w, "  %-8s %-12s %-8s %-18s %s\n", "uploads", "used_memory", "keys", "bytes per upload", "gateway peak RSS MiB")
	} else {
		fmt.Fprintf(w, "  %-8s %-12s %-12s %-8s %-28s %s\n", "uploads", "files", "tables", "records", "bytes of tables per upload", "gateway peak RSS MiB")
	}
	for _, p := range append([]soakPhase{r.Base}, r.Phases...) {
		per, rss := "", ""
		if p.Uploads > 0 {
			per = strconv.FormatFloat(float64(p.StoreBytes-r.Base.StoreBytes)/float64(p.Uploads), 'f', 0, 64)
		}
		if p.PeakRSSKiB > 0 {
			rss = strconv.FormatFloat(float64(p.PeakRSSKiB)/1024, 'f', 1, 64)
		}
		if r.Store == "redis" {
			fmt.Fprintf(w, "  %-8d %-12d %-8d %-18s %s\n", p.Uploads, p.StoreBytes, p.Records, per, rss)
			continue
		}
		if p.Uploads > 0 {
			per = strconv.FormatFloat(float64(p.UsedBytes-r.Base.UsedBytes)/float64(p.Uploads), 'f', 0, 64)
		}
		fmt.Fprintf(w, "  %-8d %-12d %-12d %-8d %-28s %s\n", p.Uploads, p.StoreBytes, p.UsedBytes, p.Records, per, rss)
	}
}

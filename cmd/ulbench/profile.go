package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runProfile takes CPU profiles of the gateway (wired in process as
// `uploadgate serve` wires it, with pprof) and of stock tusd under the same
// load, and prints the top functions of each.
func runProfile(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	what := fs.String("what", "head,put,conc,create", "loads to profile: head, put (1 large upload per door), conc (64 concurrent uploads), create")
	secs := fs.Int("seconds", 8, "profile length per load and server")
	outDir := fs.String("out-dir", filepath.Join(os.TempDir(), "ulbench-profiles"), "directory for the .prof files")
	redisSessions := fs.Bool("redis", false, "the gateway keeps sessions and locks in a redis-server started for the run")
	sessionDir := fs.String("session-db-dir", "", "directory for the gateway's session database (another file system than the uploads', e.g. a tmpfs for an experiment); default: its data directory")
	top := fs.Int("top", 25, "functions listed per profile (go tool pprof -top)")
	allocs := fs.Bool("allocs", false, "also write each server's allocation profile (bytes allocated from its start to the end of the load) and list its top")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ulbench-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var gwExtra []string
	if *redisSessions {
		rd, err := startRedis(filepath.Join(dir, "redis"))
		if err != nil {
			return err
		}
		defer rd.Stop()
		gwExtra = []string{"--redis-url", rd.URL}
	}
	if *sessionDir != "" {
		db := filepath.Join(*sessionDir, "ulbench-sessions-"+randHex(6)+".db")
		defer os.Remove(db)
		gwExtra = append(gwExtra, "--session-db", db)
	}
	d := time.Duration(*secs) * time.Second
	for _, w := range strings.Split(*what, ",") {
		w = strings.TrimSpace(w)
		for _, kind := range []string{"gateway", "tusd"} {
			pport, err := freePort()
			if err != nil {
				return err
			}
			paddr := "127.0.0.1:" + strconv.Itoa(pport)
			sub := filepath.Join(dir, w+"-"+kind)
			secret := randHex(24)
			var p *proc
			if kind == "gateway" {
				args := append([]string{"serve-gateway", "--listen", "{addr}", "--data-dir", filepath.Join(sub, "data"), "--secret", secret, "--pprof", paddr}, gwExtra...)
				p, err = startProc(kind, self, args, nil, filepath.Join(sub, "data"), sub+".log", "/healthz")
			} else {
				p, err = startProc(kind, self, []string{"serve-tusd", "--listen", "{addr}", "--dir", filepath.Join(sub, "data"), "--pprof", paddr},
					nil, filepath.Join(sub, "data"), sub+".log", "/healthz")
			}
			if err != nil {
				return err
			}
			t := &target{Name: kind, Server: p, Secret: secret}
			load, err := profileLoad(w, t, d)
			if err != nil {
				p.Stop()
				return err
			}
			file := filepath.Join(*outDir, fmt.Sprintf("%s-%s.prof", w, kind))
			var wg sync.WaitGroup
			var perr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				perr = fetchProfile("http://"+paddr+"/debug/pprof/profile?seconds="+strconv.Itoa(*secs), file)
			}()
			summary := load()
			wg.Wait()
			allocFile := ""
			if *allocs && perr == nil {
				allocFile = filepath.Join(*outDir, fmt.Sprintf("%s-%s-allocs.prof", w, kind))
				perr = fetchProfile("http://"+paddr+"/debug/pprof/allocs", allocFile)
			}
			p.Stop()
			if perr != nil {
				return perr
			}
			fmt.Fprintf(stdout, "\n== %s on %s: %s; profile %s\n", w, kind, summary, file)
			out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount="+strconv.Itoa(*top), file).CombinedOutput()
			if err != nil {
				fmt.Fprintf(stdout, "go tool pprof: %v\n", err)
			}
			fmt.Fprintf(stdout, "%s", out)
			if allocFile != "" {
				out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=alloc_space", "-nodecount="+strconv.Itoa(*top), allocFile).CombinedOutput()
				if err != nil {
					fmt.Fprintf(stdout, "go tool pprof: %v\n", err)
				}
				fmt.Fprintf(stdout, "allocations, %s:\n%s", allocFile, out)
			}
		}
	}
	return nil
}

func fetchProfile(u, file string) error {
	res, err := http.Get(u)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", u, res.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileLoad prepares a load on t and returns the function that runs it
// for d (and a little longer than the profile) and summarises it.
func profileLoad(what string, t *target, d time.Duration) (func() string, error) {
	ctx := context.Background()
	tusKind := "ug-tus"
	if t.Name == "tusd" {
		tusKind = "tusd"
	}
	switch what {
	case "head":
		t.Door = door{Kind: tusKind}
		c := newClient(1)
		loc, _, err := tusCreate(ctx, c, t, "head.bin", MiB)
		if err != nil {
			return nil, err
		}
		if r := tusSend(ctx, c, loc, 1, 0, 512*KiB, 0); r.Err != nil {
			return nil, r.Err
		}
		return func() string {
			rate, p50, p99, errs, _ := load(32, d+time.Second, func(cl *http.Client) error {
				_, _, err := tusHead(ctx, cl, loc, nil)
				return err
			})
			return fmt.Sprintf("HEAD %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors", rate, p50, p99, errs)
		}, nil
	case "create":
		t.Door = door{Kind: tusKind}
		var n int64
		var mu sync.Mutex
		return func() string {
			rate, p50, p99, errs, _ := load(16, d+time.Second, func(cl *http.Client) error {
				mu.Lock()
				n++
				name := fmt.Sprintf("n-%d.bin", n)
				mu.Unlock()
				_, _, err := tusCreate(ctx, cl, t, name, KiB)
				return err
			})
			return fmt.Sprintf("creations %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors", rate, p50, p99, errs)
		}, nil
	case "put":
		// The PUT door for the gateway, one PATCH for tusd: uploads back to
		// back for the whole profile.
		t.Door = door{Kind: "ug-put"}
		if t.Name == "tusd" {
			t.Door = door{Kind: "tusd"}
		}
		return func() string {
			c := newClient(1)
			var bytes int64
			start := time.Now()
			for i := 0; time.Since(start) < d+time.Second; i++ {
				if r := upload(ctx, c, t, fmt.Sprintf("p-%d.bin", i), 1, 256*MiB); r.Err != nil {
					return "error: " + r.Err.Error()
				}
				bytes += 256 * MiB
				removeUploads(t.Server)
			}
			return fmt.Sprintf("%.0f MiB/s in 256 MiB uploads", float64(bytes)/MiB/time.Since(start).Seconds())
		}, nil
	case "conc":
		t.Door = door{Kind: "ug-put"}
		if t.Name == "tusd" {
			t.Door = door{Kind: "tusd"}
		}
		return func() string {
			c := newClient(64)
			var bytes int64
			var mu sync.Mutex
			start := time.Now()
			for round := 0; time.Since(start) < d+time.Second; round++ {
				var wg sync.WaitGroup
				for i := 0; i < 64; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if r := upload(ctx, c, t, fmt.Sprintf("c-%d-%d.bin", round, i), uint64(i), 4*MiB); r.Err == nil {
							mu.Lock()
							bytes += 4 * MiB
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				removeUploads(t.Server)
			}
			return fmt.Sprintf("%.0f MiB/s in 64 concurrent 4 MiB uploads", float64(bytes)/MiB/time.Since(start).Seconds())
		}, nil
	}
	return nil, fmt.Errorf("unknown load %q", what)
}

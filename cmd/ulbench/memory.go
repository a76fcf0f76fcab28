package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// memLevels are the numbers of concurrent uploads whose peak RSS the memory
// scenario measures.
var memLevels = []int{1, 8, 64}

// memMetric names the peak RSS metric of a level.
func memMetric(n int) string { return fmt.Sprintf("peak RSS MiB, %d", n) }

// memory: the peak RSS (VmHWM) of a fresh server after n concurrent uploads
// of c.ConcSize each, for each n of memLevels, on disk and on S3
// (versitygw): the gateway's PUT door against stock tusd (creation + one
// PATCH). A server is started for each level, target and round, so that
// each peak belongs to its level alone.
func (b *bench) memory() *scenarioResult {
	c := b.c
	top := memLevels[len(memLevels)-1]
	sc := &scenarioResult{Name: "mem", Primary: memMetric(top),
		Description: fmt.Sprintf("peak RSS of a fresh server after %v concurrent uploads of %s, disk and S3 (versitygw)", memLevels, fmtSize(c.ConcSize))}
	gw, err := startVersityGW(b.subdir("versitygw"))
	if err != nil {
		sc.Skipped = err.Error()
		return sc
	}
	defer gw.Stop()
	specs := []targetSpec{
		{name: "ug-put-disk", door: door{Kind: "ug-put"}},
		{name: "tusd-disk", door: door{Kind: "tusd"}},
	}
	for _, s := range []struct{ name, kind string }{{"ug-put-s3", "ug-put"}, {"tusd-s3", "tusd"}} {
		bucket := "mem-" + s.name
		if err := gw.CreateBucket(context.Background(), bucket); err != nil {
			sc.Skipped = err.Error()
			return sc
		}
		extra := []string{"--storage", "s3", "--s3-bucket", bucket, "--s3-endpoint", gw.URL, "--s3-path-style"}
		if s.kind == "tusd" {
			extra = []string{"--s3-bucket", bucket, "--s3-endpoint", gw.URL}
		}
		specs = append(specs, targetSpec{name: s.name, door: door{Kind: s.kind}, env: gw.Env(), extra: extra})
	}
	for r := 0; r < c.Rounds; r++ {
		for _, n := range memLevels {
			for i := range specs {
				s := specs[(i+r)%len(specs)]
				tr := sc.target(s.name)
				t, err := b.startTarget(s.name, s.door, s.env, s.extra...)
				if err != nil {
					tr.Notes = append(tr.Notes, fmt.Sprintf("round %d, %d uploads: start: %v", r, n, err))
					continue
				}
				errs, first := b.concurrentUploads(t, n, c.ConcSize)
				if errs > 0 {
					tr.Notes = append(tr.Notes, fmt.Sprintf("round %d, %d uploads: %d errors, first: %s", r, n, errs, first))
				}
				peak := t.Server.PeakRSS()
				tr.metric(memMetric(n), "MiB").add(float64(peak) / 1024)
				// The part of the RSS that is the binary's own pages (code,
				// read-only data), which no change to the data path moves.
				tr.metric(fmt.Sprintf("of which file MiB, %d", n), "MiB").add(float64(procField(t.Server.PID(), "status", "RssFile:")) / 1024)
				tr.PeakRSSKiB = max(tr.PeakRSSKiB, peak)
				if !t.Server.Alive() {
					tr.Notes = append(tr.Notes, "server died: "+t.Server.Log())
				}
				t.Server.Stop()
				removeUploads(t.Server)
				removeObjects(gw)
			}
		}
	}
	sc.finish([][2]string{{"ug-put-disk", "tusd-disk"}, {"ug-put-s3", "tusd-s3"}})
	return sc
}

// concurrentUploads sends n uploads of size bytes at once to t and returns
// the number that failed and the first error.
func (b *bench) concurrentUploads(t *target, n int, size int64) (int64, string) {
	client := newClient(n)
	defer client.CloseIdleConnections()
	var errs atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := upload(context.Background(), client, t, fmt.Sprintf("m-%d.bin", b.n.Add(1)), uint64(i), size)
			if res.Err != nil {
				errs.Add(1)
				first.CompareAndSwap(nil, res.Err.Error())
			}
		}()
	}
	wg.Wait()
	s, _ := first.Load().(string)
	return errs.Load(), s
}

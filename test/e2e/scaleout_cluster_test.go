package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestScaleOutRedisCluster runs two gateway instances on one S3 bucket and a
// three-master Redis Cluster (--redis-url redis+cluster://…, so the sharded
// session layout): each resumes the other's uploads through the tus door and
// the PUT door, and a master that is stopped and restarted on its port and
// data directory costs retries (503, or 423 for a HEAD), never an upload.
// Every file is checked by GET and SHA-256, whole and with a Range.
func TestScaleOutRedisCluster(t *testing.T) {
	start := time.Now()
	cl := newScaleRedisCluster(t)
	a, b := cl.start(t), cl.start(t)
	t.Logf("cluster, versitygw and two gateways up in %v", time.Since(start).Round(time.Millisecond))
	c := scaleClient()

	t.Run("commands per creation", func(t *testing.T) {
		// What a tus creation at a slot URL costs the Cluster, counted by the
		// masters themselves: every command, sent alone, in a pipeline or
		// run by a script. The gateway sends six in four round trips: GET
		// (the slot's look-up); GET, SET NX and EVALSHA in one pipeline (the
		// opening of the session); SET NX (the upload's lock); EVALSHA (its
		// release).
		const n = 20
		before := cl.cluster.Calls(t)
		for i := range n {
			name := fmt.Sprintf("count%d.bin", i)
			sl := scaleSlot(t, a, name, 1000, "application/octet-stream")
			sessMustStatus(t, "POST at the slot URL on A", sessCreate(t, c, sl, name, 1000, "application/octet-stream"), http.StatusCreated)
		}
		after := cl.cluster.Calls(t)
		var names []string
		total := 0
		for name, calls := range after {
			if d := calls - before[name]; d > 0 && name != "info" && name != "cluster|info" && name != "ping" {
				names = append(names, fmt.Sprintf("%s %.1f", name, float64(d)/n))
				total += d
			}
		}
		slices.Sort(names)
		t.Logf("Redis commands run per tus creation, scripts' own included: %.1f (%s)", float64(total)/n, strings.Join(names, ", "))
	})

	t.Run("tus", func(t *testing.T) {
		const size = 9*MiB + 4321
		const cutAt = 6*MiB + 1234
		data, sum := sessRandomBytes(t, size)
		sl := scaleSlot(t, a, "cluster.mp4", size, "video/mp4")
		created := sessCreate(t, c, sl, "cluster.mp4", size, "video/mp4")
		sessMustStatus(t, "POST at the slot URL on A", created, http.StatusCreated)
		locA := created.Header.Get("Location")
		locB := scaleOn(t, locA, b)

		raw := scaleOpen(t, http.MethodPatch, locA, scaleTusHeader(0), size)
		raw.write(data[:cutAt])
		t.Logf("PATCH on A cut after %d of %d bytes; A answered %q", cutAt, size, raw.cut())
		hr := scaleWaitOffset(t, locB, true, cutAt, cutAt, 15*time.Second)
		t.Logf("HEAD on B: %s after %v (%d × 423 before)", hr.last, hr.elapsed, hr.locked)

		p := sessPatch(t, c, locB, cutAt, data[cutAt:])
		sessMustStatus(t, "PATCH of the rest on B", p, http.StatusNoContent)
		if p.offset(t) != size {
			t.Errorf("PATCH of the rest on B: Upload-Offset %d; want %d", p.offset(t), size)
		}
		scaleCheckDownload(t, a, sl.GetURL, data, cutAt-1000, cutAt+999)
		sessCheckDownload(t, scaleOn(t, sl.GetURL, b), size, sum, "video/mp4")
	})

	t.Run("PUT", func(t *testing.T) {
		const size = 7*MiB + 77
		const cutAt = 5*MiB + 99
		data, _ := sessRandomBytes(t, size)
		sl := scaleSlot(t, b, "cluster.jpg", size, "image/jpeg")
		raw := scaleOpen(t, http.MethodPut, scaleOn(t, sl.PutURL, b), sessHeader("Content-Type", "image/jpeg"), size)
		raw.write(data[:cutAt])
		t.Logf("PUT on B cut after %d of %d bytes; B answered %q", cutAt, size, raw.cut())

		slA := slot{PutURL: scaleOn(t, sl.PutURL, a), GetURL: scaleOn(t, sl.GetURL, a)}
		hr := scaleWaitOffset(t, slA.PutURL, false, cutAt, cutAt, 15*time.Second)
		t.Logf("HEAD on A's slot URL: %s after %v (%d × 423 before)", hr.last, hr.elapsed, hr.locked)
		cr := fmt.Sprintf("bytes %d-%d/%d", cutAt, size-1, size)
		if r := resumePut(t, slA, "image/jpeg", data[cutAt:], cr); r.status != http.StatusCreated {
			t.Fatalf("PUT on A with Content-Range: %s: %d %q; want exactly 201", cr, r.status, r.body)
		}
		scaleCheckDownload(t, b, sl.GetURL, data, 5*MiB-10, 5*MiB+200)
	})

	t.Run("master restart", func(t *testing.T) {
		u := scaleBeginOutage(t, c, a, b, "restart.bin")
		size := int64(len(u.data))
		fresh := scaleSlot(t, b, "fresh.bin", size, "application/octet-stream")

		const down = 1
		stopping := time.Now()
		cl.cluster.StopMaster(t, down)
		stopped := time.Now()
		t.Logf("master %d stopped; the others saw the cluster down after %v", down, stopped.Sub(stopping).Round(time.Millisecond))
		for _, s := range []*server{a, b} {
			scaleWaitReady(t, s, http.StatusServiceUnavailable, 10*time.Second)
		}
		chunk := u.data[u.first : u.first+64*KiB]
		for _, r := range []struct {
			what string
			want int
			send func() sessAnswer
		}{
			{"PATCH on A", http.StatusServiceUnavailable, func() sessAnswer { return sessPatch(t, c, u.locA, u.first, chunk) }},
			{"PATCH on B", http.StatusServiceUnavailable, func() sessAnswer { return sessPatch(t, c, u.locB, u.first, chunk) }},
			{"POST of a new slot on A", http.StatusServiceUnavailable, func() sessAnswer {
				return sessCreate(t, c, slot{PutURL: scaleOn(t, fresh.PutURL, a)}, "fresh.bin", size, "application/octet-stream")
			}},
			{"tus HEAD on B", http.StatusLocked, func() sessAnswer { return sessHead(t, c, u.locB, "") }},
		} {
			ans := r.send()
			t.Logf("%s with master %d down: %s, Retry-After %q", r.what, down, ans, ans.Header.Get("Retry-After"))
			scaleMustRetryLater(t, r.what, ans, r.want)
		}
		t.Logf("requests answered while the master was down (%v)", time.Since(stopped).Round(time.Millisecond))

		restarting := time.Now()
		cl.cluster.RestartMaster(t, down)
		back := time.Now()
		t.Logf("master %d restarted; cluster ok after %v", down, back.Sub(restarting).Round(time.Millisecond))
		for _, s := range []*server{a, b} {
			scaleWaitReady(t, s, http.StatusOK, 20*time.Second)
		}
		t.Logf("/readyz 200 on A and B %v after the master was back", time.Since(back).Round(time.Millisecond))
		u.finish(t, c, a)
		sessCheckDownload(t, scaleOn(t, u.sl.GetURL, b), size, scaleSum(u.data), "application/octet-stream")
		// The fresh slot, refused while the master was down, opens now.
		sessMustStatus(t, "POST of the new slot on A after the restart",
			sessCreate(t, c, slot{PutURL: scaleOn(t, fresh.PutURL, a)}, "fresh.bin", size, "application/octet-stream"), http.StatusCreated)
	})
}

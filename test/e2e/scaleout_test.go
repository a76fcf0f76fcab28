package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// End-to-end proofs of scale-out: two gateway instances, A and B, on one S3
// bucket (versitygw) and one redis-server (sessions and upload locks), with the
// same slot secret and upload-ID key. An upload started on one instance is
// continued on the other through both doors; the lock of an upload passes
// between instances; a killed instance and a Redis restart cost no upload.
//
// The tests are not parallel: the S3 credentials reach the gateways through
// the test process's environment (t.Setenv).

// TestScaleOutTusAcrossInstances creates an upload through the tus door on A,
// cuts its PATCH after some MiB, resumes it on B (HEAD + PATCH at the same
// upload URL path on B's host) and downloads it from A, whole and with a Range
// across the boundary of the two S3 parts it was written in.
func TestScaleOutTusAcrossInstances(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	c := scaleClient()
	const size = 12*MiB + 4321
	const cutAt = 7*MiB + 1234 // above S3's 5 MiB: the cut PATCH leaves a whole part
	data, sum := sessRandomBytes(t, size)

	sl := scaleSlot(t, a, "film.mp4", size, "video/mp4")
	created := sessCreate(t, c, sl, "film.mp4", size, "video/mp4")
	sessMustStatus(t, "POST at the slot URL on A", created, http.StatusCreated)
	locA := created.Header.Get("Location")
	if !strings.HasPrefix(locA, a.URL+"/files/") {
		t.Fatalf("POST at the slot URL on A: Location %q; want an upload URL under %s/files/", locA, a.URL)
	}
	locB := scaleOn(t, locA, b)
	if id, want := uploadID(t, locA), cl.derivedID(t, sl.PutURL); id != want {
		t.Errorf("upload ID %s; want %s, derived from the slot path with the cluster's id.key", id, want)
	}

	raw := scaleOpen(t, http.MethodPatch, locA, scaleTusHeader(0), size)
	raw.write(data[:cutAt])
	t.Logf("PATCH on A cut after %d of %d bytes; A answered %q", cutAt, size, raw.cut())

	hr := scaleWaitOffset(t, locB, true, cutAt, cutAt, 15*time.Second)
	t.Logf("HEAD on B: %s after %v (%d × 423 before)", hr.last, hr.elapsed, hr.locked)
	if got := hr.last.Header.Get("Upload-Length"); got != strconv.Itoa(size) {
		t.Errorf("HEAD on B: Upload-Length %q; want %d", got, size)
	}
	if parts := scaleParts(t, cl, uploadID(t, locA)); len(parts) != 1 || parts[0] != cutAt {
		t.Errorf("S3 parts of the upload after the cut PATCH: %v; want one part of %d bytes", parts, cutAt)
	}

	// The slot names the same upload on B (its session is in Redis): a
	// creation there is the "same slot, again" case.
	again := sessCreate(t, c, slot{PutURL: scaleOn(t, sl.PutURL, b)}, "film.mp4", size, "video/mp4")
	sessMustStatus(t, "POST at the slot URL on B", again, http.StatusCreated)
	if got := again.Header.Get("Location"); got != locB || again.offset(t) != cutAt {
		t.Errorf("POST at the slot URL on B: Location %q, Upload-Offset %d; want %q and %d", got, again.offset(t), locB, cutAt)
	}

	p := sessPatch(t, c, locB, cutAt, data[cutAt:])
	sessMustStatus(t, "PATCH of the rest on B", p, http.StatusNoContent)
	if p.offset(t) != size {
		t.Errorf("PATCH of the rest on B: Upload-Offset %d; want %d", p.offset(t), size)
	}
	if st := headUpload(t, locA); st.Status != http.StatusOK || st.Offset != size {
		t.Errorf("HEAD on A after B completed the upload: %+v; want 200 with Upload-Offset %d", st, size)
	}
	scaleCheckDownload(t, a, sl.GetURL, data, cutAt-1000, cutAt+999)
	sessCheckDownload(t, scaleOn(t, sl.GetURL, b), size, sum, "video/mp4")
}

// TestScaleOutPutAcrossInstances cuts an XEP-0363 PUT to A mid-body, asks B
// for the offset with HEAD on the signed slot URL, completes the file with a
// Content-Range PUT to B (exactly 201) and downloads it from A.
func TestScaleOutPutAcrossInstances(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	const size = 11*MiB + 77
	const cutAt = 6*MiB + 99
	data, _ := sessRandomBytes(t, size)

	sl := scaleSlot(t, a, "clip.mp4", size, "video/mp4")
	raw := scaleOpen(t, http.MethodPut, sl.PutURL, sessHeader("Content-Type", "video/mp4"), size)
	raw.write(data[:cutAt])
	t.Logf("PUT on A cut after %d of %d bytes; A answered %q", cutAt, size, raw.cut())

	slB := slot{PutURL: scaleOn(t, sl.PutURL, b), GetURL: scaleOn(t, sl.GetURL, b)}
	hr := scaleWaitOffset(t, slB.PutURL, false, cutAt, cutAt, 15*time.Second)
	t.Logf("HEAD on B's slot URL: %s after %v (%d × 423 before)", hr.last, hr.elapsed, hr.locked)
	if got := hr.last.Header.Get("Upload-Length"); got != strconv.Itoa(size) {
		t.Errorf("HEAD on B's slot URL: Upload-Length %q; want %d", got, size)
	}
	if code, _, _ := scaleGet(t, sl.GetURL, ""); code != http.StatusNotFound {
		t.Errorf("GET on A of the incomplete file: %d; want 404", code)
	}

	cr := fmt.Sprintf("bytes %d-%d/%d", cutAt, size-1, size)
	if r := resumePut(t, slB, "video/mp4", data[cutAt:], cr); r.status != http.StatusCreated {
		t.Fatalf("PUT on B with Content-Range: %s: %d %q; want exactly 201", cr, r.status, r.body)
	}
	scaleCheckDownload(t, a, sl.GetURL, data, 5*MiB-10, 6*MiB+200)
}

// TestScaleOutLockHandOff stalls a PATCH on A (its body stops arriving, the
// connection stays open) and sends HEAD for the upload to B: B must get the
// lock from A (A saves what it received) and answer 200 with the offset A
// reached within 2 s; a PATCH on B then completes the upload.
func TestScaleOutLockHandOff(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	c := scaleClient()
	const size = 10*MiB + 5
	const first = 6 * MiB      // a completed PATCH: one whole S3 part
	const stalled = 1*MiB + 17 // then this much of a PATCH that stalls
	const want = first + stalled
	data, _ := sessRandomBytes(t, size)

	sl := scaleSlot(t, a, "lock.bin", size, "application/octet-stream")
	created := sessCreate(t, c, sl, "lock.bin", size, "application/octet-stream")
	sessMustStatus(t, "POST at the slot URL on A", created, http.StatusCreated)
	locA := created.Header.Get("Location")
	locB := scaleOn(t, locA, b)
	sessMustStatus(t, "first PATCH on A", sessPatch(t, c, locA, 0, data[:first]), http.StatusNoContent)

	raw := scaleOpen(t, http.MethodPatch, locA, scaleTusHeader(first), size-first)
	raw.write(data[first:want])
	raw.waitReceived(15 * time.Second) // A has read every byte sent; the body now stalls

	start := time.Now()
	head := sessHead(t, c, locB, "")
	took := time.Since(start)
	t.Logf("HEAD on B while A's PATCH stalled: %s after %v", head, took)
	if head.Status != http.StatusOK || head.offset(t) != want {
		t.Fatalf("HEAD on B while A's PATCH stalled at %d: %s; want 200 with Upload-Offset %d", want, head, want)
	}
	if took > 2*time.Second {
		t.Errorf("HEAD on B took %v to get the lock from A; want at most 2s", took)
	}

	// A's PATCH was stopped by the hand-off: it must end, not hang.
	line, closed := raw.answer(15 * time.Second)
	t.Logf("A's stalled PATCH ended with %q (connection closed: %v)", line, closed)
	if !closed {
		t.Errorf("A's stalled PATCH: connection still open 15s after B took the lock (answer %q)", line)
	}
	if strings.HasPrefix(line, "HTTP/1.1 2") {
		t.Errorf("A's stalled PATCH, whose body never completed, answered %q", line)
	}

	p := sessPatch(t, c, locB, want, data[want:])
	sessMustStatus(t, "PATCH of the rest on B", p, http.StatusNoContent)
	if p.offset(t) != size {
		t.Errorf("PATCH of the rest on B: Upload-Offset %d; want %d", p.offset(t), size)
	}
	scaleCheckDownload(t, a, sl.GetURL, data, want-100, want+100)
}

// TestScaleOutKillMidUpload kills A with SIGKILL while a PATCH is in flight on
// it; the upload resumes on B (once A's lock has lapsed) and completes.
func TestScaleOutKillMidUpload(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	c := scaleClient()
	const size = 9*MiB + 11
	const first = 5*MiB + 3
	const inflight = 2 * MiB
	data, _ := sessRandomBytes(t, size)

	sl := scaleSlot(t, a, "killed.bin", size, "application/octet-stream")
	created := sessCreate(t, c, sl, "killed.bin", size, "application/octet-stream")
	sessMustStatus(t, "POST at the slot URL on A", created, http.StatusCreated)
	locA := created.Header.Get("Location")
	locB := scaleOn(t, locA, b)
	sessMustStatus(t, "first PATCH on A", sessPatch(t, c, locA, 0, data[:first]), http.StatusNoContent)

	raw := scaleOpen(t, http.MethodPatch, locA, scaleTusHeader(first), size-first)
	raw.write(data[first : first+inflight])
	raw.waitReceived(15 * time.Second)
	a.sessKill(t)
	killed := time.Now()

	// What A held only in memory or temporary files is lost; what it had
	// stored is not.
	hr := scaleWaitOffset(t, locB, true, first, first+inflight, 30*time.Second)
	off := hr.last.offset(t)
	sinceKill := time.Since(killed)
	t.Logf("HEAD on B after SIGKILL of A: %s, %v after the kill (%d × 423 before)", hr.last, sinceKill, hr.locked)
	// A HEAD does not wait out the dead holder's 10 s lease: it asks for the
	// lock, waits a little (3 s), then answers what is stored.
	if sinceKill > 8*time.Second {
		t.Errorf("HEAD on B answered %v after A died holding the lock; want well within the 10s lease", sinceKill)
	}

	p := sessPatch(t, c, locB, off, data[off:])
	sessMustStatus(t, "PATCH of the rest on B", p, http.StatusNoContent)
	if p.offset(t) != size {
		t.Errorf("PATCH of the rest on B: Upload-Offset %d; want %d", p.offset(t), size)
	}
	t.Logf("upload completed on B %v after A was killed", time.Since(killed))
	scaleCheckDownload(t, b, sl.GetURL, data, first-100, first+100)
}

// TestScaleOutRedisRestart stops redis-server mid-upload: while it is down the
// gateways answer 503 with Retry-After (PATCH, POST) or 423 (tus HEAD), never
// 401, 403 or 404, and /readyz is 503; once Redis is back /readyz is 200 and
// the upload completes.
func TestScaleOutRedisRestart(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	c := scaleClient()
	u := scaleBeginOutage(t, c, a, b, "redis.bin")
	data, sl, locA, locB, first, size := u.data, u.sl, u.locA, u.locB, u.first, int64(len(u.data))
	fresh := scaleSlot(t, b, "fresh.bin", size, "application/octet-stream")
	for _, s := range []*server{a, b} {
		if code, err := s.status("/readyz"); err != nil || code != http.StatusOK {
			t.Fatalf("GET %s/readyz before the outage: %d, %v; want 200", s.URL, code, err)
		}
	}

	cl.redis.Stop()
	down := time.Now()
	for _, s := range []*server{a, b} {
		scaleWaitReady(t, s, http.StatusServiceUnavailable, 10*time.Second)
	}
	chunk := data[first : first+64*KiB]
	timed := func(what string, want int, send func() sessAnswer) {
		t.Helper()
		start := time.Now()
		ans := send()
		t.Logf("%s while Redis is down: %s, Retry-After %q, in %v", what, ans, ans.Header.Get("Retry-After"), time.Since(start))
		scaleMustRetryLater(t, what, ans, want)
	}
	timed("PATCH on A", http.StatusServiceUnavailable, func() sessAnswer { return sessPatch(t, c, locA, first, chunk) })
	timed("PATCH on B", http.StatusServiceUnavailable, func() sessAnswer { return sessPatch(t, c, locB, first, chunk) })
	timed("POST of a new slot on A", http.StatusServiceUnavailable, func() sessAnswer {
		return sessCreate(t, c, fresh, "fresh.bin", size, "application/octet-stream")
	})
	timed("POST of the upload's own slot on B", http.StatusServiceUnavailable, func() sessAnswer {
		return sessCreate(t, c, slot{PutURL: scaleOn(t, sl.PutURL, b)}, "redis.bin", size, "application/octet-stream")
	})
	timed("tus HEAD on B", http.StatusLocked, func() sessAnswer { return sessHead(t, c, locB, "") })
	timed("tus HEAD on A", http.StatusLocked, func() sessAnswer { return sessHead(t, c, locA, "") })
	// The PUT door's HEAD (an XMPP client asking for the offset) is not a tus
	// HEAD: either retryable answer will do, but never one that ends the upload.
	start := time.Now()
	h := sessSend(t, c, http.MethodHead, scaleOn(t, sl.PutURL, b), nil, nil)
	t.Logf("HEAD on B's slot URL while Redis is down: %s, Retry-After %q, in %v", h, h.Header.Get("Retry-After"), time.Since(start))
	if h.Status != http.StatusLocked && h.Status != http.StatusServiceUnavailable {
		t.Errorf("HEAD on B's slot URL while Redis is down: %s; want 423 or 503", h)
	} else if h.Header.Get("Retry-After") == "" {
		t.Errorf("HEAD on B's slot URL while Redis is down: %s without Retry-After", h)
	}
	t.Logf("requests answered while Redis was down (%v)", time.Since(down))

	cl.redis.Restart()
	back := time.Now()
	for _, s := range []*server{a, b} {
		scaleWaitReady(t, s, http.StatusOK, 20*time.Second)
	}
	t.Logf("/readyz 200 on A and B %v after Redis was back", time.Since(back))

	u.finish(t, c, a)
}

// scaleOutage is an upload that an outage of Redis interrupts: created on
// A, its first 5 MiB sent there.
type scaleOutage struct {
	data       []byte
	sl         slot
	locA, locB string
	first      int64
}

// scaleBeginOutage creates an upload of 8 MiB on A and sends its first 5 MiB.
func scaleBeginOutage(t *testing.T, c *http.Client, a, b *server, name string) scaleOutage {
	t.Helper()
	const size = 8*MiB + 9
	u := scaleOutage{first: 5*MiB + 1}
	u.data, _ = sessRandomBytes(t, size)
	u.sl = scaleSlot(t, a, name, size, "application/octet-stream")
	created := sessCreate(t, c, u.sl, name, size, "application/octet-stream")
	sessMustStatus(t, "POST at the slot URL on A", created, http.StatusCreated)
	u.locA = created.Header.Get("Location")
	u.locB = scaleOn(t, u.locA, b)
	sessMustStatus(t, "first PATCH on A", sessPatch(t, c, u.locA, 0, u.data[:u.first]), http.StatusNoContent)
	return u
}

// finish completes the upload on B once Redis is back (after a HEAD there
// shows the offset reached before the outage) and downloads it from a.
func (u scaleOutage) finish(t *testing.T, c *http.Client, a *server) {
	t.Helper()
	size := int64(len(u.data))
	hr := scaleWaitOffset(t, u.locB, true, u.first, u.first, 15*time.Second)
	t.Logf("HEAD on B after the restart: %s after %v (%d × 423 before)", hr.last, hr.elapsed, hr.locked)
	p := sessPatch(t, c, u.locB, u.first, u.data[u.first:])
	sessMustStatus(t, "PATCH of the rest on B after the restart", p, http.StatusNoContent)
	if p.offset(t) != size {
		t.Errorf("PATCH of the rest on B: Upload-Offset %d; want %d", p.offset(t), size)
	}
	scaleCheckDownload(t, a, u.sl.GetURL, u.data, 0, u.first+10)
}

// scaleWaitReady polls /readyz of s until it answers want.
func scaleWaitReady(t testing.TB, s *server, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, err := s.status("/readyz")
		if err == nil && code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/readyz: %d, %v; want %d within %v", s.URL, code, err, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scaleParts lists the sizes of the S3 parts of upload id's multipart upload.
func scaleParts(t testing.TB, cl *scaleCluster, id string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := cl.s3.Client()
	ups, err := cli.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(cl.s3.Bucket), Prefix: aws.String(id)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if len(ups.Uploads) != 1 {
		t.Fatalf("multipart uploads with prefix %s: %d; want 1", id, len(ups.Uploads))
	}
	u := ups.Uploads[0]
	parts, err := cli.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(cl.s3.Bucket), Key: u.Key, UploadId: u.UploadId})
	if err != nil {
		t.Fatalf("list parts of %s: %v", aws.ToString(u.Key), err)
	}
	var sizes []int64
	for _, p := range parts.Parts {
		sizes = append(sizes, aws.ToInt64(p.Size))
	}
	return sizes
}

// TestScaleOutConcurrentCreation sends the first use of a slot, a tus
// creation, to A and B at the same moment: both must end with the same upload
// (201 with the same upload URL path; a 409 of the loser is retried, as
// tus-js-client does), whose bytes then arrive intact.
func TestScaleOutConcurrentCreation(t *testing.T) {
	cl := newScaleCluster(t)
	a, b := cl.start(t), cl.start(t)
	c := scaleClient()
	const size = 256*KiB + 3
	for i := range 4 {
		name := fmt.Sprintf("race-%d.bin", i)
		data, sum := sessRandomBytes(t, size)
		sl := scaleSlot(t, a, name, size, "application/octet-stream")
		h := sessHeader(
			"Tus-Resumable", "1.0.0",
			"Upload-Length", strconv.Itoa(size),
			"Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte(name))+
				",filetype "+base64.StdEncoding.EncodeToString([]byte("application/octet-stream")),
		)
		type result struct {
			answers []sessAnswer
			err     error
		}
		results := make([]chan result, 2)
		startNow := make(chan struct{})
		for j, s := range []*server{a, b} {
			results[j] = make(chan result, 1)
			u := scaleOn(t, sl.PutURL, s)
			go func() {
				var r result
				<-startNow
				for range 5 {
					ans, err := sessTrySend(c, http.MethodPost, u, h, nil)
					if err != nil {
						r.err = err
						break
					}
					r.answers = append(r.answers, ans)
					if ans.Status != http.StatusConflict {
						break
					}
					time.Sleep(100 * time.Millisecond) // tus-js-client's retry delay is longer
				}
				results[j] <- r
			}()
		}
		close(startNow)
		var paths []string
		for j, s := range []*server{a, b} {
			r := <-results[j]
			if r.err != nil {
				t.Fatalf("%s: POST at the slot URL on %s: %v", name, s.URL, r.err)
			}
			last := r.answers[len(r.answers)-1]
			if len(r.answers) > 1 {
				t.Logf("%s: POST on %s answered %v", name, s.URL, r.answers)
			}
			if last.Status != http.StatusCreated {
				t.Fatalf("%s: POST at the slot URL on %s: %v; want 201 in the end", name, s.URL, r.answers)
			}
			loc := last.Header.Get("Location")
			if !strings.HasPrefix(loc, s.URL+"/") {
				t.Fatalf("%s: POST on %s: Location %q is not on that instance", name, s.URL, loc)
			}
			paths = append(paths, strings.TrimPrefix(loc, s.URL))
		}
		if paths[0] != paths[1] {
			t.Fatalf("%s: concurrent creations on A and B made two uploads: %s and %s", name, paths[0], paths[1])
		}
		if id := uploadID(t, paths[0]); id != cl.derivedID(t, sl.PutURL) {
			t.Errorf("%s: upload ID %s; want the one derived from the slot, %s", name, id, cl.derivedID(t, sl.PutURL))
		}
		p := sessPatch(t, c, b.URL+paths[0], 0, data)
		sessMustStatus(t, name+": PATCH on B", p, http.StatusNoContent)
		sessCheckDownload(t, sl.GetURL, size, sum, "application/octet-stream")
	}
}

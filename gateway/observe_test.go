package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/gateway/upload"
	"github.com/uploadgate/uploadgate/storage"
)

// syncBuffer is a log destination that the server's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// withJSONLog sends the gateway's log, as JSON, to buf.
func withJSONLog(buf *syncBuffer) gwOption {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// requestLines are the "request" log lines in buf, decoded.
func requestLines(t *testing.T, buf *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// value is the sum of the counter or gauge values that c collects.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	var sum float64
	eachMetric(t, c, func(counter, gauge float64) { sum += counter + gauge })
	return sum
}

// series is the number of series that c collects.
func series(t testing.TB, c prometheus.Collector) int {
	t.Helper()
	n := 0
	eachMetric(t, c, func(float64, float64) { n++ })
	return n
}

// eachMetric calls fn with the counter and gauge value of each series of c.
func eachMetric(t testing.TB, c prometheus.Collector, fn func(counter, gauge float64)) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			fn(m.GetCounter().GetValue(), m.GetGauge().GetValue())
		}
	}
}

// One line per request, with the client's request ID, the door, the status,
// the bytes and the upload's hash, and nothing of the slot URL's query.
func TestRequestLog(t *testing.T) {
	var logs syncBuffer
	tg := newTestGateway(t, withJSONLog(&logs))
	body := "hello, log"
	slot := tg.sign(auth.ProtoV2, "log.txt", int64(len(body)), nil)
	res, _ := tg.put(slot.PutURL, body, map[string]string{"X-Request-ID": "client-req.42"})
	wantStatus(t, res, http.StatusCreated)
	if got := res.Header.Get("X-Request-ID"); got != "client-req.42" {
		t.Fatalf("X-Request-ID answered %q, want the client's", got)
	}
	get, data := tg.do(http.MethodGet, slot.GetURL, map[string]string{"X-Request-ID": "bad id\twith spaces"}, nil)
	wantStatus(t, get, http.StatusOK)
	generated := get.Header.Get("X-Request-ID")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(generated) {
		t.Fatalf("an insane X-Request-ID was answered with %q; want a generated one", generated)
	}

	lines := requestLines(t, &logs)
	if len(lines) != 2 {
		t.Fatalf("%d request lines, want 2:\n%s", len(lines), logs.String())
	}
	id := auth.DeriveUploadID(tg.gw.cfg.IDKey, slotPathOf(t, slot.PutURL))
	want := []map[string]any{
		{"request_id": "client-req.42", "door": "put", "method": "PUT", "status": 201.0, "bytes_in": float64(len(body)), "bytes_out": 0.0, "upload": logID(id)},
		{"request_id": generated, "door": "download", "method": "GET", "status": 200.0, "bytes_in": 0.0, "bytes_out": float64(len(data)), "upload": logID(id)},
	}
	for i, w := range want {
		for k, v := range w {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
		if d, ok := lines[i]["duration_ms"].(float64); !ok || d < 0 {
			t.Errorf("line %d: duration_ms %v", i, lines[i]["duration_ms"])
		}
		if lines[i]["level"] != "INFO" {
			t.Errorf("line %d: level %v, want INFO", i, lines[i]["level"])
		}
	}
	all := logs.String()
	q := slot.PutURL[strings.Index(slot.PutURL, "?")+1:]
	for _, secret := range []string{q, id, "v2="} {
		if strings.Contains(all, secret) {
			t.Errorf("the log contains %q:\n%s", secret, all)
		}
	}
}

// slotPathOf is the slot path of a slot URL (the path below /upload/, unescaped).
func slotPathOf(t *testing.T, rawURL string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, rawURL, nil)
	sp, err := parseSlotPath(req.URL, "/upload/")
	if err != nil {
		t.Fatal(err)
	}
	return sp.Path
}

// Other log lines of a request carry its request ID.
func TestRequestIDOnOtherLogLines(t *testing.T) {
	var logs syncBuffer
	tg := newTestGateway(t, withJSONLog(&logs))
	file := "0123456789"
	slot := tg.sign(auth.ProtoV1, "again.bin", int64(len(file)), nil)
	tg.interruptedPut(slot, int64(len(file)), "01234")
	// A full retry that differs starts over, which is logged.
	res, _ := tg.put(slot.PutURL, "0123X56789", map[string]string{"X-Request-ID": "retry-1"})
	wantStatus(t, res, http.StatusCreated)
	found := false
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var m map[string]any
		_ = json.Unmarshal(sc.Bytes(), &m)
		if strings.Contains(m["msg"].(string), "starts over") {
			found = true
			if m["request_id"] != "retry-1" {
				t.Errorf("log line %v has no request_id retry-1", m)
			}
		}
	}
	if !found {
		t.Fatalf("no start-over line in:\n%s", logs.String())
	}
}

func TestRequestMetrics(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.MaxSize = 100; c.Version = "v9.9.9-test" })
	m := tg.gw.metrics

	// PUT door: a complete upload, and one refused as too large.
	body := "put body"
	slot := tg.sign(auth.ProtoV1, "a.txt", int64(len(body)), nil)
	res, _ := tg.put(slot.PutURL, body, nil)
	wantStatus(t, res, http.StatusCreated)
	big := tg.sign(auth.ProtoV1, "big.bin", 101, nil)
	res, _ = tg.put(big.PutURL, strings.Repeat("x", 101), nil)
	wantStatus(t, res, http.StatusRequestEntityTooLarge)

	// tus door: creation and PATCH.
	ts := tg.sign(auth.ProtoV1, "t.bin", 6, nil)
	cr := tg.tusCreate(ts, 6, nil)
	wantStatus(t, cr, http.StatusCreated)
	wantStatus(t, tg.patch(cr.Header.Get("Location"), 0, "abcdef"), http.StatusNoContent)

	// ops and other.
	h, _ := tg.do(http.MethodGet, tg.srv.URL+"/healthz", nil, nil)
	wantStatus(t, h, http.StatusOK)
	n, _ := tg.do(http.MethodGet, tg.srv.URL+"/nothing", nil, nil)
	wantStatus(t, n, http.StatusNotFound)

	for _, c := range []struct {
		door, method, class string
		want                float64
	}{
		{"put", "PUT", "2xx", 1},
		{"put", "PUT", "4xx", 1},
		{"tus", "POST", "2xx", 1},
		{"tus", "PATCH", "2xx", 1},
		{"ops", "GET", "2xx", 1},
		{"other", "GET", "4xx", 1},
	} {
		if got := value(t, m.requests.WithLabelValues(c.door, c.method, c.class)); got != c.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", c.door, c.method, c.class, got, c.want)
		}
	}
	if got := series(t, m.duration); got != 5 {
		t.Errorf("%d duration series, want 5 (put PUT, tus POST, tus PATCH, ops GET, other GET)", got)
	}
	if got := value(t, m.bytesReceived.WithLabelValues("put")); got != float64(len(body)) {
		t.Errorf("bytes received at the put door: %v, want %d (the refused body is never read)", got, len(body))
	}
	if got := value(t, m.bytesReceived.WithLabelValues("tus")); got != 6 {
		t.Errorf("bytes received at the tus door: %v, want 6", got)
	}
	if got := value(t, m.completed.WithLabelValues("put")); got != 1 {
		t.Errorf("completed{put} = %v, want 1", got)
	}
	if got := value(t, m.completed.WithLabelValues("tus")); got != 1 {
		t.Errorf("completed{tus} = %v, want 1", got)
	}
	if got := value(t, m.failed.WithLabelValues(failTooLarge)); got != 1 {
		t.Errorf("failed{too_large} = %v, want 1", got)
	}
	for _, op := range []string{"create", "get", "info", "write", "finish"} {
		if histogramCount(t, tg.gw.registry, op) == 0 {
			t.Errorf("storage operation %s not timed", op)
		}
	}
	mfs, err := tg.gw.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	build := ""
	for _, mf := range mfs {
		if mf.GetName() == "uploadgate_build_info" {
			for _, m := range mf.GetMetric() {
				build += fmt.Sprint(m.GetGauge().GetValue())
				for _, l := range m.GetLabel() {
					build += " " + l.GetName() + "=" + l.GetValue()
				}
			}
		}
	}
	if want := "1 goversion=" + runtime.Version() + " version=v9.9.9-test"; build != want {
		t.Errorf("uploadgate_build_info: %q, want %q", build, want)
	}
}

// A tus PATCH that continues from the offset a HEAD reported is a resume; a
// PATCH that simply follows the previous one is not.
func TestTusResumeCounted(t *testing.T) {
	tg := newTestGateway(t)
	m := tg.gw.metrics
	slot := tg.sign(auth.ProtoV1, "r.bin", 9, nil)
	cr := tg.tusCreate(slot, 9, nil)
	wantStatus(t, cr, http.StatusCreated)
	loc := cr.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "abc"), http.StatusNoContent)
	wantStatus(t, tg.patch(loc, 3, "def"), http.StatusNoContent)
	if got := value(t, m.resumes.WithLabelValues(resumeTus)); got != 0 {
		t.Fatalf("resumes{tus} = %v after consecutive PATCHes, want 0", got)
	}
	h := tg.head(loc)
	wantStatus(t, h, http.StatusOK)
	wantStatus(t, tg.patch(loc, 6, "ghi"), http.StatusNoContent)
	if got := value(t, m.resumes.WithLabelValues(resumeTus)); got != 1 {
		t.Fatalf("resumes{tus} = %v after HEAD and PATCH at its offset, want 1", got)
	}
}

// Resumes of the PUT door: Content-Range, and a full retry whose prefix is equal.
func TestPutResumesCounted(t *testing.T) {
	tg := newTestGateway(t)
	m := tg.gw.metrics
	file := "0123456789abcdefghij"

	a := tg.sign(auth.ProtoV2, "range.bin", int64(len(file)), nil)
	tg.interruptedPut(a, int64(len(file)), file[:8])
	res, _ := tg.put(a.PutURL, file[8:], map[string]string{"Content-Range": "bytes 8-19/20"})
	wantStatus(t, res, http.StatusCreated)

	b := tg.sign(auth.ProtoV2, "retry.bin", int64(len(file)), nil)
	tg.interruptedPut(b, int64(len(file)), file[:8])
	res, _ = tg.put(b.PutURL, file, nil)
	wantStatus(t, res, http.StatusCreated)

	// A retry that differs starts over: not a resume.
	c := tg.sign(auth.ProtoV2, "differs.bin", int64(len(file)), nil)
	tg.interruptedPut(c, int64(len(file)), file[:8])
	res, _ = tg.put(c.PutURL, "X"+file[1:], nil)
	wantStatus(t, res, http.StatusCreated)

	for kind, want := range map[string]float64{resumePutRange: 1, resumePutRetry: 1, resumeTus: 0, resumeRebind: 0} {
		if got := value(t, m.resumes.WithLabelValues(kind)); got != want {
			t.Errorf("resumes{%s} = %v, want %v", kind, got, want)
		}
	}
}

// The gauge counts the uploads whose body is arriving, and only while it does.
func TestSessionsActiveGauge(t *testing.T) {
	tg := newTestGateway(t)
	gauge := tg.gw.metrics.sessionsActive
	slot := tg.sign(auth.ProtoV1, "slow.bin", 8, nil)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, slot.PutURL, pr)
		req.ContentLength = 8
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	if _, err := pw.Write([]byte("1234")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return value(t, gauge) == 1 })
	if _, err := pw.Write([]byte("5678")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("PUT answered %d", code)
	}
	waitFor(t, func() bool { return value(t, gauge) == 0 })
}

// A PUT cut off by the client is a failure with reason interrupted.
func TestInterruptedPutCounted(t *testing.T) {
	tg := newTestGateway(t)
	slot := tg.sign(auth.ProtoV1, "cut.bin", 1000, nil)
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(strings.Repeat("a", 100)))
		time.Sleep(50 * time.Millisecond)
		pw.CloseWithError(errors.New("network gone"))
	}()
	req, _ := http.NewRequest(http.MethodPut, slot.PutURL, pr)
	req.ContentLength = 1000
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	waitFor(t, func() bool { return value(t, tg.gw.metrics.failed.WithLabelValues(failInterrupted)) == 1 })
	if got := value(t, tg.gw.metrics.sessionsActive); got != 0 {
		t.Fatalf("sessions_active = %v after the PUT ended", got)
	}
}

func TestFailureReason(t *testing.T) {
	timeoutErr := os.ErrDeadlineExceeded
	for _, c := range []struct {
		status int
		kind   upload.Kind
		err    error
		want   string
	}{
		{503, upload.Shutdown, timeoutErr, failShutdown},
		{423, upload.Superseded, timeoutErr, failInterrupted},
		{500, upload.Timeout, timeoutErr, failTimeout},
		{408, upload.Timeout, nil, failTimeout},
		{400, upload.Interrupted, io.ErrUnexpectedEOF, failInterrupted},
		{400, upload.OK, io.ErrUnexpectedEOF, failInterrupted}, // the PUT door's own comparison of a body
		{500, upload.OK, timeoutErr, failTimeout},
		{503, upload.Storage, nil, failStorage},
		{507, upload.OK, nil, failStorage},
		{413, upload.OK, nil, failTooLarge},
		{413, upload.TooLarge, nil, failTooLarge},
		{423, upload.Locked, nil, failLocked},
		{409, upload.OK, nil, failConflict},
		{403, upload.OK, nil, failDenied},
		{410, upload.OK, nil, failDenied},
		{429, upload.OK, nil, failDenied},
		{400, upload.OK, nil, failInvalid},
		{500, upload.OK, nil, failInternal},
		{500, upload.Internal, nil, failInternal},
	} {
		if got := failureReason(c.status, c.kind, c.err); got != c.want {
			t.Errorf("failureReason(%d, %s, %v) = %s, want %s", c.status, c.kind, c.err, got, c.want)
		}
	}
}

func TestRequestIDSanity(t *testing.T) {
	for _, ok := range []string{"abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "Root=1-5759e988:x/y+z", strings.Repeat("a", 64)} {
		if got := requestID(ok); got != ok {
			t.Errorf("requestID(%q) = %q, want it kept", ok, got)
		}
	}
	for _, bad := range []string{"", "a b", "a\nb", strings.Repeat("a", 65), "ä", "a;b", `"x"`} {
		if got := requestID(bad); got == bad || len(got) != 32 {
			t.Errorf("requestID(%q) = %q, want a generated ID", bad, got)
		}
	}
}

// fakeWriter records what reaches the connection's writer.
type fakeWriter struct {
	header   http.Header
	codes    []int
	body     bytes.Buffer
	readFrom bool
}

func (f *fakeWriter) Header() http.Header         { return f.header }
func (f *fakeWriter) WriteHeader(code int)        { f.codes = append(f.codes, code) }
func (f *fakeWriter) Write(p []byte) (int, error) { return f.body.Write(p) }
func (f *fakeWriter) ReadFrom(r io.Reader) (int64, error) {
	f.readFrom = true
	return f.body.ReadFrom(r)
}

// The wrapper keeps what tusd needs (Unwrap to the connection), passes 1xx
// answers through without taking them as the status, and lets downloads use
// the connection's io.ReaderFrom (sendfile).
func TestObsWriterUnwrapAndReadFrom(t *testing.T) {
	fw := &fakeWriter{header: http.Header{}}
	w := &obsWriter{ResponseWriter: fw}
	var rw http.ResponseWriter = w
	if u, ok := rw.(interface{ Unwrap() http.ResponseWriter }); !ok || u.Unwrap() != fw {
		t.Fatal("obsWriter does not unwrap to the underlying writer")
	}
	w.WriteHeader(104)
	if w.status != 0 || len(fw.codes) != 1 || fw.codes[0] != 104 {
		t.Fatalf("a 1xx: status %d, passed %v", w.status, fw.codes)
	}
	n, err := w.ReadFrom(strings.NewReader("0123456789"))
	if err != nil || n != 10 || w.bytes != 10 || w.Status() != 200 || fw.body.String() != "0123456789" || !fw.readFrom {
		t.Fatalf("ReadFrom: n=%d err=%v bytes=%d status=%d body=%q readFrom=%v", n, err, w.bytes, w.Status(), fw.body.String(), fw.readFrom)
	}

	// An error answer is not read from (it goes through Write).
	fw = &fakeWriter{header: http.Header{}}
	w = &obsWriter{ResponseWriter: fw}
	w.WriteHeader(503)
	if _, err := w.ReadFrom(strings.NewReader("ERR_SERVER_SHUTDOWN: x")); err != nil {
		t.Fatal(err)
	}
	if fw.readFrom || w.Status() != 503 || w.bytes != 22 {
		t.Fatalf("error answer: readFrom %v status %d bytes %d", fw.readFrom, w.Status(), w.bytes)
	}
}

// With SeparateMetrics, /metrics is not on the main handler, only on MetricsHandler.
func TestSeparateMetrics(t *testing.T) {
	tg := newTestGateway(t, func(c *Config) { c.SeparateMetrics = true })
	res, _ := tg.do(http.MethodGet, tg.srv.URL+"/metrics", nil, nil)
	wantStatus(t, res, http.StatusNotFound)
	h, _ := tg.do(http.MethodGet, tg.srv.URL+"/healthz", nil, nil)
	wantStatus(t, h, http.StatusOK)
	ms := httptest.NewServer(tg.gw.MetricsHandler())
	defer ms.Close()
	res, body := tg.do(http.MethodGet, ms.URL+"/metrics", nil, nil)
	wantStatus(t, res, http.StatusOK)
	if !strings.Contains(body, `uploadgate_http_requests_total{code_class="4xx",door="ops",method="GET"} 1`) {
		t.Fatalf("metrics do not count the refused /metrics on the main listener:\n%s", body)
	}
	res, _ = tg.do(http.MethodGet, ms.URL+"/healthz", nil, nil)
	wantStatus(t, res, http.StatusNotFound)

	tg2 := newTestGateway(t)
	res, _ = tg2.do(http.MethodGet, tg2.srv.URL+"/metrics", nil, nil)
	wantStatus(t, res, http.StatusOK)
}

// One histogram, registered once, times the session store (auth.Timed) and
// the upload storage (storage.Config.Observe) of the same gateway.
func TestStorageTimer(t *testing.T) {
	reg := prometheus.NewRegistry()
	observe, err := StorageTimer(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := StorageTimer(reg); err == nil {
		t.Fatal("a second StorageTimer on one registry: no error")
	}
	store := auth.Timed(memstore.New(), observe)
	dir := t.TempDir()
	backend, err := storage.New(t.Context(), storage.Config{DataDir: dir, Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGatewayOn(t, dir, backend, func(c *Config) { c.Registry = reg })
	// The harness keeps its own sessions; use the timed store directly.
	ctx := t.Context()
	if _, err := store.Get(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa"); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if err := store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"session_get", "session_ping"} {
		if count := histogramCount(t, reg, op); count != 1 {
			t.Errorf("op %s observed %d times, want 1", op, count)
		}
	}
	slot := tg.sign(auth.ProtoV1, "shared.txt", 2, nil)
	res, _ := tg.put(slot.PutURL, "ok", nil)
	wantStatus(t, res, http.StatusCreated)
	if count := histogramCount(t, reg, "write"); count != 1 {
		t.Errorf("op write observed %d times, want 1", count)
	}
}

// histogramCount is the sample count of the storage histogram for op.
func histogramCount(t *testing.T, reg *prometheus.Registry, op string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "uploadgate_storage_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == op {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
)

// This file is the gateway's request middleware: one log line and the HTTP
// metrics per request, the request ID, and what the doors report about the
// upload a request concerns (for the log, the active-upload gauge and resumes).

// reqInfo is what is known about a request while it runs. The doors add the
// upload it concerns (noteUpload) once they know it.
type reqInfo struct {
	requestID string
	door      string
	method    string
	// transfer marks a request that carries upload bytes: PUT at a slot,
	// a tus creation or a PATCH.
	transfer bool
	active   *activeUploads
	// origin is the scheme and host the client addressed ("http://host").
	origin string

	mu sync.Mutex
	// hooks are the synchronous hook calls of the request ("pre-create=ok").
	hooks   []string
	hookDur time.Duration
	upload  string // base upload ID, "" while unknown
	counted string // the upload counted in the active gauge for this request
	kind    upload.Kind
}

type reqInfoKey struct{}

// infoFrom returns the request information in ctx, nil outside a request.
func infoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqInfoKey{}).(*reqInfo)
	return ri
}

// noteUpload records that the request of ctx concerns upload id, and returns id.
func noteUpload(ctx context.Context, id string) string {
	if ri := infoFrom(ctx); ri != nil && id != "" {
		ri.setUpload(id)
	}
	return id
}

func (ri *reqInfo) setUpload(id string) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.upload == id {
		return
	}
	ri.upload = id
	if ri.transfer && ri.active != nil {
		if ri.counted != "" {
			ri.active.remove(ri.counted)
		}
		ri.active.add(id)
		ri.counted = id
	}
}

// noteOutcome records the outcome of the request's call to tusd, which the
// request log reads instead of tusd's answer.
func noteOutcome(ctx context.Context, k upload.Kind) {
	if ri := infoFrom(ctx); ri != nil {
		ri.mu.Lock()
		ri.kind = k
		ri.mu.Unlock()
	}
}

// noteHook records a synchronous hook call of the request for its log line.
func (ri *reqInfo) noteHook(call string, d time.Duration) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	ri.hooks = append(ri.hooks, call)
	ri.hookDur += d
}

func (ri *reqInfo) hookCalls() (string, time.Duration) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return strings.Join(ri.hooks, ","), ri.hookDur
}

func (ri *reqInfo) outcome() upload.Kind {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return ri.kind
}

func (ri *reqInfo) uploadID() string {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return ri.upload
}

// done takes the request's upload out of the active gauge.
func (ri *reqInfo) done() {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.counted != "" {
		ri.active.remove(ri.counted)
		ri.counted = ""
	}
}

// activeUploads counts the uploads with a transfer running on this instance.
// Two requests for one upload (a client that reconnected while its old
// request still runs) count once.
type activeUploads struct {
	mu    sync.Mutex
	n     map[string]int
	gauge prometheus.Gauge
}

func newActiveUploads(g prometheus.Gauge) *activeUploads {
	return &activeUploads{n: map[string]int{}, gauge: g}
}

func (a *activeUploads) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n[id]++
	if a.n[id] == 1 {
		a.gauge.Inc()
	}
}

func (a *activeUploads) remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch a.n[id] {
	case 0:
	case 1:
		delete(a.n, id)
		a.gauge.Dec()
	default:
		a.n[id]--
	}
}

// resumeMarks remembers, per upload, the offset that the last successful
// HEAD (or repeated creation) reported, so that the PATCH continuing there
// counts as a tus resume. Bounded in size and age; per instance.
type resumeMarks struct {
	mu  sync.Mutex
	m   map[string]resumeMark
	now func() time.Time
}

type resumeMark struct {
	offset int64
	at     time.Time
}

const (
	maxResumeMarks = 10000
	resumeMarkTTL  = time.Hour
)

func newResumeMarks(now func() time.Time) *resumeMarks {
	return &resumeMarks{m: map[string]resumeMark{}, now: now}
}

func (r *resumeMarks) mark(id string, offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if len(r.m) >= maxResumeMarks {
		for k, v := range r.m {
			if now.Sub(v.at) > resumeMarkTTL {
				delete(r.m, k)
			}
		}
		for k := range r.m {
			if len(r.m) < maxResumeMarks {
				break
			}
			delete(r.m, k)
		}
	}
	r.m[id] = resumeMark{offset: offset, at: now}
}

// take returns and forgets the offset marked for id.
func (r *resumeMarks) take(id string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[id]
	if !ok {
		return 0, false
	}
	delete(r.m, id)
	if r.now().Sub(m.at) > resumeMarkTTL {
		return 0, false
	}
	return m.offset, true
}

// observe is the request middleware around the gateway's router.
func (g *Gateway) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := requestID(r.Header.Get("X-Request-ID"))
		// tusd logs the header as its requestId: give it the checked one.
		r.Header.Set("X-Request-ID", rid)
		w.Header().Set("X-Request-ID", rid)
		resolveMethod(r)
		method := methodLabel(r.Method)
		door := g.doorOf(r, method)
		origin := "http://" + r.Host
		if r.TLS != nil {
			origin = "https://" + r.Host
		}
		ri := &reqInfo{requestID: rid, door: door, method: method, active: g.active, origin: origin,
			transfer: (door == doorPut && method == http.MethodPut) || (door == doorTus && (method == http.MethodPatch || method == http.MethodPost))}
		defer ri.done()
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		if door == doorTus {
			if id, ok := strings.CutPrefix(r.URL.Path, g.cfg.TusBase); ok && auth.ValidUploadID(id) {
				ri.setUpload(id)
			}
		}
		ow := &obsWriter{ResponseWriter: w}

		next.ServeHTTP(ow, r)

		status := ow.Status()
		elapsed := time.Since(start)
		in, readErr := body.result()
		g.metrics.requests.WithLabelValues(door, method, codeClass(status)).Inc()
		g.metrics.duration.WithLabelValues(door, method).Observe(elapsed.Seconds())
		if in > 0 {
			g.metrics.bytesReceived.WithLabelValues(door).Add(float64(in))
		}
		upload := ri.uploadID()
		g.trackResume(ri, r, ow, status, in, upload)
		attrs := make([]slog.Attr, 0, 10)
		attrs = append(attrs,
			slog.String("request_id", rid),
			slog.String("door", door),
			slog.String("method", method),
			slog.Int("status", status),
			slog.Int64("bytes_in", in),
			slog.Int64("bytes_out", ow.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		)
		if upload != "" {
			attrs = append(attrs, slog.String("upload", logID(upload)))
		}
		if calls, d := ri.hookCalls(); calls != "" {
			attrs = append(attrs, slog.String("hooks", calls), slog.Float64("hooks_ms", float64(d.Microseconds())/1000))
		}
		if ri.transfer && !success(status) {
			reason := failureReason(status, ri.outcome(), readErr)
			g.metrics.failed.WithLabelValues(reason).Inc()
			attrs = append(attrs, slog.String("failure", reason))
		}
		// The configured logger, not g.log: request_id comes first here.
		g.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// MetricsHandler serves /metrics (and answers 404 for any other path), with
// the same request log and metrics as the main handler. With
// Config.SeparateMetrics it is the only way to reach the metrics.
func (g *Gateway) MetricsHandler() http.Handler {
	metrics := promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{Registry: g.registry})
	return g.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		metrics.ServeHTTP(w, r)
	}))
}

// trackResume marks the offset a HEAD or a repeated creation reported, and
// counts the PATCH that continues from it as a tus resume.
func (g *Gateway) trackResume(ri *reqInfo, r *http.Request, ow *obsWriter, status int, in int64, upload string) {
	if upload == "" || (ri.door != doorTus && ri.door != doorPut) {
		return
	}
	switch ri.method {
	case http.MethodHead, http.MethodPost:
		if !success(status) {
			return
		}
		off, err := strconv.ParseInt(ow.Header().Get("Upload-Offset"), 10, 64)
		if err != nil || off <= in {
			// Nothing stored, or only what this creation itself brought.
			return
		}
		if n, err := strconv.ParseInt(ow.Header().Get("Upload-Length"), 10, 64); err == nil && off >= n {
			return
		}
		g.marks.mark(upload, off)
	case http.MethodPatch:
		off, ok := g.marks.take(upload)
		if !ok || in == 0 {
			return
		}
		if req, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64); err == nil && req == off {
			g.countResume(resumeTus, true)
		}
	}
}

// resolveMethod gives r the method tusd acts on, once, before anything else
// looks at the request: tusd honours X-HTTP-Method-Override on POST, so every
// check and the request log must see that method. The header is removed, so
// that nothing resolves it again.
func resolveMethod(r *http.Request) {
	if m := r.Header.Get("X-HTTP-Method-Override"); m != "" {
		if r.Method == http.MethodPost {
			r.Method = strings.ToUpper(m)
		}
		r.Header.Del("X-HTTP-Method-Override")
	}
}

// doorOf tells which door a request uses.
func (g *Gateway) doorOf(r *http.Request, method string) string {
	p := r.URL.Path
	switch {
	case p == "/metrics" || p == "/healthz" || p == "/readyz":
		return doorOps
	case strings.HasPrefix(p, g.cfg.UploadBase):
		switch method {
		case http.MethodGet:
			return doorDownload
		case http.MethodHead:
			if hasSignature(r) {
				return doorPut
			}
			return doorDownload
		case http.MethodPost, http.MethodPatch:
			return doorTus
		}
		return doorPut
	case strings.HasPrefix(p, g.cfg.TusBase) || p+"/" == g.cfg.TusBase:
		return doorTus
	}
	return doorOther
}

// requestID is the client's X-Request-ID when it is sane (1 to 64 characters
// of letters, digits and -_.:=+/), else a new random one.
func requestID(v string) string {
	ok := len(v) > 0 && len(v) <= 64
	for i := 0; ok && i < len(v); i++ {
		c := v[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:=+/", c) >= 0
	}
	if ok {
		return v
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// failureReason classifies a failed upload request: by the outcome of its
// call to tusd when it made one (kind), else by how reading its body ended,
// else by the status the gateway answered.
func failureReason(status int, kind upload.Kind, readErr error) string {
	switch kind {
	case upload.Interrupted, upload.Superseded:
		return failInterrupted
	case upload.Timeout:
		return failTimeout
	case upload.Shutdown:
		return failShutdown
	case upload.TooLarge:
		return failTooLarge
	case upload.Storage:
		return failStorage
	case upload.Locked:
		return failLocked
	case upload.Conflict:
		return failConflict
	case upload.NotFound:
		return failDenied
	case upload.Invalid:
		return failInvalid
	case upload.Internal:
		return failInternal
	}
	if readErr != nil {
		var ne net.Error
		if errors.Is(readErr, os.ErrDeadlineExceeded) || errors.As(readErr, &ne) && ne.Timeout() {
			return failTimeout
		}
		return failInterrupted
	}
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return failTooLarge
	case status == http.StatusInsufficientStorage || status == http.StatusServiceUnavailable:
		return failStorage
	case status == http.StatusLocked:
		return failLocked
	case status == http.StatusConflict:
		return failConflict
	case status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound ||
		status == http.StatusGone || status == http.StatusTooManyRequests:
		return failDenied
	case status == http.StatusRequestTimeout:
		return failTimeout
	case status < 500:
		return failInvalid
	}
	return failInternal
}

// countingBody counts the bytes read from a request body and keeps the first
// read error (other than the end of the body). Errors pass unchanged: tusd
// compares them.
type countingBody struct {
	io.ReadCloser
	n   atomic.Int64
	mu  sync.Mutex
	err error
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// result is the number of bytes read and the first read error; nil-safe.
func (b *countingBody) result() (int64, error) {
	if b == nil {
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n.Load(), b.err
}

// obsWriter records the final status and the bytes written. It implements Unwrap (tusd's
// http.ResponseController reaches the connection through it) and ReadFrom
// (downloads keep sendfile).
type obsWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *obsWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		// Informational answers (104 of the resumable-upload draft) are not final.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *obsWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *obsWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok && w.status < 400 {
		n, err := rf.ReadFrom(r)
		w.bytes += n
		return n, err
	}
	return io.Copy(writerOnly{w}, r)
}

// Flush sends what is buffered (for code that asserts http.Flusher).
func (w *obsWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController access to the underlying writer.
func (w *obsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the final status, 200 if the handler wrote nothing.
func (w *obsWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// writerOnly hides ReadFrom, so that io.Copy does not call it again.
type writerOnly struct{ io.Writer }

// withRequestID returns a logger whose records, logged with a request's
// context, carry the request's ID.
func withRequestID(l *slog.Logger) *slog.Logger {
	return slog.New(requestIDHandler{l.Handler()})
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if ri := infoFrom(ctx); ri != nil {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", ri.requestID))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

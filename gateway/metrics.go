package gateway

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"
	"github.com/uploadgate/uploadgate/auth"
)

// metrics are the gateway's own series. Label values are bounded: protocols
// from auth.Protocols, results, doors, methods, reasons and operations from
// the fixed sets below. docs/metrics.md describes every series.
type metrics struct {
	slotChecks     *prometheus.CounterVec
	sessionsOpened prometheus.Counter
	sessionAccepts *prometheus.CounterVec
	addrChanges    prometheus.Counter
	rebinds        prometheus.Counter

	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	bytesReceived   *prometheus.CounterVec
	completed       *prometheus.CounterVec
	failed          *prometheus.CounterVec
	resumes         *prometheus.CounterVec
	sessionsExpired prometheus.Counter
	sessionsActive  prometheus.Gauge
}

// Doors, as metric label values.
const (
	doorPut      = "put"
	doorTus      = "tus"
	doorDownload = "download"
	doorOps      = "ops"
	// doorOther is a request outside every door (answered 404).
	doorOther = "other"
)

// Kinds of resume (uploadgate_resumes_total{door}).
const (
	resumeTus      = "tus"
	resumePutRange = "put_range"
	resumePutRetry = "put_retry"
	resumeRebind   = "rebind"
)

// Reasons of a failed upload request (uploadgate_uploads_failed_total{reason}).
const (
	failInterrupted = "interrupted"
	failTimeout     = "timeout"
	failShutdown    = "shutdown"
	failTooLarge    = "too_large"
	failStorage     = "storage"
	failLocked      = "locked"
	failConflict    = "conflict"
	failDenied      = "denied"
	failInvalid     = "invalid"
	failInternal    = "internal"
)

// Results of a slot check.
const (
	resultOK        = "ok"
	resultExpired   = "expired"
	resultInvalid   = "invalid"
	resultMissing   = "missing"
	resultMalformed = "malformed"
	resultMismatch  = "mismatch"
)

// protoUnknown is the protocol label of a slot check that found no signature
// to choose a protocol by.
const protoUnknown = "unknown"

// The label values of the labelled counters that exist from the start. Every
// value counted must be in its set: a counter starts at 0 for each
// combination of its sets (see zeroed), so that rate() and increase() see the
// first event. TestMetricLabelValuesDeclared checks the code that counts.
var (
	// allDoors label uploadgate_bytes_received_total.
	allDoors = []string{doorPut, doorTus, doorDownload, doorOps, doorOther}
	// uploadDoors label uploadgate_uploads_completed_total and
	// uploadgate_session_accepts_total.
	uploadDoors = []string{doorPut, doorTus}
	// resumeKinds label uploadgate_resumes_total.
	resumeKinds = []string{resumeTus, resumePutRange, resumePutRetry, resumeRebind}
	// failReasons label uploadgate_uploads_failed_total.
	failReasons = []string{failInterrupted, failTimeout, failShutdown, failTooLarge, failStorage, failLocked, failConflict, failDenied, failInvalid, failInternal}
	// slotProtocols and slotResults label uploadgate_slot_checks_total.
	slotProtocols = protocolLabels()
	slotResults   = []string{resultOK, resultExpired, resultInvalid, resultMissing, resultMalformed, resultMismatch}
)

// protocolLabels are auth.Protocols and protoUnknown.
func protocolLabels() []string {
	l := make([]string, 0, len(auth.Protocols)+1)
	for _, p := range auth.Protocols {
		l = append(l, string(p))
	}
	return append(l, protoUnknown)
}

// zeroedCounter is a labelled counter and the values of each of its labels,
// in the order of its labels.
type zeroedCounter struct {
	vec    *prometheus.CounterVec
	values [][]string
}

// zeroed lists the labelled counters that start at 0 for every combination
// of their label values. uploadgate_http_requests_total is not among them:
// its doors × methods × status classes make 160 combinations, most of which
// never occur, so its series appear with their first request.
func (m *metrics) zeroed() []zeroedCounter {
	return []zeroedCounter{
		{m.slotChecks, [][]string{slotProtocols, slotResults}},
		{m.sessionAccepts, [][]string{uploadDoors}},
		{m.bytesReceived, [][]string{allDoors}},
		{m.completed, [][]string{uploadDoors}},
		{m.failed, [][]string{failReasons}},
		{m.resumes, [][]string{resumeKinds}},
	}
}

// combinations calls fn with every combination of one value from each set.
func combinations(sets [][]string, fn func(values []string)) {
	values := make([]string, len(sets))
	var walk func(i int)
	walk = func(i int) {
		if i == len(sets) {
			fn(values)
			return
		}
		for _, v := range sets[i] {
			values[i] = v
			walk(i + 1)
		}
	}
	walk(0)
}

// durationBuckets suit both a HEAD (milliseconds) and a long upload (hours).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400}

// storageBuckets suit storage and session-store calls: a bbolt read takes
// microseconds, an S3 request tens of milliseconds, a write as long as the
// client takes to send its chunk.
var storageBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newMetrics(reg prometheus.Registerer, tusd handler.Metrics, version string) (*metrics, error) {
	m := &metrics{
		slotChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_slot_checks_total",
			Help: "Slot signature checks by protocol and result (ok, expired, invalid, missing, malformed, mismatch).",
		}, []string{"protocol", "result"}),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_sessions_opened_total",
			Help: "Upload sessions opened by the first valid use of a slot.",
		}),
		sessionAccepts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_session_accepts_total",
			Help: "Requests with an expired slot that were accepted because the upload's session was live, by door.",
		}, []string{"door"}),
		addrChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_client_address_changes_total",
			Help: "Changes of the client address within an upload session (a network switch); never refused.",
		}),
		rebinds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_rebinds_total",
			Help: "Uploads re-bound to a fresh slot (or renewed with their own slot) after their session ended.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_http_requests_total",
			Help: "HTTP requests answered, by door (put, tus, download, ops, other), method and status class (2xx…5xx).",
		}, []string{"door", "method", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "uploadgate_http_request_duration_seconds",
			Help:    "Time from a request's arrival until its handler returned, by door and method.",
			Buckets: durationBuckets,
		}, []string{"door", "method"}),
		bytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_bytes_received_total",
			Help: "Request body bytes read from clients, by door.",
		}, []string{"door"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_uploads_completed_total",
			Help: "Uploads whose last byte arrived (partial uploads of a concatenation excluded), by door.",
		}, []string{"door"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_uploads_failed_total",
			Help: "Upload requests (PUT at a slot, tus creation, PATCH) answered with an error, by reason.",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "uploadgate_resumes_total",
			Help: "Uploads continued from a stored offset instead of from byte 0, by door (tus, put_range, put_retry, rebind).",
		}, []string{"door"}),
		sessionsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "uploadgate_sessions_expired_total",
			Help: "Incomplete uploads removed by the clean-up after their session ended and the retention passed.",
		}),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "uploadgate_sessions_active",
			Help: "Uploads receiving bytes on this instance right now (sum over instances for the whole service).",
		}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "uploadgate_build_info",
		Help:        "Always 1; the labels tell the version of uploadgate and of Go it was built with.",
		ConstLabels: prometheus.Labels{"version": buildVersion(version), "goversion": runtime.Version()},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{m.slotChecks, m.sessionsOpened, m.sessionAccepts, m.addrChanges, m.rebinds,
		m.requests, m.duration, m.bytesReceived, m.completed, m.failed, m.resumes, m.sessionsExpired, m.sessionsActive,
		build, prometheuscollector.New(tusd)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, z := range m.zeroed() {
		combinations(z.values, func(values []string) { z.vec.WithLabelValues(values...) })
	}
	return m, nil
}

// buildVersion is the version given at build time, else the module version Go
// recorded, else "unknown".
func buildVersion(v string) string {
	if v != "" {
		return v
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// StorageTimer registers uploadgate_storage_operation_duration_seconds in reg
// and returns what observes one call into the upload storage or the session
// store. Hand it to storage.Config.Observe and to auth.Timed: each decorator
// lives beside what it measures, and this is the one histogram they share.
func StorageTimer(reg prometheus.Registerer) (func(op string, took time.Duration), error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "uploadgate_storage_operation_duration_seconds",
		Help:    "Duration of calls into the upload storage (tusd's data store and locker) and the session store, by operation.",
		Buckets: storageBuckets,
	}, []string{"op"})
	if err := reg.Register(h); err != nil {
		return nil, fmt.Errorf("register storage timings: %w", err)
	}
	return func(op string, took time.Duration) { h.WithLabelValues(op).Observe(took.Seconds()) }, nil
}

// countResume counts a resume of kind when ok.
func (g *Gateway) countResume(kind string, ok bool) {
	if ok {
		g.metrics.resumes.WithLabelValues(kind).Inc()
	}
}

// countRemoved counts an upload the clean-up removed: an incomplete one is
// an expired session's (a complete file past its retention is not).
func (g *Gateway) countRemoved(s auth.Session) {
	if !s.Complete {
		g.metrics.sessionsExpired.Inc()
	}
}

// countCompleted counts an upload whose last byte arrived, by the door of the
// request that brought it (partial uploads are counted by their final upload).
func (g *Gateway) countCompleted(ctx context.Context, info handler.FileInfo) {
	if info.IsPartial {
		return
	}
	door := doorTus
	if ri := infoFrom(ctx); ri != nil && ri.door == doorPut {
		door = doorPut
	}
	g.metrics.completed.WithLabelValues(door).Inc()
}

// codeClass is a status's class label: "2xx"…"5xx".
func codeClass(status int) string {
	switch {
	case status < 200:
		return "1xx"
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	default:
		return "5xx"
	}
}

// methodLabel bounds the method label to the methods the doors know.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

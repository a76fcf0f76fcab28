package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/hooks"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
	"github.com/uploadgate/uploadgate/storage"
)

const tusVersion = "1.0.0"

// Config configures a Gateway. Verifier, Sessions, Storage and IDKey are required.
type Config struct {
	// UploadBase is the path the XMPP server signs slots for ("/upload/").
	UploadBase string
	// TusBase is the path of tus upload URLs ("/files/").
	TusBase string
	// PublicURL, when set, is the scheme and host (and optional path prefix)
	// that Location headers use, e.g. behind a reverse proxy.
	PublicURL string
	// MaxSize bounds every upload (0: no bound beyond the slot's size).
	MaxSize int64
	// CORSOrigins are the browser origins allowed to use the doors ("*" for any).
	CORSOrigins []string
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix

	Verifier *auth.Verifier
	Sessions *auth.Sessions
	Storage  *storage.Backend
	// IDKey derives upload IDs from slot paths; it must never change.
	IDKey []byte

	// NetworkTimeout bounds each read of a request body (tusd's per-read deadline).
	NetworkTimeout time.Duration
	// LockTimeout is how long a request waits for an upload's lock before 423.
	LockTimeout time.Duration
	// FailedChecksPerMinute is how many failed slot verifications a client
	// address may make per minute before it gets 429 (0: 10; negative: no limit).
	FailedChecksPerMinute int

	Logger   *slog.Logger
	Registry *prometheus.Registry
	// SeparateMetrics leaves /metrics out of Handler: it is served by
	// MetricsHandler on a listener of its own.
	SeparateMetrics bool
	// Version is reported by uploadgate_build_info.
	Version string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Demo, when set, serves the demo pages under /demo/ (demo.go).
	Demo *DemoConfig
	// Hooks, when set, sends tusd's hook events to a hook handler (hooks.go).
	Hooks *HookConfig
}

// Intervals of the gateway's own work.
const (
	// cleanupInterval is how often expired uploads are removed.
	cleanupInterval = 10 * time.Minute
	// orphanSweepInterval is how often the storage is searched for uploads
	// whose session record is gone (see sweepOrphans).
	orphanSweepInterval = 6 * time.Hour
)

// tusdGrace is tusd's GracefulRequestCompletionTimeout: how long tusd keeps
// a request's context, and a goroutine, after the request ended, also after
// one that ended normally. With tusd's 10 s default a polling load kept
// about 270 MiB of finished HEADs, and 32 connections creating uploads
// about 180 MiB of finished creations (40,000 goroutines), which the
// garbage collector scanned on every cycle. A write whose request ended
// early still gets its 10 s to save what arrived: the storage gives every
// write that grace itself (storage.WithGrace), and the gateway's callbacks
// their session and hook calls (withGrace), without keeping anything once
// they are done.
const tusdGrace = 50 * time.Millisecond

// Gateway is the HTTP front of uploadgate.
type Gateway struct {
	cfg Config
	log *slog.Logger
	// tus is the one adapter through which every door calls tusd.
	tus      upload.Handlers
	cors     cors
	metrics  *metrics
	limiter  *failureLimiter
	registry *prometheus.Registry
	now      func() time.Time
	active   *activeUploads
	marks    *resumeMarks
	// hooks is nil without hooks.
	hooks *hookRunner
	// tusLocation is the prefix of upload URLs in Location headers.
	tusLocation string
}

// New builds a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Verifier == nil || cfg.Sessions == nil || cfg.Storage == nil || len(cfg.IDKey) == 0 {
		return nil, errors.New("gateway: verifier, sessions, storage and ID key are required")
	}
	if k := cfg.Sessions.Policy().IDKey; k != nil && !bytes.Equal(k, cfg.IDKey) {
		// The sessions would look for a slot's own upload under other IDs.
		return nil, errors.New("gateway: the sessions' policy derives upload IDs with another key than the gateway's")
	}
	if cfg.UploadBase == "" {
		cfg.UploadBase = DefaultUploadBase
	}
	if cfg.TusBase == "" {
		cfg.TusBase = DefaultTusBase
	}
	for _, b := range []*string{&cfg.UploadBase, &cfg.TusBase} {
		if !strings.HasPrefix(*b, "/") {
			*b = "/" + *b
		}
		if !strings.HasSuffix(*b, "/") {
			*b += "/"
		}
	}
	if strings.HasPrefix(cfg.UploadBase, cfg.TusBase) || strings.HasPrefix(cfg.TusBase, cfg.UploadBase) {
		return nil, fmt.Errorf("gateway: upload base %q and tus base %q must not contain each other", cfg.UploadBase, cfg.TusBase)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NetworkTimeout <= 0 {
		cfg.NetworkTimeout = DefaultNetworkTimeout
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.FailedChecksPerMinute == 0 {
		cfg.FailedChecksPerMinute = DefaultFailedChecksPerMinute
	}
	g := &Gateway{
		cfg:      cfg,
		log:      withRequestID(cfg.Logger),
		cors:     newCORS(cfg.CORSOrigins),
		registry: cfg.Registry,
		now:      cfg.Now,
	}
	basePath := cfg.TusBase
	if cfg.PublicURL != "" {
		basePath = strings.TrimRight(cfg.PublicURL, "/") + cfg.TusBase
	}
	g.tusLocation = basePath
	if cfg.FailedChecksPerMinute > 0 {
		g.limiter = newFailureLimiter(cfg.FailedChecksPerMinute, cfg.Now)
	}
	tcfg := handler.Config{
		StoreComposer:                    cfg.Storage.Composer,
		BasePath:                         basePath,
		MaxSize:                          cfg.MaxSize,
		DisableDownload:                  true,
		Cors:                             &handler.CorsConfig{Disable: true},
		PreUploadCreateCallback:          g.preCreate,
		PreFinishResponseCallback:        g.preFinish,
		Logger:                           newTusdLogger(cfg.Logger.Handler(), slog.LevelWarn),
		NetworkTimeout:                   cfg.NetworkTimeout,
		AcquireLockTimeout:               cfg.LockTimeout,
		GracefulRequestCompletionTimeout: tusdGrace,
		// The resumable-upload draft (interop versions 3 to 6) next to tus 1.0.
		EnableExperimentalProtocol: true,
	}
	var err error
	if cfg.Hooks != nil && cfg.Hooks.Handler != nil {
		if g.hooks, err = newHookRunner(*cfg.Hooks, cfg.Registry, g.log); err != nil {
			return nil, fmt.Errorf("gateway: hooks: %w", err)
		}
		g.hooks.current = g.currentSlot
		g.hooks.notifyConfig(&tcfg)
		if g.hooks.on(hooks.HookPreTerminate) {
			tcfg.PreUploadTerminateCallback = g.preTerminate
		}
	}
	tusd, err := handler.NewUnroutedHandler(tcfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: tusd handler: %w", err)
	}
	if g.hooks != nil {
		// Every door calls tusd through this handler: its notifications
		// are every door's.
		go g.hooks.consume(tusd)
	}
	g.tus = upload.Handlers{Tusd: tusd}
	m, err := newMetrics(cfg.Registry, tusd.Metrics, cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g.metrics = m
	g.active = newActiveUploads(m.sessionsActive)
	g.marks = newResumeMarks(time.Now)
	return g, nil
}

// Handler returns the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler {
	metrics := promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{Registry: g.registry})
	return g.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The method is resolved (X-HTTP-Method-Override) by observe.
		if r.Body != nil && r.Body != http.NoBody {
			// Every read of a request body obeys the network timeout, and
			// the doors bound it by what the request may store (body.go).
			r.Body = upload.NewBody(w, r, g.cfg.NetworkTimeout)
		}
		path := r.URL.Path
		switch {
		case path == "/healthz":
			g.serveHealth(w, r)
		case path == "/readyz":
			g.serveReady(w, r)
		case path == "/metrics" && !g.cfg.SeparateMetrics:
			metrics.ServeHTTP(w, r)
		case g.cfg.Demo != nil && (strings.HasPrefix(path, DemoPath) || path+"/" == DemoPath):
			g.serveDemo(w, r)
		case strings.HasPrefix(path, g.cfg.UploadBase):
			g.cors.apply(w, r)
			g.serveUploadBase(w, r)
		case strings.HasPrefix(path, g.cfg.TusBase) || path+"/" == g.cfg.TusBase:
			g.cors.apply(w, r)
			g.serveTusBase(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
}

// Run does the gateway's background work (clean-up of expired uploads, and
// of uploads without a session) until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	t := time.NewTicker(cleanupInterval)
	defer t.Stop()
	var swept time.Time
	for {
		if err := g.cleanup(ctx); err != nil && ctx.Err() == nil {
			g.log.WarnContext(ctx, "clean-up failed", "error", err)
		}
		if now := g.cfg.Now(); swept.IsZero() || now.Sub(swept) >= orphanSweepInterval {
			swept = now
			if err := g.sweepOrphans(ctx); err != nil && ctx.Err() == nil {
				g.log.WarnContext(ctx, "search for uploads without a session failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (g *Gateway) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// serveReady answers /readyz: 200 when the storage and the session store
// answer, else 503 naming which does not. The answer is public (probes,
// anyone who reaches the port), so it never carries an error's text, which
// may name paths, hosts or credentials of a URL; the errors are logged.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	// One budget of 3 s for both checks, which run one after the other on
	// the same context: a storage check that hangs leaves the session store
	// check the rest, and the probe is answered within 3 s in all.
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var problems []string
	if err := g.cfg.Storage.Ping(ctx); err != nil {
		g.log.WarnContext(ctx, "readiness check: storage unavailable", "error", err)
		problems = append(problems, "storage: unavailable")
	}
	if err := g.cfg.Sessions.Ping(ctx); err != nil {
		g.log.WarnContext(ctx, "readiness check: session store unavailable", "error", err)
		problems = append(problems, "session store: unavailable")
	}
	if len(problems) > 0 {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Join(problems, "\n") + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

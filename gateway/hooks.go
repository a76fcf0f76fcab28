package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/hooks"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/storage"
)

// This file speaks tusd's hook protocol (package github.com/tus/tusd/v2/pkg/hooks
// and its http, grpc, file and plugin handlers). tusd's own glue,
// hooks.NewHandlerWithHooks, replaces the handler's callbacks; the gateway
// has callbacks of its own (preCreate, preFinish), so it composes them here:
// the gateway decides first, the hook second, and only about a request the
// gateway accepted.

// Metadata keys that the gateway sets on every upload it creates, whatever
// the door, before any hook sees the upload. A client's own Upload-Metadata
// keys with the prefix "uploadgate_" are dropped: these keys are the gateway's
// word only.
const (
	// MetaProtocol is the slot protocol that authorised the upload (v, v2,
	// v3, token, jwt).
	MetaProtocol = "uploadgate_protocol"
	// MetaSlotPath is the slot path ("dir/name"), as signed.
	MetaSlotPath = "uploadgate_slot_path"
	// MetaGetURL is the URL the complete file is served at.
	MetaGetURL = "uploadgate_get_url"
	// MetaSubject is the uploader's JID (the JWT sub); absent for slots
	// that name no uploader.
	MetaSubject = "uploadgate_sub"

	metaPrefix = "uploadgate_"
)

// HookConfig configures tusd's hooks in the gateway.
type HookConfig struct {
	// Handler receives the events (tusd's pkg/hooks/http, grpc, file or
	// plugin). The gateway calls its Setup.
	Handler hooks.HookHandler
	// Events are the enabled events (hooks.AvailableHooks when empty).
	Events []hooks.HookType
	// Timeout bounds one call of a pre-* hook, retries included; the client
	// then gets 503 and retries (0: 15 s).
	Timeout time.Duration
	// Retries is how often a post-create, post-finish or post-terminate
	// event whose delivery failed is delivered again (after the hook
	// handler's own retries), Backoff times the attempt apart.
	Retries int
	Backoff time.Duration
}

// hookRunner invokes the configured hook handler and counts every call.
type hookRunner struct {
	cfg      HookConfig
	enabled  map[hooks.HookType]bool
	log      *slog.Logger
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	pending  prometheus.Gauge
	// inflight tracks post-* deliveries, waited for on shutdown.
	inflight sync.WaitGroup
	// current gives an event of an existing upload its slot as it is now
	// (after a re-bind, the new slot); nil leaves events as they are.
	current func(handler.HookEvent) handler.HookEvent
}

// Results of a hook call, the label values of uploadgate_hook_calls_total.
const (
	hookOK       = "ok"
	hookRejected = "rejected"
	hookFailed   = "failed"
)

func newHookRunner(cfg HookConfig, reg prometheus.Registerer, log *slog.Logger) (*hookRunner, error) {
	if err := cfg.Handler.Setup(); err != nil {
		return nil, err
	}
	if len(cfg.Events) == 0 {
		cfg.Events = hooks.AvailableHooks
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	h := &hookRunner{cfg: cfg, enabled: map[hooks.HookType]bool{}, log: log}
	for _, e := range cfg.Events {
		h.enabled[e] = true
	}
	h.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "uploadgate_hook_calls_total",
		Help: "Calls of tusd hooks by event and result (ok, rejected, failed).",
	}, []string{"event", "result"})
	h.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "uploadgate_hook_duration_seconds",
		Help:    "Latency of tusd hook calls by event, retries included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"event"})
	h.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "uploadgate_hook_deliveries_pending",
		Help: "post-* hook events not yet delivered (being delivered or waiting for a retry).",
	})
	for _, c := range []prometheus.Collector{h.calls, h.duration, h.pending} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, e := range hooks.AvailableHooks {
		for _, r := range []string{hookOK, hookRejected, hookFailed} {
			h.calls.WithLabelValues(string(e), r)
		}
	}
	return h, nil
}

// on reports whether event is enabled.
func (h *hookRunner) on(event hooks.HookType) bool {
	return h != nil && h.enabled[event]
}

// errHookTimeout is a hook call that did not answer within the timeout.
var errHookTimeout = errors.New("hook did not answer in time")

// invoke calls the hook for event, bounded by the timeout, and records the
// call in the metrics, the log and the request's log line.
func (h *hookRunner) invoke(event hooks.HookType, ev handler.HookEvent, bounded bool) (hooks.HookResponse, error) {
	if h.current != nil && event != hooks.HookPreCreate {
		ev = h.current(ev)
	}
	ev = hookView(ev)
	start := time.Now()
	type answer struct {
		res hooks.HookResponse
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		res, err := h.cfg.Handler.InvokeHook(hooks.HookRequest{Type: event, Event: ev})
		ch <- answer{res, err}
	}()
	var a answer
	if bounded {
		t := time.NewTimer(h.cfg.Timeout)
		select {
		case a = <-ch:
		case <-t.C:
			a.err = errHookTimeout
		}
		t.Stop()
	} else {
		a = <-ch
	}
	elapsed := time.Since(start)
	result := hookOK
	switch {
	case a.err != nil:
		result = hookFailed
	case a.res.RejectUpload && event == hooks.HookPreCreate,
		a.res.RejectTermination && event == hooks.HookPreTerminate,
		a.res.StopUpload && event == hooks.HookPostReceive,
		a.res.HTTPResponse.StatusCode >= 400 && event == hooks.HookPreFinish:
		result = hookRejected
	}
	h.calls.WithLabelValues(string(event), result).Inc()
	h.duration.WithLabelValues(string(event)).Observe(elapsed.Seconds())
	if ri := infoFrom(ev.Context); ri != nil && bounded {
		ri.noteHook(string(event)+"="+result, elapsed)
	}
	attrs := []any{"event", string(event), "upload", logID(ev.Upload.ID), "result", result, "duration_ms", float64(elapsed.Microseconds()) / 1000}
	if a.err != nil {
		// The hook's error may quote the hook server's answer, never a
		// secret of the gateway's.
		h.log.WarnContext(ev.Context, "hook failed", append(attrs, "error", a.err)...)
	} else {
		h.log.DebugContext(ev.Context, "hook", attrs...)
	}
	return a.res, a.err
}

// hookView is the event as a hook sees it: the slot's signature (in the URL
// query or a Bearer token) is a capability and never leaves the gateway.
// What the signature proves is in the upload's metadata.
func hookView(ev handler.HookEvent) handler.HookEvent {
	req := ev.HTTPRequest
	if req.Header.Get("Authorization") != "" {
		req.Header = req.Header.Clone()
		req.Header.Del("Authorization")
	}
	if p, q, ok := strings.Cut(req.URI, "?"); ok {
		vals, err := url.ParseQuery(q)
		if err != nil {
			req.URI = p
		} else {
			for _, k := range []string{"v", "v2", "v3", "token", "expires"} {
				vals.Del(k)
			}
			req.URI = p
			if len(vals) > 0 {
				req.URI += "?" + vals.Encode()
			}
		}
	}
	ev.HTTPRequest = req
	return ev
}

// errHookFailed answers a request whose pre-* hook failed or timed out: the
// client retries (503, as a storage outage).
func errHookFailed() handler.Error {
	err := handler.NewError("ERR_HOOK_FAILED", "the upload could not be checked; retry later", http.StatusServiceUnavailable)
	err.HTTPResponse.Header["Retry-After"] = strconv.Itoa(retryAfter)
	return err
}

// gatewayMetadata is the metadata the gateway stores with a new upload:
// the client's (without keys of the gateway's prefix) and the gateway's keys.
func (g *Gateway) gatewayMetadata(ctx context.Context, client handler.MetaData, cr *creation) handler.MetaData {
	meta := handler.MetaData{}
	for k, v := range client {
		if !strings.HasPrefix(k, metaPrefix) {
			meta[k] = v
		}
	}
	meta[MetaProtocol] = string(cr.slot.Protocol)
	meta[MetaSlotPath] = cr.slot.Path
	meta[MetaGetURL] = g.getURL(ctx, cr.slot.Path)
	if cr.slot.Subject != "" {
		meta[MetaSubject] = cr.slot.Subject
	}
	return meta
}

// currentSlot gives a hook event of an existing upload the upload's slot as it
// is now: the metadata was stored at creation, and a re-bind moves the upload
// to another slot, whose path, GET URL, protocol and uploader the hook must see.
func (g *Gateway) currentSlot(ev handler.HookEvent) handler.HookEvent {
	ctx := context.WithoutCancel(ev.Context)
	s, err := g.cfg.Sessions.Authorize(ctx, ev.Upload.ID)
	if err != nil && !errors.Is(err, auth.ErrSessionExpired) {
		return ev
	}
	if s.Kind != auth.KindWhole || s.SlotPath == "" || s.SlotPath == ev.Upload.MetaData[MetaSlotPath] {
		return ev
	}
	meta := make(handler.MetaData, len(ev.Upload.MetaData)+4)
	for k, v := range ev.Upload.MetaData {
		meta[k] = v
	}
	meta[MetaSlotPath] = s.SlotPath
	meta[MetaGetURL] = g.getURL(ctx, s.SlotPath)
	meta[MetaProtocol] = string(s.Protocol)
	if s.Subject != "" {
		meta[MetaSubject] = s.Subject
	}
	ev.Upload.MetaData = meta
	return ev
}

// hookMetadata applies a pre-create hook's metadata change: the hook may add
// and change keys, but the file's name and type (which the slot signs) and
// the gateway's keys stay as the gateway set them.
func hookMetadata(gw, changed handler.MetaData) handler.MetaData {
	if changed == nil {
		return gw
	}
	meta := handler.MetaData{}
	for k, v := range changed {
		if !strings.HasPrefix(k, metaPrefix) {
			meta[k] = v
		}
	}
	for k, v := range gw {
		if strings.HasPrefix(k, metaPrefix) || k == "filename" || k == "filetype" {
			meta[k] = v
		}
	}
	return meta
}

// getURL is the public URL of a slot's file.
func (g *Gateway) getURL(ctx context.Context, slotPath string) string {
	segs := strings.Split(slotPath, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	p := strings.TrimSuffix(g.cfg.UploadBase, "/") + "/" + strings.Join(segs, "/")
	if g.cfg.PublicURL != "" {
		return strings.TrimRight(g.cfg.PublicURL, "/") + p
	}
	if ri := infoFrom(ctx); ri != nil && ri.origin != "" {
		return ri.origin + p
	}
	return p
}

// preCreateHook runs the pre-create hook for a creation the gateway accepted,
// with the upload as it will be stored. It returns the hook's HTTP response
// and the metadata to store.
func (g *Gateway) preCreateHook(ev handler.HookEvent, meta handler.MetaData) (handler.HTTPResponse, handler.MetaData, error) {
	if !g.hooks.on(hooks.HookPreCreate) {
		return handler.HTTPResponse{}, meta, nil
	}
	ev.Upload.MetaData = meta
	res, err := g.hooks.invoke(hooks.HookPreCreate, ev, true)
	if err != nil {
		return handler.HTTPResponse{}, nil, errHookFailed()
	}
	if res.RejectUpload {
		rej := handler.ErrUploadRejectedByServer
		rej.HTTPResponse = rej.HTTPResponse.MergeWith(res.HTTPResponse)
		return handler.HTTPResponse{}, nil, rej
	}
	// The upload's ID and storage are the gateway's: a change of them is ignored.
	return res.HTTPResponse, hookMetadata(meta, res.ChangeFileInfo.MetaData), nil
}

// preFinishHook runs the pre-finish hook for a complete upload. A hook that
// refuses the file (an answer status of 400 or more) or fails removes it:
// a file that a hook did not accept is never served, and the client's retry
// uploads it again. tusd holds the upload's lock meanwhile.
func (g *Gateway) preFinishHook(ev handler.HookEvent) (handler.HTTPResponse, error) {
	if !g.hooks.on(hooks.HookPreFinish) {
		return handler.HTTPResponse{}, nil
	}
	res, err := g.hooks.invoke(hooks.HookPreFinish, ev, true)
	if err == nil && res.HTTPResponse.StatusCode < 400 {
		return res.HTTPResponse, nil
	}
	ctx := context.WithoutCancel(ev.Context)
	if up, gerr := g.cfg.Storage.Upload(ctx, ev.Upload.ID); gerr == nil {
		if terr := g.cfg.Storage.Composer.Terminater.AsTerminatableUpload(up).Terminate(ctx); terr != nil {
			g.log.ErrorContext(ctx, "remove an upload that the pre-finish hook did not accept", "upload", logID(ev.Upload.ID), "error", terr)
		}
	}
	if ferr := g.cfg.Sessions.Forget(ctx, ev.Upload.ID); ferr != nil {
		g.log.WarnContext(ctx, "forget session", "upload", logID(ev.Upload.ID), "error", ferr)
	}
	if err != nil {
		return handler.HTTPResponse{}, errHookFailed()
	}
	rej := handler.NewError("ERR_UPLOAD_REJECTED", "upload has been rejected by server", res.HTTPResponse.StatusCode)
	rej.HTTPResponse = rej.HTTPResponse.MergeWith(res.HTTPResponse)
	return handler.HTTPResponse{}, rej
}

// withGrace gives a callback of tusd's the storage's write grace
// (storage.WithGrace) for its session and hook calls: tusd's own is short
// (tusdGrace). Call it as defer g.withGrace(&ev)().
func (g *Gateway) withGrace(ev *handler.HookEvent) context.CancelFunc {
	ctx, done := storage.WithGrace(ev.Context, g.cfg.Storage.WriteGrace())
	ev.Context = ctx
	return done
}

// preTerminate is tusd's pre-terminate callback (only with the hook enabled).
func (g *Gateway) preTerminate(ev handler.HookEvent) (handler.HTTPResponse, error) {
	defer g.withGrace(&ev)()
	res, err := g.hooks.invoke(hooks.HookPreTerminate, ev, true)
	if err != nil {
		return handler.HTTPResponse{}, errHookFailed()
	}
	if res.RejectTermination {
		rej := handler.ErrUploadTerminationRejected
		rej.HTTPResponse = rej.HTTPResponse.MergeWith(res.HTTPResponse)
		return handler.HTTPResponse{}, rej
	}
	return res.HTTPResponse, nil
}

// notifyConfig turns on tusd's notifications for the enabled post-* events.
func (h *hookRunner) notifyConfig(c *handler.Config) {
	c.NotifyCompleteUploads = h.on(hooks.HookPostFinish)
	c.NotifyTerminatedUploads = h.on(hooks.HookPostTerminate)
	c.NotifyUploadProgress = h.on(hooks.HookPostReceive)
	c.NotifyCreatedUploads = h.on(hooks.HookPostCreate)
}

// consume delivers tusd's notifications for the post-* events. tusd's
// channels are unbuffered: every event is handed to a goroutine at once.
func (h *hookRunner) consume(t *handler.UnroutedHandler) {
	for {
		select {
		case ev := <-t.CompleteUploads:
			h.deliver(hooks.HookPostFinish, ev)
		case ev := <-t.TerminatedUploads:
			h.deliver(hooks.HookPostTerminate, ev)
		case ev := <-t.CreatedUploads:
			h.deliver(hooks.HookPostCreate, ev)
		case ev := <-t.UploadProgress:
			h.deliver(hooks.HookPostReceive, ev)
		}
	}
}

// deliver sends a post-* event at least once: a delivery that fails (after
// the hook handler's own retries) is repeated up to Retries times, Backoff
// times the attempt apart. The event outlives its request.
func (h *hookRunner) deliver(event hooks.HookType, ev handler.HookEvent) {
	ev.Context = context.WithoutCancel(ev.Context)
	h.inflight.Add(1)
	h.pending.Inc()
	go func() {
		defer h.inflight.Done()
		defer h.pending.Dec()
		retries := h.cfg.Retries
		if event == hooks.HookPostReceive {
			retries = 0 // a progress report is superseded by the next one
		}
		for attempt := 0; ; attempt++ {
			res, err := h.invoke(event, ev, false)
			if err == nil {
				if event == hooks.HookPostReceive && res.StopUpload {
					ev.Upload.StopUpload(res.HTTPResponse)
				}
				return
			}
			if attempt >= retries {
				if retries > 0 {
					h.log.Error("hook event not delivered; giving up", "event", string(event), "upload", logID(ev.Upload.ID), "attempts", attempt+1)
				}
				return
			}
			time.Sleep(h.cfg.Backoff * time.Duration(attempt+1))
		}
	}()
}

// WaitHooks waits until the post-* hook events of finished requests are
// delivered (or given up), or until ctx ends. Call it after the HTTP server
// has shut down.
func (g *Gateway) WaitHooks(ctx context.Context) error {
	if g.hooks == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		g.hooks.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParseHookEvents parses tusd's --hooks-enabled-events: a comma-separated
// list of event names; empty for all.
func ParseHookEvents(s string) ([]hooks.HookType, error) {
	var out []hooks.HookType
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !slices.Contains(hooks.AvailableHooks, hooks.HookType(e)) {
			return nil, errors.New("unknown hook event " + strconv.Quote(e))
		}
		out = append(out, hooks.HookType(e))
	}
	if len(out) == 0 {
		out = hooks.AvailableHooks
	}
	return out, nil
}

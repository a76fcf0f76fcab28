package upload

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/storage"
)

// Kind is what became of a request that tusd ran, in the terms the doors
// answer in. The zero Kind is success.
type Kind int

// Kinds of outcome.
const (
	OK Kind = iota
	// Interrupted: the client's body ended early.
	Interrupted
	// Superseded: another request for the upload (a client that
	// reconnected) took its lock; what arrived is kept.
	Superseded
	// Timeout: the client's body stalled past the network timeout.
	Timeout
	// Locked: another request holds the upload.
	Locked
	// Conflict: the request's offset is not the upload's.
	Conflict
	// TooLarge: the body goes past what the upload may store.
	TooLarge
	// Storage: the storage failed or is full; retry later.
	Storage
	// Shutdown: the server is stopping; retry later.
	Shutdown
	// NotFound: no such upload.
	NotFound
	// Invalid: the request is malformed or not allowed for this upload.
	Invalid
	// Internal: anything else.
	Internal
)

var kindNames = [...]string{OK: "ok", Interrupted: "interrupted", Superseded: "superseded", Timeout: "timeout", Locked: "locked", Conflict: "conflict",
	TooLarge: "too_large", Storage: "storage", Shutdown: "shutdown", NotFound: "not_found", Invalid: "invalid", Internal: "internal"}

// String is the kind's name, also its label in logs and metrics.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// Outcome is tusd's answer to one request, typed. Header and Body are tusd's
// own answer, for a door that passes it on (the tus door); Offset and Kind
// are what the other doors act on.
type Outcome struct {
	Status int
	Header http.Header
	// Body is the start of tusd's answer body (error answers; at most 4 KiB).
	Body []byte
	// Offset is the upload's offset after the request; -1 when tusd did not say.
	Offset int64
	Kind   Kind
	// Reason is tusd's message for a failure, without its error code.
	Reason string
}

// OK reports whether tusd succeeded.
func (o Outcome) OK() bool { return o.Kind == OK }

// Call is a request to tusd.
type Call struct {
	// Method is the tus method tusd acts on (POST, HEAD, PATCH, DELETE, OPTIONS).
	Method string
	// ID is the upload ("" for a creation and OPTIONS).
	ID string
	// Forward passes the client's own request on (the tus door: its headers
	// and body are tus already). Otherwise the request is built from Header,
	// Body and Length alone, the client's tus and draft headers removed (the
	// PUT door speaks XEP-0363 to the client and tus to tusd).
	Forward bool
	// Drop names client headers that a forwarded request does not pass on.
	Drop   []string
	Header map[string]string
	Body   io.Reader
	Length int64
	// Ctx replaces the request's context (e.g. to carry a checked creation
	// to the pre-create hook); nil keeps it.
	Ctx context.Context
	// Inform amends an informational answer (the draft's 104) before it goes
	// to the client; returning false holds it back.
	Inform func(h http.Header) bool
}

// Handlers is tusd's handler that the adapter calls.
type Handlers struct {
	Tusd *handler.UnroutedHandler
}

// Do runs tusd on call for the client request r, whose connection (read
// deadlines) and remote address tusd uses, and returns tusd's answer as an
// Outcome. Nothing but an informational answer reaches the client: the door
// answers. This is the one place that reads tusd's answers.
func (h Handlers) Do(w http.ResponseWriter, r *http.Request, call Call) Outcome {
	ctx := call.Ctx
	if ctx == nil {
		ctx = r.Context()
	}
	if call.Method == http.MethodHead {
		// Only a read: the storage may answer from its cache of upload
		// states, and takes the upload's lock only if a request holds it.
		ctx = storage.ReadOnly(ctx)
	}
	var r2 *http.Request
	if call.Forward && len(call.Header) == 0 && len(call.Drop) == 0 {
		r2 = r.WithContext(ctx) // nothing to change but the path: no copy of the header
	} else {
		r2 = r.Clone(ctx)
	}
	r2.Method = call.Method
	u := *r.URL
	u.Path, u.RawPath = call.ID, ""
	if !call.Forward {
		u.RawQuery = ""
		for _, k := range []string{"Content-Range", "Content-Type", "Content-Disposition", "Upload-Concat", "Upload-Defer-Length", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Draft-Interop-Version", "Upload-Complete", "Upload-Incomplete"} {
			r2.Header.Del(k)
		}
		r2.Header.Set("Tus-Resumable", "1.0.0")
	}
	r2.URL = &u
	for _, k := range call.Drop {
		r2.Header.Del(k)
	}
	for k, v := range call.Header {
		r2.Header.Set(k, v)
	}
	switch {
	case call.Body != nil:
		r2.Body = io.NopCloser(call.Body)
		r2.ContentLength = call.Length
		if !call.Forward {
			r2.Header.Set("Content-Type", "application/offset+octet-stream")
		}
	case !call.Forward:
		r2.Body = http.NoBody
		r2.ContentLength = 0
	}
	c := &capture{real: w, header: http.Header{}, inform: call.Inform}
	h.handler(call.Method).ServeHTTP(c, r2)
	return c.outcome(BodyOf(r))
}

// handler is tusd's handler for a method, behind tusd's middleware (which
// answers OPTIONS itself).
func (h Handlers) handler(method string) http.Handler {
	t := h.Tusd
	switch method {
	case http.MethodHead:
		return t.Middleware(http.HandlerFunc(t.HeadFile))
	case http.MethodPost:
		return t.Middleware(http.HandlerFunc(t.PostFile))
	case http.MethodPatch:
		return t.Middleware(http.HandlerFunc(t.PatchFile))
	case http.MethodDelete:
		return t.Middleware(http.HandlerFunc(t.DelFile))
	default:
		return t.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	}
}

// capture holds tusd's final answer for the door, and lets informational
// answers through.
type capture struct {
	real   http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
	inform func(http.Header) bool
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if code < 200 {
		if c.inform != nil && !c.inform(c.header) {
			return
		}
		h := c.real.Header()
		for k, v := range c.header {
			h[k] = v
		}
		c.real.WriteHeader(code)
		for k := range c.header {
			h.Del(k)
		}
		return
	}
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body.Len() < 4096 {
		c.body.Write(p[:min(len(p), 4096-c.body.Len())])
	}
	return len(p), nil
}

// Unwrap lets tusd's http.ResponseController reach the connection (read deadlines).
func (c *capture) Unwrap() http.ResponseWriter { return c.real }

func (c *capture) outcome(b *Body) Outcome {
	o := Outcome{Status: c.status, Header: c.header, Body: c.body.Bytes(), Offset: -1}
	if o.Status == 0 {
		o.Status = http.StatusOK
	}
	if v := c.header.Get("Upload-Offset"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			o.Offset = n
		}
	}
	if o.Status < 300 {
		return o
	}
	code, msg, _ := strings.Cut(strings.TrimSpace(string(o.Body)), ": ")
	o.Reason = msg
	if !strings.HasPrefix(code, "ERR_") {
		o.Reason = strings.TrimSpace(string(o.Body))
	}
	if o.Reason == "" {
		o.Reason = "upload failed"
	}
	o.Kind = classify(o.Status, code, b)
	return o
}

// causes are tusd's error codes and what they mean for the doors.
var causes = map[string]Kind{
	handler.ErrServerShutdown.ErrorCode:        Shutdown,
	handler.ErrUploadInterrupted.ErrorCode:     Superseded,
	handler.ErrUploadStoppedByServer.ErrorCode: Interrupted,
	handler.ErrUnexpectedEOF.ErrorCode:         Interrupted,
	handler.ErrConnectionReset.ErrorCode:       Interrupted,
	handler.ErrReadTimeout.ErrorCode:           Timeout,
	handler.ErrSizeExceeded.ErrorCode:          TooLarge,
	handler.ErrMaxSizeExceeded.ErrorCode:       TooLarge,
	handler.ErrFileLocked.ErrorCode:            Locked,
	handler.ErrLockTimeout.ErrorCode:           Locked,
	handler.ErrMismatchOffset.ErrorCode:        Conflict,
	handler.ErrNotFound.ErrorCode:              NotFound,
	"ERR_STORAGE_UNAVAILABLE":                  Storage,
	"ERR_INSUFFICIENT_STORAGE":                 Storage,
}

func classify(status int, code string, b *Body) Kind {
	if k, ok := causes[code]; ok {
		return k
	}
	switch {
	case b.TimedOut():
		// tusd also stops a request by moving its read deadline (another
		// request took the upload): its error code, above, says so.
		return Timeout
	case status == http.StatusRequestEntityTooLarge:
		return TooLarge
	case status == http.StatusInsufficientStorage || status == http.StatusServiceUnavailable:
		return Storage
	case status == http.StatusLocked:
		return Locked
	case status == http.StatusConflict:
		return Conflict
	case status == http.StatusNotFound || status == http.StatusGone:
		return NotFound
	case status < 500:
		return Invalid
	}
	return Internal
}

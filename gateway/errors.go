package gateway

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
)

// refusal is a request the gateway answers itself with an error status. Its
// reason is a short plain-text sentence for the client and the log; it never
// contains a secret, a signature or an upload ID.
type refusal struct {
	status int
	reason string
	header http.Header
	cause  error
}

func (r *refusal) Error() string { return r.reason }
func (r *refusal) Unwrap() error { return r.cause }

func refuse(status int, reason string) *refusal {
	return &refusal{status: status, reason: reason}
}

func (r *refusal) with(key, value string) *refusal {
	c := *r
	c.header = r.header.Clone()
	if c.header == nil {
		c.header = http.Header{}
	}
	c.header.Set(key, value)
	return &c
}

// retryAfter is what a client is told to wait when a dependency is down.
const retryAfter = 5

// The table of causes and the status codes clients act on. XMPP clients and
// tus-js-client decide on the status alone: 403 and 404 make them give up,
// 423 and 503 make tus-js-client retry.
var refusalTable = []struct {
	err error
	r   *refusal
}{
	{auth.ErrBearerRequired, refuse(http.StatusUnauthorized, "missing or malformed bearer token").with("WWW-Authenticate", `Bearer realm="uploadgate"`)},
	// No query signature and no Authorization: the credentials are missing,
	// 401 as Prosody's mod_http_file_share answers a JWT slot without its header.
	{auth.ErrNoSignature, refuse(http.StatusUnauthorized, "missing slot signature (no signature in the query, no Authorization header)").with("WWW-Authenticate", `Bearer realm="uploadgate"`)},
	{auth.ErrMalformedSignature, refuse(http.StatusForbidden, "malformed slot signature")},
	{auth.ErrBadSignature, refuse(http.StatusForbidden, "invalid slot signature")},
	{auth.ErrSlotMismatch, refuse(http.StatusForbidden, "token is not for this slot")},
	{auth.ErrSlotExpired, refuse(http.StatusForbidden, "slot expired")},
	{auth.ErrSizeMismatch, refuse(http.StatusRequestEntityTooLarge, "size differs from the slot's size")},
	{auth.ErrSessionExpired, refuse(http.StatusGone, "upload session expired; re-bind it with a fresh slot")},
	{auth.ErrSessionNotFound, refuse(http.StatusNotFound, "upload not found")},
	{auth.ErrStoreUnavailable, refuse(http.StatusServiceUnavailable, "session store unavailable; retry later").with("Retry-After", strconv.Itoa(retryAfter))},
	{handler.ErrNotFound, refuse(http.StatusNotFound, "upload not found")},
}

// refusalFor maps an error to the refusal clients should see.
func refusalFor(err error) *refusal {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	for _, row := range refusalTable {
		if errors.Is(err, row.err) {
			c := *row.r
			c.cause = err
			return &c
		}
	}
	var te handler.Error
	if errors.As(err, &te) {
		rf := &refusal{status: te.HTTPResponse.StatusCode, reason: te.Message, cause: err}
		for k, v := range te.HTTPResponse.Header {
			if k != "Content-Type" {
				rf = rf.with(k, v)
			}
		}
		return rf
	}
	return &refusal{status: http.StatusInternalServerError, reason: "internal error", cause: err}
}

// writeRefusal answers a request with r. 5xx causes are logged (without secrets:
// errors from auth never carry them).
func (g *Gateway) writeRefusal(w http.ResponseWriter, req *http.Request, r *refusal) {
	if r.status >= 500 && r.cause != nil {
		g.log.ErrorContext(req.Context(), "request failed", "status", r.status, "error", r.cause)
	}
	h := w.Header()
	for k, v := range r.header {
		h[k] = v
	}
	if req.Header.Get("Tus-Resumable") != "" {
		h.Set("Tus-Resumable", tusVersion)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if b := upload.BodyOf(req); b.Unread() {
		// A refused request is answered without waiting for its body: the
		// connection is closed after the answer, and the read deadline is
		// moved to now so that net/http does not wait for the rest of the
		// body (it reads up to 256 KiB of an unread body) from a client
		// that may never send it.
		h.Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	g.send(w, req, r.status, r.reason+"\n")
}

// send writes an answer that the gateway composed, with status and a plain
// text body ("" for none). The door's protocol completes it first (finish).
func (g *Gateway) send(w http.ResponseWriter, r *http.Request, status int, body string) {
	status, replaced := g.finish(w, r, status)
	if replaced != "" {
		body = replaced
		if w.Header().Get("Content-Type") != problemJSON {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	if r.Method != http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if body != "" && r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

// finish applies the protocol of the request's door to a final answer before
// it is sent: the status to send, and a body that replaces the answer's own
// ("" keeps it). Only the resumable-upload draft has anything to add.
func (g *Gateway) finish(w http.ResponseWriter, r *http.Request, status int) (int, string) {
	if d := draftOf(r); d != nil {
		return d.finish(w.Header(), status)
	}
	return status, ""
}

func success(status int) bool { return status >= 200 && status < 300 }

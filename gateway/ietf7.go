package gateway

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
)

// Interop versions 7 (drafts -06 to -08) and 8 (-09 to -11) of the IETF
// resumable-upload draft, the versions current iPhones send. tusd v2.10.1
// speaks only 3 to 6, so for these versions the gateway is the protocol
// adapter: it calls tusd through the upload core with plain tus 1.0 requests
// (creation, HEAD, PATCH, DELETE) and composes the draft's answers from the
// core's typed outcome and the stored state. What each version requires, and
// where the text says so, is in docs/ietf.md.

// problemJSON is the media type of problem details (RFC 9457).
const problemJSON = "application/problem+json"

// partialUpload is the media type of an append (drafts -04 on).
const partialUpload = "application/partial-upload"

// The draft's problem types.
const (
	problemTypes            = "https://iana.org/assignments/http-problem-types#"
	problemMismatchedOffset = problemTypes + "mismatching-upload-offset"
	problemCompleted        = problemTypes + "completed-upload"
	problemInconsistent     = problemTypes + "inconsistent-upload-length"
)

// problem is the problem details of a refused draft request.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Expected *int64 `json:"expected-offset,omitempty"`
	Provided *int64 `json:"provided-offset,omitempty"`
}

func (p *problem) body() string {
	b, _ := json.Marshal(p)
	return string(b) + "\n"
}

func problemInconsistentLength() *problem {
	return &problem{Type: problemInconsistent, Title: "inconsistent length values for upload"}
}

func problemMismatchingOffset(expected, provided int64) *problem {
	return &problem{Type: problemMismatchedOffset, Title: "offset from request does not match offset of resource", Expected: &expected, Provided: &provided}
}

func problemCompletedUpload() *problem {
	return &problem{Type: problemCompleted, Title: "upload is already completed"}
}

// finalUpload7 completes an answer at an upload URL in versions 7 and 8:
// the draft's status codes, and the state of the upload after an append.
func (d *draftReq) finalUpload7(h http.Header, code int) int {
	if code == http.StatusGone {
		// The draft's word for an upload that is no longer active.
		code = http.StatusNotFound
	}
	if d.r.Method == http.MethodPatch && code != http.StatusNotFound && h.Get("Upload-Complete") == "" {
		// Drafts -06 on: every answer to an append that did not
		// complete the upload, successful or not, says so.
		d.stateFields(h)
	}
	return code
}

// stateFields states an upload's offset and completeness in an answer.
func (d *draftReq) stateFields(h http.Header) {
	info, err := d.g.cfg.Storage.Info(context.WithoutCancel(d.r.Context()), d.id)
	if err != nil {
		setDraftComplete(h, d.v, false)
		return
	}
	h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
	setDraftComplete(h, d.v, !info.SizeIsDeferred && info.Offset == info.Size)
}

// inform7 sends the 104 of a creation: the upload URL and its limits, before
// the body is read. Only the first 104 of a request names the upload.
func (g *Gateway) inform7(w http.ResponseWriter, d *draftReq, deadline time.Time) {
	if d.informed {
		return
	}
	d.informed = true
	limit := g.draftLimit(d.size)
	if !deadline.IsZero() {
		limit = g.withLifetime(limit, deadline, d.v)
	}
	h := w.Header()
	h.Set("Location", d.location)
	h.Set(draftVersionField, strconv.Itoa(d.v))
	h.Set("Upload-Limit", limit)
	w.WriteHeader(statusResumptionSupported)
	for _, k := range []string{"Location", draftVersionField, "Upload-Limit"} {
		h.Del(k)
	}
}

// putCreateDraft7 is the upload creation by PUT in versions 7 and 8, after
// the slot checks of putAtSlot: a tus creation without content, the 104 with
// the upload URL, then the body appended from offset 0, then 201.
func (g *Gateway) putCreateDraft7(w http.ResponseWriter, r *http.Request, d *draftReq, slot auth.Slot, id, addr string, body io.Reader, size int64, meta map[string]string) {
	d.id, d.size = id, size
	cr := &creation{slot: slot, uploadID: id, kind: auth.KindWhole, addr: addr}
	created := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPost,
		Header: map[string]string{
			"Upload-Length":   strconv.FormatInt(size, 10),
			"Upload-Metadata": handler.SerializeMetadataHeader(meta),
		},
		Ctx: context.WithValue(r.Context(), creationKey{}, cr),
	})
	if !created.OK() {
		g.answerPut(w, r, created, size, nil)
		return
	}
	expires := created.Header.Get("Upload-Expires")
	deadline, _ := http.ParseTime(expires)
	d.location = g.uploadURL(r, id)
	g.inform7(w, d, deadline)
	// The content is the whole file, or its first part (Upload-Length is then
	// the whole); a PUT that restarts the upload sends the whole file.
	length := r.ContentLength
	if length > size {
		length = size
	}
	out := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPatch,
		ID:     id,
		Header: map[string]string{"Upload-Offset": "0"},
		Body:   body,
		Length: length,
	})
	if !out.OK() {
		g.answerPut(w, r, out, size, nil)
		return
	}
	noteOutcome(r.Context(), out.Kind)
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(out.Offset, 10))
	if expires != "" {
		h.Set("Upload-Expires", expires)
	}
	complete := out.Offset == size
	setDraftComplete(h, d.v, complete)
	if claims, _, _ := draftComplete(r.Header, d.v); claims && !complete {
		// The content was to end the upload, but ended before its length.
		d.problem = problemInconsistentLength()
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Upload-Complete: ?1, but the content ended before the upload's length"))
		return
	}
	g.send(w, r, http.StatusCreated, "")
}

// postCreateDraft7 is the upload creation by POST at a slot URL (the tus
// door's endpoint) in versions 7 and 8, after the slot checks of createAtSlot:
// as putCreateDraft7, with the tus door's metadata.
func (g *Gateway) postCreateDraft7(w http.ResponseWriter, r *http.Request, d *draftReq, cr *creation) {
	size, ok, err := headerLength(r.Header, "Upload-Length")
	if !ok || err != nil {
		g.writeRefusal(w, r, refuse(http.StatusLengthRequired, "a resumable upload creation needs Upload-Length"))
		return
	}
	d.id, d.size = cr.uploadID, size
	hdr := map[string]string{"Upload-Length": strconv.FormatInt(size, 10)}
	if m := r.Header.Get("Upload-Metadata"); m != "" {
		hdr["Upload-Metadata"] = m
	}
	created := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPost,
		Header: hdr,
		Ctx:    context.WithValue(r.Context(), creationKey{}, cr),
	})
	noteOutcome(r.Context(), created.Kind)
	if !created.OK() {
		g.writeRefusal(w, r, &refusal{status: created.Status, reason: created.Reason})
		return
	}
	expires := created.Header.Get("Upload-Expires")
	deadline, _ := http.ParseTime(expires)
	d.location = g.uploadURL(r, cr.uploadID)
	offset := created.Offset
	if r.ContentLength != 0 {
		g.inform7(w, d, deadline)
		out := g.tus.Do(w, r, upload.Call{
			Method: http.MethodPatch,
			ID:     cr.uploadID,
			Header: map[string]string{"Upload-Offset": "0"},
			Body:   r.Body,
			Length: r.ContentLength,
		})
		noteOutcome(r.Context(), out.Kind)
		if !out.OK() {
			rf := &refusal{status: out.Status, reason: out.Reason}
			if out.Kind == upload.Timeout {
				rf.status = http.StatusRequestTimeout
			}
			w.Header().Set("Location", d.location)
			g.writeRefusal(w, r, rf)
			return
		}
		offset = out.Offset
	}
	h := w.Header()
	h.Set("Location", d.location)
	h.Set("Upload-Offset", strconv.FormatInt(max(offset, 0), 10))
	if expires != "" {
		h.Set("Upload-Expires", expires)
	}
	if claims, _, _ := draftComplete(r.Header, d.v); claims && offset != size {
		d.problem = problemInconsistentLength()
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Upload-Complete: ?1, but the content ended before the upload's length"))
		return
	}
	g.send(w, r, http.StatusCreated, "")
}

// draftAtUpload7 answers a version 7 or 8 request at an upload URL: offset
// retrieval (HEAD), append (PATCH), cancellation (DELETE) and OPTIONS. The
// upload's session authorises it, as for tus: it works after the slot's own
// expiry, from any address, on any instance.
func (g *Gateway) draftAtUpload7(w http.ResponseWriter, r *http.Request, v int) {
	id, _ := strings.CutPrefix(r.URL.Path, g.cfg.TusBase)
	d := &draftReq{g: g, v: v, kind: draftUpload, id: id, size: -1}
	r = withDraft(r, d)
	switch r.Method {
	case http.MethodOptions:
		h := w.Header()
		h.Set("Allow", "HEAD, PATCH, DELETE, OPTIONS")
		h.Set("Accept-Patch", partialUpload)
		h.Set("Upload-Limit", g.draftLimit(-1))
		g.send(w, r, http.StatusOK, "")
		return
	case http.MethodHead, http.MethodPatch, http.MethodDelete:
	default:
		w.Header().Set("Allow", "HEAD, PATCH, DELETE, OPTIONS")
		g.writeRefusal(w, r, refuse(http.StatusMethodNotAllowed, "method not allowed on an upload URL"))
		return
	}
	sess, rf := g.uploadSession(r, id)
	if rf != nil {
		// A store outage is a 503 with Retry-After: a draft client resumes
		// after a 5xx.
		g.writeRefusal(w, r, rf)
		return
	}
	switch r.Method {
	case http.MethodHead:
		g.draftHead7(w, r, d, sess)
	case http.MethodPatch:
		g.draftAppend7(w, r, d, sess)
	case http.MethodDelete:
		g.draftCancel7(w, r, d, sess)
	}
}

// draftHead7 is offset retrieval: 204 with the offset, the completeness, the
// length and the limits, never cached.
func (g *Gateway) draftHead7(w http.ResponseWriter, r *http.Request, d *draftReq, sess auth.Session) {
	out := g.tus.Do(w, r, upload.Call{Method: http.MethodHead, ID: d.id})
	noteOutcome(r.Context(), out.Kind)
	if !out.OK() {
		g.writeRefusal(w, r, outcomeRefusal(out))
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Upload-Offset", strconv.FormatInt(out.Offset, 10))
	size, known, _ := headerLength(out.Header, "Upload-Length")
	if !known {
		size = -1
	}
	setDraftComplete(h, d.v, sess.Complete || (known && out.Offset == size))
	if known {
		h.Set("Upload-Length", strconv.FormatInt(size, 10))
	}
	h.Set("Upload-Limit", g.withLifetime(g.draftLimit(size), g.cfg.Sessions.DeadlineAfterTouch(sess), d.v))
	g.send(w, r, http.StatusNoContent, "")
	g.touchDraft(r, sess)
}

// draftAppend7 is an append: PATCH with application/partial-upload at the
// upload's offset. The checks the draft names come first, without reading
// the body; tusd then appends (through the core, bounded by the upload's
// length), and the answer is composed from the outcome.
func (g *Gateway) draftAppend7(w http.ResponseWriter, r *http.Request, d *draftReq, sess auth.Session) {
	ctx := r.Context()
	offset, err := parseNonNegative(r.Header.Get("Upload-Offset"))
	if err != nil {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "an append needs a valid Upload-Offset"))
		return
	}
	claimsEnd, present, cerr := draftComplete(r.Header, d.v)
	if cerr != nil || !present {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "an append needs Upload-Complete: ?0 or ?1"))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != partialUpload {
		w.Header().Set("Accept-Patch", partialUpload)
		g.writeRefusal(w, r, refuse(http.StatusUnsupportedMediaType, "an append is a PATCH with Content-Type: "+partialUpload))
		return
	}
	info, err := g.cfg.Storage.Info(ctx, d.id)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	size := int64(-1)
	if !info.SizeIsDeferred {
		size = info.Size
	}
	d.size = size
	if sess.Complete || (size >= 0 && info.Offset == size) {
		// A complete upload is immutable. Draft -11 (version 8): content
		// appended to it is an inconsistent length.
		d.problem = problemCompletedUpload()
		if d.v >= 8 && r.ContentLength != 0 {
			d.problem = problemInconsistentLength()
		}
		h := w.Header()
		h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		setDraftComplete(h, d.v, true)
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "the upload is already complete"))
		return
	}
	if size >= 0 {
		n, ok, lerr := headerLength(r.Header, "Upload-Length")
		// At the upload's offset (else tusd's answer is the conflict), the
		// content is the rest of the file or a part of it: offset and
		// content length must add up to the upload's length, or less.
		end := offset + r.ContentLength
		inconsistent := lerr != nil || (ok && n != size) ||
			(offset == info.Offset && r.ContentLength >= 0 && (end > size || claimsEnd && end != size))
		if inconsistent {
			d.problem = problemInconsistentLength()
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, "the lengths of this append do not add up to the upload's length ("+strconv.FormatInt(size, 10)+" bytes)"))
			return
		}
		if offset <= size {
			upload.BodyOf(r).Bound(size - offset)
		}
	} else if rf := g.boundPatch(r, sess); rf != nil {
		// A deferred length (a tus creation) is bounded by the slot's size.
		g.writeRefusal(w, r, rf)
		return
	}
	out := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPatch,
		ID:     d.id,
		Header: map[string]string{"Upload-Offset": strconv.FormatInt(offset, 10)},
		Body:   r.Body,
		Length: r.ContentLength,
	})
	noteOutcome(ctx, out.Kind)
	h := w.Header()
	switch out.Kind {
	case upload.OK:
	case upload.Conflict:
		now := g.currentOffset(ctx, d.id, info.Offset)
		d.problem = problemMismatchingOffset(now, offset)
		h.Set("Upload-Offset", strconv.FormatInt(now, 10))
		setDraftComplete(h, d.v, false)
		g.writeRefusal(w, r, refuse(http.StatusConflict, "the upload continues at byte "+strconv.FormatInt(now, 10)))
		return
	case upload.TooLarge:
		d.problem = problemInconsistentLength()
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "the content goes past the upload's length"))
		return
	default:
		g.writeRefusal(w, r, outcomeRefusal(out))
		return
	}
	complete := size >= 0 && out.Offset == size
	h.Set("Upload-Offset", strconv.FormatInt(out.Offset, 10))
	setDraftComplete(h, d.v, complete)
	if claimsEnd && !complete {
		// A content of unknown length ended before the upload's length:
		// what arrived is kept.
		d.problem = problemInconsistentLength()
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Upload-Complete: ?1, but the content ended before the upload's length"))
		return
	}
	g.touchDraft(r, sess)
	if complete {
		// What the slot's PUT answers for a complete file.
		g.send(w, r, http.StatusCreated, "")
		return
	}
	g.send(w, r, http.StatusNoContent, "")
}

// draftCancel7 is cancellation: the upload and its session are removed. A
// complete file is removed only by retention, as on the tus door.
func (g *Gateway) draftCancel7(w http.ResponseWriter, r *http.Request, d *draftReq, sess auth.Session) {
	if sess.Complete {
		g.writeRefusal(w, r, refuse(http.StatusForbidden, "a complete upload cannot be deleted through its upload URL"))
		return
	}
	out := g.tus.Do(w, r, upload.Call{Method: http.MethodDelete, ID: d.id})
	noteOutcome(r.Context(), out.Kind)
	if !out.OK() {
		g.writeRefusal(w, r, outcomeRefusal(out))
		return
	}
	g.send(w, r, http.StatusNoContent, "")
	ctx := context.WithoutCancel(r.Context())
	if err := g.cfg.Sessions.Forget(ctx, sess.UploadID); err != nil {
		g.log.WarnContext(ctx, "forget session", "upload", logID(sess.UploadID), "error", err)
	}
}

// outcomeRefusal is the refusal for a failed outcome of tusd: a stalled body
// is the client's (408); an append cut by another request for the upload is
// answered 503 (the draft client resumes after a 5xx, gives up on a 4xx);
// locked becomes 503 in finish.
func outcomeRefusal(out upload.Outcome) *refusal {
	rf := &refusal{status: out.Status, reason: out.Reason}
	switch out.Kind {
	case upload.Timeout:
		rf.status = http.StatusRequestTimeout
	case upload.Superseded:
		rf.status = http.StatusServiceUnavailable
		rf = rf.with("Retry-After", "1")
	case upload.Locked, upload.Storage, upload.Shutdown:
		if out.Status < 500 && out.Status != http.StatusLocked {
			rf.status = http.StatusServiceUnavailable
		}
		if v := out.Header.Get("Retry-After"); v != "" {
			rf = rf.with("Retry-After", v)
		}
	}
	return rf
}

// currentOffset is the stored offset of an upload (fallback when it cannot
// be read).
func (g *Gateway) currentOffset(ctx context.Context, id string, fallback int64) int64 {
	if info, err := g.cfg.Storage.Info(context.WithoutCancel(ctx), id); err == nil {
		return info.Offset
	}
	return fallback
}

// touchDraft slides the session of an upload after an accepted request.
func (g *Gateway) touchDraft(r *http.Request, sess auth.Session) {
	ctx := context.WithoutCancel(r.Context())
	if _, err := g.touch(ctx, sess, clientAddr(r, g.cfg.TrustedProxies)); err != nil {
		g.log.WarnContext(ctx, "touch session", "upload", logID(sess.UploadID), "error", err)
	}
}

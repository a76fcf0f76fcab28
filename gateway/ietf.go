package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
)

// The IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-
// upload), in the interop versions tusd v2.10.1 speaks: 3 (draft -01), 4 (-02),
// 5 (-03) and 6 (-04, -05). A client that sends Upload-Draft-Interop-Version
// and the completeness field (Upload-Incomplete in version 3, Upload-Complete
// from 4) with its PUT to a slot URL gets a 104 (Upload Resumption Supported)
// with the upload URL as soon as the slot checks passed and the upload exists;
// after an interruption it asks the upload URL for the offset (HEAD) and
// appends the rest (PATCH). tusd implements the procedures; the gateway checks
// the slot first, states the slot's size as Upload-Limit, and answers where
// tusd's answers fall short of the draft's text (see docs/ietf.md).
// Versions 7 and 8, which tusd does not speak, are in ietf7.go.

// draftVersionField names the draft's interop version in requests and answers.
const draftVersionField = "Upload-Draft-Interop-Version"

// statusResumptionSupported is the draft's informational 104.
const statusResumptionSupported = 104

// draftVersion is the interop version a request speaks: 3 to 8, or 0 when it
// sends none or one the gateway does not speak (then no 104 is ever sent).
// Versions 3 to 6 are compared as tusd compares them, so both always agree;
// 7 and 8, which tusd does not speak, are answered by the gateway (ietf7.go).
func draftVersion(r *http.Request) int {
	switch r.Header.Get(draftVersionField) {
	case "3":
		return 3
	case "4":
		return 4
	case "5":
		return 5
	case "6":
		return 6
	case "7":
		return 7
	case "8":
		return 8
	}
	return 0
}

// completeField is the field that says whether a request's content ends the
// upload: Upload-Incomplete (the inverse) in version 3, Upload-Complete after.
func completeField(v int) string {
	if v == 3 {
		return "Upload-Incomplete"
	}
	return "Upload-Complete"
}

var errBadComplete = errors.New("invalid Upload-Complete or Upload-Incomplete header")

// draftComplete reads the completeness field of a version-v request: whether
// its content ends the upload, and whether the field is there at all.
func draftComplete(h http.Header, v int) (complete, present bool, err error) {
	vals := h.Values(completeField(v))
	if len(vals) == 0 {
		return false, false, nil
	}
	if len(vals) > 1 {
		return false, true, errBadComplete
	}
	switch strings.TrimSpace(vals[0]) {
	case "?1":
		complete = true
	case "?0":
	default:
		return false, true, errBadComplete
	}
	if v == 3 {
		complete = !complete
	}
	return complete, true, nil
}

// setDraftComplete states in an answer whether the upload is complete.
func setDraftComplete(h http.Header, v int, complete bool) {
	b := func(x bool) string {
		if x {
			return "?1"
		}
		return "?0"
	}
	if v == 3 {
		h.Set("Upload-Incomplete", b(!complete))
		return
	}
	h.Set("Upload-Complete", b(complete))
}

// headerLength parses a non-negative length field; ok is false when absent.
func headerLength(h http.Header, name string) (n int64, ok bool, err error) {
	v := h.Get(name)
	if v == "" {
		return 0, false, nil
	}
	n, err = parseNonNegative(v)
	if err != nil {
		return 0, true, errors.New("invalid " + name + " header")
	}
	return n, true, nil
}

// draftLimit is the Upload-Limit of an upload of size bytes (-1: unknown).
// An upload can never grow past its slot's size, so that is its max-size.
func (g *Gateway) draftLimit(size int64) string {
	if g.cfg.MaxSize > 0 && (size < 0 || size > g.cfg.MaxSize) {
		size = g.cfg.MaxSize
	}
	if size < 0 {
		return "min-size=0"
	}
	return "max-size=" + strconv.FormatInt(size, 10)
}

// withExpires adds the draft's lifetime limit (the seconds the upload resource
// still lives: expires in version 6, max-age from version 7) when the answer
// carries the session's Upload-Expires.
func (g *Gateway) withExpires(limit string, h http.Header, v int) string {
	if v < 6 {
		return limit
	}
	t, err := http.ParseTime(h.Get("Upload-Expires"))
	if err != nil {
		return limit
	}
	return g.withLifetime(limit, t, v)
}

// withLifetime adds the lifetime limit of a version-v answer for an upload
// resource that lives until deadline.
func (g *Gateway) withLifetime(limit string, deadline time.Time, v int) string {
	key := "expires"
	if v >= 7 {
		key = "max-age"
	}
	secs := int64(deadline.Sub(g.now()) / time.Second)
	return limit + ", " + key + "=" + strconv.FormatInt(max(secs, 0), 10)
}

// slotLimit is the Upload-Limit for a slot URL: the slot's size when the
// request's credentials reach the slot's existing upload or state the size
// themselves (a JWT's filesize), else the gateway's maximum size, else no
// limit. Its signature check is one like any other: a failure counts against
// the client's address (the answer would otherwise tell a forged signature
// from a genuine one without limit), and a limited address gets the refusal.
func (g *Gateway) slotLimit(r *http.Request, sp slotPath) (string, *refusal) {
	if !hasSignature(r) {
		return g.draftLimit(-1), nil
	}
	ctx := r.Context()
	var req auth.SlotRequest
	size := int64(-1)
	if id, err := g.slotUploadID(ctx, sp.Path); err == nil {
		if info, err := g.cfg.Storage.Info(ctx, id); err == nil && !info.SizeIsDeferred {
			req, size = g.slotRequestForUpload(r, sp, info), info.Size
		}
	}
	if size < 0 {
		if q := r.URL.Query(); !q.Has("v3") && (q.Has("v") || q.Has("v2") || q.Has("token")) {
			// These sign the size, which the request does not state: there
			// is nothing to check.
			return g.draftLimit(-1), nil
		}
		req = g.slotRequest(r, sp, -1)
	}
	slot, err := g.checkSlot(r, req)
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		return "", rf
	case err != nil && !errors.Is(err, auth.ErrSlotExpired):
		return g.draftLimit(-1), nil
	case size < 0:
		size = slot.Size
	}
	return g.draftLimit(size), nil
}

// draftKind is what a draft request at the gateway is.
type draftKind int

const (
	draftPut     draftKind = iota + 1 // upload creation: PUT at a slot URL
	draftPost                         // upload creation: POST at a slot URL (the tus door's endpoint)
	draftOptions                      // OPTIONS at a slot URL
	draftUpload                       // offset retrieval, append, cancellation at an upload URL
)

// draftReq is what the gateway knows about a draft request while it runs. It
// is not a ResponseWriter: the doors hand every answer they send to finish,
// and every informational answer to inform, which complete them as the
// draft's version asks (Upload-Limit, the completeness field, Upload-Offset
// on a conflict) and choose the draft's status codes. Every 423 becomes 503:
// a draft client resumes after a 5xx but gives up after a 4xx, and 423 (busy,
// store unreachable) is tus's "retry".
type draftReq struct {
	g    *Gateway
	r    *http.Request
	v    int
	kind draftKind
	// id is the upload (draftUpload; draftPut once known) and size its size
	// (draftPut; -1 while unknown).
	id   string
	size int64
	// location is the upload URL the client was given (draftPut).
	location string
	// limit is the Upload-Limit of an OPTIONS answer (draftOptions).
	limit    string
	informed bool // a 104 went out
	// problem is the problem details (RFC 9457) of a refusal (version 7 on).
	problem *problem
}

type draftKey struct{}

// draftOf returns the draft state of a request, nil for a request that does
// not speak the draft.
func draftOf(r *http.Request) *draftReq {
	d, _ := r.Context().Value(draftKey{}).(*draftReq)
	return d
}

// withDraft returns r carrying the draft state d.
func withDraft(r *http.Request, d *draftReq) *http.Request {
	r = r.WithContext(context.WithValue(r.Context(), draftKey{}, d))
	d.r = r
	return r
}

// informOnce completes a 104 and reports whether it may go out: only the
// first 104 of a creation names the upload.
func (d *draftReq) informOnce(h http.Header) bool {
	if d.informed {
		return false
	}
	d.informed = true
	d.inform(h)
	return true
}

// finish completes a final answer: the status to send, and a body that
// replaces the answer's own ("" keeps it).
func (d *draftReq) finish(h http.Header, code int) (int, string) {
	if code == http.StatusLocked {
		code = http.StatusServiceUnavailable
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", strconv.Itoa(retryAfter))
		}
	}
	if d.v >= 7 {
		// The answer is the draft's, not tus's.
		h.Del("Tus-Resumable")
		h.Set(draftVersionField, strconv.Itoa(d.v))
	}
	body := ""
	switch d.kind {
	case draftPut:
		code = d.finalPut(h, code)
	case draftPost:
		code = d.finalPost(h, code)
	case draftOptions:
		if success(code) {
			h.Set("Upload-Limit", d.limit)
		}
	case draftUpload:
		if d.v >= 7 {
			code = d.finalUpload7(h, code)
		} else {
			code, body = d.finalUpload(h, code)
		}
	}
	if d.problem != nil && code >= 400 {
		// Versions 7 and 8: the problem details (RFC 9457) of a refusal.
		h.Set("Content-Type", problemJSON)
		return code, d.problem.body()
	}
	return code, body
}

// inform completes the 104 of a creation.
func (d *draftReq) inform(h http.Header) {
	h.Set(draftVersionField, strconv.Itoa(d.v))
	switch d.kind {
	case draftPut:
		if d.location == "" {
			d.location = h.Get("Location")
		}
		h.Set("Upload-Limit", d.g.draftLimit(d.size))
	case draftPost:
		if n, ok, err := headerLength(d.r.Header, "Upload-Length"); ok && err == nil {
			h.Set("Upload-Limit", d.g.draftLimit(n))
		}
	}
}

// finalPut completes the answer to a PUT creation.
func (d *draftReq) finalPut(h http.Header, code int) int {
	if code == http.StatusRequestEntityTooLarge && h.Get("Upload-Limit") == "" {
		// The slot was checked once already; its size is known when the
		// request stated it.
		h.Set("Upload-Limit", d.g.draftLimit(d.size))
	}
	if d.location == "" {
		return code
	}
	// The client knows the upload: every answer tells where it stands.
	if success(code) {
		h.Set("Location", d.location)
		h.Set("Upload-Limit", d.g.withExpires(d.g.draftLimit(d.size), h, d.v))
		if h.Get(completeField(d.v)) == "" {
			// The PUT door answers 2xx only for a complete file.
			setDraftComplete(h, d.v, true)
		}
		return code
	}
	if code >= 400 && code != http.StatusNotFound && code != http.StatusGone {
		if h.Get("Upload-Offset") == "" {
			ctx := context.WithoutCancel(d.r.Context())
			if info, err := d.g.cfg.Storage.Info(ctx, d.id); err == nil {
				h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
			}
		}
		if h.Get("Upload-Offset") != "" {
			off, _ := strconv.ParseInt(h.Get("Upload-Offset"), 10, 64)
			setDraftComplete(h, d.v, d.size >= 0 && off == d.size)
		}
	}
	return code
}

// finalPost completes the answer to a POST creation at a slot URL.
func (d *draftReq) finalPost(h http.Header, code int) int {
	if !success(code) {
		return code
	}
	n, ok, err := headerLength(d.r.Header, "Upload-Length")
	if !ok || err != nil {
		return code
	}
	h.Set("Upload-Limit", d.g.withExpires(d.g.draftLimit(n), h, d.v))
	if off, err := strconv.ParseInt(h.Get("Upload-Offset"), 10, 64); err == nil {
		setDraftComplete(h, d.v, off == n)
	}
	return code
}

// finalUpload completes tusd's answer to offset retrieval, append and
// cancellation where it falls short of the draft.
func (d *draftReq) finalUpload(h http.Header, code int) (int, string) {
	if code == http.StatusGone {
		// The draft's word for an upload that is no longer active.
		return http.StatusNotFound, ""
	}
	switch d.r.Method {
	case http.MethodHead:
		if n, ok, err := headerLength(h, "Upload-Length"); success(code) && ok && err == nil {
			h.Set("Upload-Limit", d.g.withExpires(d.g.draftLimit(n), h, d.v))
		}
	case http.MethodPatch:
		return d.finalAppend(h, code)
	}
	return code, ""
}

// finalAppend completes tusd's answer to an append (PATCH). tusd answers 204
// without the completeness field, 409 without the offset, 413 where the draft
// asks for 400, and 204 to a PATCH of a complete upload; all of it is known
// only after tusd ran (and authorised by the session before it did).
func (d *draftReq) finalAppend(h http.Header, code int) (int, string) {
	if !success(code) && code != http.StatusConflict && code != http.StatusRequestEntityTooLarge {
		return code, ""
	}
	info, err := d.g.cfg.Storage.Info(context.WithoutCancel(d.r.Context()), d.id)
	if err != nil {
		return code, ""
	}
	complete := !info.SizeIsDeferred && info.Offset == info.Size
	setDraftComplete(h, d.v, complete)
	if !success(code) {
		h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		if code == http.StatusRequestEntityTooLarge && d.v >= 4 {
			// Drafts -02 to -05: a length that differs from the recorded one is 400.
			return http.StatusBadRequest, ""
		}
		return code, ""
	}
	reqOff, _ := strconv.ParseInt(d.r.Header.Get("Upload-Offset"), 10, 64)
	claimsEnd, present, _ := draftComplete(d.r.Header, d.v)
	switch {
	case d.v >= 6 && complete && reqOff == info.Size:
		// Drafts -04 and -05: a complete upload is not modified, and the
		// request is refused (tusd answers 204).
		return http.StatusBadRequest, "the upload is already complete\n"
	case d.v >= 4 && present && claimsEnd && !complete:
		// The request said it ends the upload, but the upload's recorded
		// length is larger: what arrived is kept, the request is refused.
		h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		return http.StatusBadRequest, "Upload-Complete: ?1, but the upload's length is " + strconv.FormatInt(info.Size, 10) + " bytes\n"
	}
	// The draft asks for 201 when an incomplete upload was appended to, and
	// recommends it on completion.
	return http.StatusCreated, ""
}

// draftAtSlot prepares a draft request to a slot URL: a PUT or POST creation,
// or OPTIONS. It returns the request carrying its draft state, or false when
// it answered. A PUT without the completeness field is an ordinary PUT and
// never sees a 1xx.
func (g *Gateway) draftAtSlot(w http.ResponseWriter, r *http.Request, sp slotPath) (*http.Request, bool) {
	v := draftVersion(r)
	if v == 0 {
		return r, true
	}
	d := &draftReq{g: g, v: v, size: -1}
	complete, present, cerr := draftComplete(r.Header, v)
	switch r.Method {
	case http.MethodPut:
		if !present {
			return r, true
		}
		if cerr != nil {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, cerr.Error()))
			return nil, false
		}
		if r.Header.Get("Content-Range") != "" {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, "a resumable upload creation carries no Content-Range; append with PATCH to the upload URL"))
			return nil, false
		}
		n, ok, err := headerLength(r.Header, "Upload-Length")
		switch {
		case err != nil:
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, err.Error()))
			return nil, false
		case ok && complete && r.ContentLength >= 0 && r.ContentLength != n:
			if v >= 7 {
				r = withDraft(r, &draftReq{g: g, v: v, kind: draftPut, size: -1, problem: problemInconsistentLength()})
			}
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Upload-Length differs from Content-Length"))
			return nil, false
		case !ok && !complete:
			g.writeRefusal(w, r, refuse(http.StatusLengthRequired, "an incomplete upload creation needs Upload-Length"))
			return nil, false
		}
		d.kind = draftPut
	case http.MethodPost:
		if cerr != nil {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, cerr.Error()))
			return nil, false
		}
		if r.Header.Get("Upload-Concat") != "" {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, "concatenation is tus 1.0 only; send Tus-Resumable instead of Upload-Draft-Interop-Version"))
			return nil, false
		}
		if complete && r.ContentLength >= 0 && r.Header.Get("Upload-Length") == "" && r.Header.Get("Upload-Defer-Length") == "" {
			// The draft states the length of an upload sent in one request by
			// Content-Length; the tus door checks the slot by Upload-Length.
			r.Header.Set("Upload-Length", strconv.FormatInt(r.ContentLength, 10))
		}
		d.kind = draftPost
	case http.MethodOptions:
		limit, rf := g.slotLimit(r, sp)
		if rf != nil {
			g.writeRefusal(w, r, rf)
			return nil, false
		}
		d.kind, d.limit = draftOptions, limit
		if v >= 7 {
			// tusd does not speak versions 7 and 8: the gateway answers.
			r = withDraft(r, d)
			w.Header().Set("Allow", "PUT, POST, HEAD, GET, OPTIONS")
			g.send(w, r, http.StatusOK, "")
			return nil, false
		}
	default:
		return r, true
	}
	return withDraft(r, d), true
}

// draftAtUpload prepares a draft request to an upload URL (offset retrieval,
// append, cancellation). It returns the request carrying its draft state, or
// false when it answered (a request the draft says to refuse for its fields
// alone).
func (g *Gateway) draftAtUpload(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	v := draftVersion(r)
	if v == 0 {
		return r, true
	}
	if v >= 7 {
		// tusd does not speak versions 7 and 8: the gateway answers them
		// from the core's outcome of plain tus requests.
		g.draftAtUpload7(w, r, v)
		return nil, false
	}
	id, _ := strings.CutPrefix(r.URL.Path, g.cfg.TusBase)
	switch r.Method {
	case http.MethodHead, http.MethodDelete:
		fields := []string{"Upload-Offset", completeField(v)}
		if r.Method == http.MethodHead && v >= 6 {
			fields = append(fields, "Upload-Length")
		}
		for _, f := range fields {
			if len(r.Header.Values(f)) > 0 {
				g.writeRefusal(w, r, refuse(http.StatusBadRequest, r.Method+" carries no "+f))
				return nil, false
			}
		}
	case http.MethodPatch:
		if _, _, err := draftComplete(r.Header, v); err != nil {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, err.Error()))
			return nil, false
		}
	case http.MethodOptions:
	default:
		return r, true
	}
	return withDraft(r, &draftReq{g: g, v: v, kind: draftUpload, id: id, size: -1}), true
}

// draftPutOf returns the draft state of a draft PUT creation, nil otherwise.
func draftPutOf(r *http.Request) *draftReq {
	if d := draftOf(r); d != nil && d.kind == draftPut {
		return d
	}
	return nil
}

// draftClaimedSize is the size a draft PUT creation claims for the whole file:
// Upload-Length when it states one (the content may be only the first part).
func draftClaimedSize(r *http.Request, claimed int64) int64 {
	if draftPutOf(r) == nil {
		return claimed
	}
	if n, ok, err := headerLength(r.Header, "Upload-Length"); ok && err == nil {
		return n
	}
	return claimed
}

// draftAnnounce tells a draft client the upload URL of the slot's existing
// upload before the PUT continues or confirms it, so that an interrupted retry
// can be resumed too.
func (g *Gateway) draftAnnounce(w http.ResponseWriter, r *http.Request, id string, info handler.FileInfo) {
	d := draftPutOf(r)
	if d == nil || info.SizeIsDeferred {
		return
	}
	d.id, d.size = id, info.Size
	d.location = g.uploadURL(r, id)
	if info.Offset == info.Size || !d.informOnce(w.Header()) {
		return
	}
	h := w.Header()
	h.Set("Location", d.location)
	w.WriteHeader(statusResumptionSupported)
	for _, k := range []string{"Location", draftVersionField, "Upload-Limit"} {
		h.Del(k)
	}
}

// putCreateDraft is the draft's upload creation by PUT, after the slot checks
// of putAtSlot: tusd's creation in the draft's form (it sends the 104 with
// the upload URL once the upload exists), then 201.
func (g *Gateway) putCreateDraft(w http.ResponseWriter, r *http.Request, d *draftReq, slot auth.Slot, id, addr string, body io.Reader, size int64, meta map[string]string) {
	if d.v >= 7 {
		g.putCreateDraft7(w, r, d, slot, id, addr, body, size, meta)
		return
	}
	d.id, d.size = id, size
	cr := &creation{slot: slot, uploadID: id, kind: auth.KindWhole, addr: addr}
	out := g.tus.Do(w, r, upload.Call{
		Method:  http.MethodPost,
		Forward: true,
		// tusd takes the file's type and name from Content-Type and
		// Content-Disposition; the slot's are passed as metadata instead,
		// which the pre-create hook stores for a draft creation.
		Drop: []string{"Content-Type", "Content-Disposition", "Content-Range", "Tus-Resumable", "Upload-Concat", "Upload-Defer-Length", "Upload-Offset"},
		Header: map[string]string{
			"Upload-Length":   strconv.FormatInt(size, 10),
			"Upload-Metadata": handler.SerializeMetadataHeader(meta),
		},
		// The content is the whole file, or its first part (Upload-Length is
		// then the whole); a PUT that restarts the upload sends the whole file.
		Body:   body,
		Length: r.ContentLength,
		Ctx:    context.WithValue(r.Context(), creationKey{}, cr),
		Inform: d.informOnce,
	})
	if !out.OK() {
		g.answerPut(w, r, out, size, nil)
		return
	}
	h := w.Header()
	if d.location == "" {
		d.location = g.uploadURL(r, id)
	}
	h.Set("Upload-Offset", strconv.FormatInt(out.Offset, 10))
	if v := out.Header.Get("Upload-Expires"); v != "" {
		h.Set("Upload-Expires", v)
	}
	setDraftComplete(h, d.v, out.Offset == size)
	g.send(w, r, http.StatusCreated, "")
}

// draftMetadata is the metadata a draft creation stores: tusd derives it from
// Content-Type and Content-Disposition, which need not be what the slot was
// checked against; the gateway's creations state it as Upload-Metadata, the
// tus door's field, which the slot check read. ok is false for a tus creation.
func draftMetadata(h http.Header) (map[string]string, bool) {
	switch h.Get(draftVersionField) {
	case "3", "4", "5", "6":
		return handler.ParseMetadataHeader(h.Get("Upload-Metadata")), true
	}
	return nil, false
}

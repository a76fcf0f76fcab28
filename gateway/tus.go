package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
	"github.com/uploadgate/uploadgate/storage"
)

// creation is what the gateway decided about a tus creation before tusd runs
// it; the pre-create hook reads it back from the request context.
type creation struct {
	slot     auth.Slot
	uploadID string
	kind     auth.Kind
	addr     string
}

type creationKey struct{}

// serveUploadBase routes requests under the upload base (the slot URLs).
func (g *Gateway) serveUploadBase(w http.ResponseWriter, r *http.Request) {
	sp, err := parseSlotPath(r.URL, g.cfg.UploadBase)
	if err != nil {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "malformed upload path"))
		return
	}
	// The resumable-upload draft (ietf.go): creations, OPTIONS.
	r, ok := g.draftAtSlot(w, r, sp)
	if !ok {
		return
	}
	switch {
	case r.Method == http.MethodPut:
		g.putAtSlot(w, r, sp)
	case r.Method == http.MethodPost:
		g.createAtSlot(w, r, sp)
	case r.Method == http.MethodPatch:
		g.patchAtSlot(w, r, sp)
	case r.Method == http.MethodHead && hasSignature(r):
		g.headAtSlot(w, r, sp)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		g.serveDownload(w, r, sp)
	case r.Method == http.MethodOptions:
		g.serveTusd(w, r, "", nil)
	default:
		w.Header().Set("Allow", "PUT, POST, PATCH, HEAD, GET, OPTIONS")
		g.writeRefusal(w, r, refuse(http.StatusMethodNotAllowed, "method not allowed on a slot URL"))
	}
}

// hasSignature reports whether a request carries slot credentials (a HEAD
// with them asks for the resume state, without them for the file).
func hasSignature(r *http.Request) bool {
	q := r.URL.Query()
	for _, k := range []string{"v", "v2", "v3", "token"} {
		if q.Has(k) {
			return true
		}
	}
	return r.Header.Get("Authorization") != ""
}

// metadataType is the content type a tus creation claims for its slot: the
// Upload-Metadata key filetype when present (verbatim, even empty), else nil.
func metadataType(meta map[string]string) *string {
	if v, ok := meta["filetype"]; ok {
		return &v
	}
	return nil
}

// errSlotMoved answers a request at a slot URL whose upload was re-bound to
// another slot: only the new slot's URLs lead to the upload from then on.
var errSlotMoved = refuse(http.StatusGone, "this slot's upload continues under another slot")

// slotUploadID is the upload a slot writes: the one opened with it, or the
// one derived from its path when it has none yet. A slot whose upload was
// re-bound to another slot leads nowhere (errSlotMoved): its old PUT and GET
// URLs must never reach an upload that is now served under another name.
func (g *Gateway) slotUploadID(ctx context.Context, slotPath string) (string, error) {
	id, moved, err := g.slotMapping(ctx, slotPath)
	if err != nil {
		return "", err
	}
	if moved {
		return "", errSlotMoved
	}
	return noteUpload(ctx, id), nil
}

// slotMapping is the upload a slot path is mapped to (or derived from it),
// and whether that upload has moved on to another slot.
func (g *Gateway) slotMapping(ctx context.Context, slotPath string) (id string, moved bool, err error) {
	s, err := g.cfg.Sessions.AuthorizeSlot(ctx, slotPath)
	switch {
	case err == nil, errors.Is(err, auth.ErrSessionExpired):
		return s.UploadID, s.SlotKey != auth.SlotKey(slotPath), nil
	case errors.Is(err, auth.ErrSessionNotFound):
		return auth.DeriveUploadID(g.cfg.IDKey, slotPath), false, nil
	default:
		return "", false, err
	}
}

// createAtSlot is the tus creation: POST to a slot URL.
func (g *Gateway) createAtSlot(w http.ResponseWriter, r *http.Request, sp slotPath) {
	ctx := r.Context()
	if draftOf(r) == nil && r.Header.Get("Tus-Resumable") != tusVersion {
		// As tusd answers it, also for a creation that the gateway answers
		// itself (the slot's upload exists).
		g.writeRefusal(w, r, refuse(http.StatusPreconditionFailed, "missing, invalid or unsupported Tus-Resumable header").with("Tus-Version", tusVersion))
		return
	}
	meta := handler.ParseMetadataHeader(r.Header.Get("Upload-Metadata"))
	concat := r.Header.Get("Upload-Concat")
	kind := auth.KindWhole
	var size int64 = -1
	switch {
	case strings.HasPrefix(concat, "final;"):
		total, rf := g.checkPartials(ctx, concat, sp)
		if rf != nil {
			g.writeRefusal(w, r, rf)
			return
		}
		size = total
	case concat == "partial":
		kind = auth.KindPartial
		// A partial's own length is not the slot's: the slot's size comes
		// from the metadata key filesize.
		if v, ok := meta["filesize"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				g.writeRefusal(w, r, refuse(http.StatusBadRequest, "invalid filesize metadata"))
				return
			}
			size = n
		}
	case concat != "":
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "invalid Upload-Concat header"))
		return
	case r.Header.Get("Upload-Defer-Length") == "":
		n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
		if err != nil || n < 0 {
			g.writeRefusal(w, r, refuse(http.StatusBadRequest, "missing or invalid Upload-Length header"))
			return
		}
		size = n
	}

	req := g.slotRequest(r, sp, size)
	req.ContentType = metadataType(meta)
	slot, err := g.checkSlot(r, req)
	expired := errors.Is(err, auth.ErrSlotExpired)
	if err != nil && !expired {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	addr := clientAddr(r, g.cfg.TrustedProxies)

	if from := r.Header.Get(resumeFromHeader); from != "" {
		g.rebindAtCreation(w, r, sp, from, slot, expired, size, addr)
		return
	}

	if kind == auth.KindPartial {
		if expired {
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
		g.createPartial(w, r, sp, slot, addr)
		return
	}
	// A creation may carry the upload's first bytes, never more than the
	// upload's length; a deferred length is bounded by the slot's size.
	if size >= 0 {
		upload.BodyOf(r).Bound(size)
	} else if slot.Size >= 0 {
		upload.BodyOf(r).Bound(slot.Size)
	}

	st, lerr := g.resolveSlot(ctx, sp.Path)
	if lerr != nil {
		g.writeRefusal(w, r, refusalFor(lerr))
		return
	}
	// The session ended but the slot itself is still valid: it renews the
	// session of its own upload.
	if rf := g.renewOwn(ctx, &st, slot, expired, addr); rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	if rf := g.admitExpired(doorTus, err, st.serr); rf != nil {
		// An expired slot only reaches an upload that a live session holds.
		g.writeRefusal(w, r, rf)
		return
	}
	if errors.Is(st.serr, auth.ErrSessionNotFound) && st.exists {
		// The upload outlived its session record: the valid slot opens it again.
		if err := g.reopen(ctx, &st, slot, addr); err != nil {
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
	}
	switch {
	case st.serr == nil && st.exists:
		// The slot's upload exists: converge on it.
		if size >= 0 && !st.info.SizeIsDeferred && st.info.Size != size {
			g.writeRefusal(w, r, refuse(http.StatusConflict, "the upload of this slot has another length"))
			return
		}
		g.answerExisting(w, r, st.sess, st.info, addr)
		return
	case st.serr == nil, errors.Is(st.serr, auth.ErrSessionNotFound):
		// Not stored yet (or being created): tusd creates it; a creation that
		// lost the race gets 409 and its retry converges.
	default:
		g.writeRefusal(w, r, refusalFor(st.serr))
		return
	}
	id := st.id
	g.passCreation(w, r, &creation{slot: slot, uploadID: id, kind: kind, addr: addr})
}

// rebindAtCreation re-binds the upload named by Upload-Resume-From to the
// fresh slot of this creation and answers with the same upload URL as before
// and its current offset, so the client keeps PATCHing where it was.
func (g *Gateway) rebindAtCreation(w http.ResponseWriter, r *http.Request, sp slotPath, from string, slot auth.Slot, expired bool, size int64, addr string) {
	sess, info, rf := g.rebindFrom(r, sp, from, slot, expired, size, addr)
	if rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	g.answerExisting(w, r, sess, info, addr)
}

// passCreation hands a checked creation to tusd.
func (g *Gateway) passCreation(w http.ResponseWriter, r *http.Request, cr *creation) {
	if d := draftOf(r); d != nil && d.v >= 7 {
		// Draft versions tusd does not speak (ietf7.go).
		g.postCreateDraft7(w, r, d, cr)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), creationKey{}, cr))
	g.serveTusd(w, r, "", nil)
}

// maxPartials is how many partial uploads (tus concatenation) one slot may
// have at a time. tus-js-client's parallelUploads uses a handful.
const maxPartials = 16

// partialID is the ID of the i-th partial upload of a slot. Partial uploads
// have IDs of their own (never the slot's file), derived like the whole
// upload's, so that a slot can have at most maxPartials of them.
func (g *Gateway) partialID(slotPath string, i int) string {
	// A slot path never contains a NUL byte (parseSlotPath refuses it).
	return auth.DeriveUploadID(g.cfg.IDKey, slotPath+"\x00partial\x00"+strconv.Itoa(i))
}

// createPartial creates a partial upload of a slot. Every byte stored under a
// slot is bounded by its signed size: the lengths of the slot's partial
// uploads add up to at most that size (or the gateway's maximum size for a
// slot that signs none), and a slot has at most maxPartials of them. The
// check and the creation run under a lock of the slot's partials, so that
// concurrent creations (on any instance) cannot both take the last room.
func (g *Gateway) createPartial(w http.ResponseWriter, r *http.Request, sp slotPath, slot auth.Slot, addr string) {
	ctx := r.Context()
	if r.Header.Get("Upload-Defer-Length") != "" {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "a partial upload states its length in Upload-Length"))
		return
	}
	n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || n < 0 {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "missing or invalid Upload-Length header"))
		return
	}
	budget := slot.Size
	if budget < 0 && g.cfg.MaxSize > 0 {
		budget = g.cfg.MaxSize
	}
	if budget >= 0 && n > budget {
		g.writeRefusal(w, r, refuse(http.StatusRequestEntityTooLarge, "a partial upload larger than the slot's size"))
		return
	}
	// No partial joins a slot whose file is complete.
	if own, moved, err := g.slotMapping(ctx, sp.Path); err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	} else if moved {
		g.writeRefusal(w, r, errSlotMoved)
		return
	} else if info, err := g.cfg.Storage.Info(ctx, own); err == nil && !info.SizeIsDeferred && info.Offset == info.Size {
		g.writeRefusal(w, r, refuse(http.StatusConflict, "the slot's file is complete"))
		return
	}
	lctx, cancel := context.WithTimeout(ctx, g.cfg.LockTimeout)
	defer cancel()
	lock, err := g.cfg.Storage.Lock(lctx, g.partialID(sp.Path, -1), func() {})
	if err != nil {
		g.writeRefusal(w, r, refuse(http.StatusLocked, "the slot's partial uploads are being created; retry").with("Retry-After", "1"))
		return
	}
	defer func() { _ = lock.Unlock() }()
	free, used := "", int64(0)
	for i := range maxPartials {
		id := g.partialID(sp.Path, i)
		s, err := g.cfg.Sessions.Authorize(ctx, id)
		switch {
		case errors.Is(err, auth.ErrSessionNotFound):
			if free == "" {
				free = id
			}
		case err == nil, errors.Is(err, auth.ErrSessionExpired):
			used += max(s.Size, 0)
		default:
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
	}
	if free == "" {
		g.writeRefusal(w, r, refuse(http.StatusForbidden, "the slot has "+strconv.Itoa(maxPartials)+" partial uploads already"))
		return
	}
	if budget >= 0 && used+n > budget {
		g.writeRefusal(w, r, refuse(http.StatusRequestEntityTooLarge, "the slot's partial uploads would be larger than the slot's size"))
		return
	}
	upload.BodyOf(r).Bound(n)
	g.passCreation(w, r, &creation{slot: slot, uploadID: free, kind: auth.KindPartial, addr: addr})
}

// checkPartials authorises the partial uploads named by a final concatenation:
// each must be a valid ID of a live partial upload of the same slot. It
// returns their total size. Each URL is read as tusd reads it (the ID is what
// follows the first occurrence of tusd's base path), and only a URL whose ID
// is then a valid upload ID passes, so that the gateway checks exactly the
// uploads that tusd will concatenate.
func (g *Gateway) checkPartials(ctx context.Context, concat string, sp slotPath) (int64, *refusal) {
	slotKey := auth.SlotKey(sp.Path)
	var total int64
	n := 0
	for _, u := range strings.Split(strings.TrimPrefix(concat, "final;"), " ") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		_, rest, ok := strings.Cut(u, g.tusLocation)
		if !ok {
			return 0, refuse(http.StatusBadRequest, "invalid Upload-Concat header")
		}
		id := strings.Trim(rest, "/")
		if !auth.ValidUploadID(id) || id != rest {
			return 0, refuse(http.StatusBadRequest, "invalid upload in Upload-Concat header")
		}
		sess, err := g.cfg.Sessions.Authorize(ctx, id)
		if err != nil {
			if errors.Is(err, auth.ErrSessionNotFound) || errors.Is(err, auth.ErrSessionExpired) {
				return 0, refuse(http.StatusForbidden, "a partial upload is not part of this slot")
			}
			return 0, refusalFor(err)
		}
		if sess.Kind != auth.KindPartial || sess.SlotKey != slotKey {
			return 0, refuse(http.StatusForbidden, "a partial upload is not part of this slot")
		}
		info, err := g.cfg.Storage.Info(ctx, id)
		if err != nil {
			return 0, refusalFor(err)
		}
		if info.SizeIsDeferred || info.Offset != info.Size {
			return 0, refuse(http.StatusBadRequest, "a partial upload is not finished")
		}
		total += info.Size
		n++
	}
	if n == 0 || n > maxPartials {
		return 0, refuse(http.StatusBadRequest, "invalid Upload-Concat header")
	}
	return total, nil
}

// answerExisting answers a repeated creation for a slot whose upload exists:
// the same upload URL and its current offset, without reading the body.
func (g *Gateway) answerExisting(w http.ResponseWriter, r *http.Request, sess auth.Session, info handler.FileInfo, addr string) {
	sess, err := g.touch(context.WithoutCancel(r.Context()), sess, addr)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	h := w.Header()
	h.Set("Tus-Resumable", tusVersion)
	h.Set("Location", g.uploadURL(r, info.ID))
	h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
	h.Set("Upload-Expires", httpDate(sess.Deadline()))
	h.Set("Cache-Control", "no-store")
	g.send(w, r, http.StatusCreated, "")
}

// uploadURL is the tus URL of an upload, as tusd builds it for Location.
func (g *Gateway) uploadURL(r *http.Request, id string) string {
	if strings.Contains(g.tusLocation, "://") {
		return g.tusLocation + id
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	return proto + "://" + r.Host + g.tusLocation + id
}

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// preCreate is tusd's pre-create hook: it opens the upload session for the
// creation the gateway checked, and chooses the upload ID.
func (g *Gateway) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	defer g.withGrace(&ev)()
	cr, ok := ev.Context.Value(creationKey{}).(*creation)
	if !ok {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_SLOT_REQUIRED", "uploads are created at a slot URL", http.StatusForbidden)
	}
	slot := cr.slot
	noteUpload(ev.Context, cr.uploadID)
	if !ev.Upload.SizeIsDeferred {
		if cr.kind == auth.KindWhole && slot.Size >= 0 && ev.Upload.Size != slot.Size {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_SIZE_MISMATCH", "the upload's length differs from the slot's size", http.StatusForbidden)
		}
		slot.Size = ev.Upload.Size
	}
	// The metadata the upload is stored with: the client's (a draft
	// creation's from its headers) and the gateway's keys, which a hook sees.
	clientMeta := ev.Upload.MetaData
	if meta, ok := draftMetadata(ev.HTTPRequest.Header); ok {
		clientMeta = meta
	}
	meta := g.gatewayMetadata(ev.Context, clientMeta, cr)
	// The pre-create hook runs after every check of the gateway, and before
	// anything is stored: a refusal leaves neither a session nor a file.
	ev.Upload.ID = cr.uploadID
	hookResp, meta, err := g.preCreateHook(ev, meta)
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, err
	}
	sess, created, err := g.cfg.Sessions.Open(ev.Context, slot, cr.uploadID, cr.kind, cr.addr)
	if created {
		g.metrics.sessionsOpened.Inc()
	}
	if err != nil {
		g.log.ErrorContext(ev.Context, "open session", "error", err)
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_SESSION_STORE", "session store unavailable; retry later", http.StatusServiceUnavailable)
	}
	if sess.UploadID != cr.uploadID {
		// The slot was re-bound to another upload meanwhile: the client's
		// retry finds it.
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, storage.ErrUploadExists
	}
	resp := hookResp.MergeWith(handler.HTTPResponse{Header: handler.HTTPHeader{"Upload-Expires": httpDate(sess.Deadline())}})
	return resp, handler.FileInfoChanges{ID: cr.uploadID, MetaData: meta}, nil
}

// preFinish marks the session of a completed upload complete before the
// response leaves. A failure is logged: the bytes are complete either way.
func (g *Gateway) preFinish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	defer g.withGrace(&ev)()
	// A file that the pre-finish hook refuses is removed, never complete.
	resp, err := g.preFinishHook(ev)
	if err != nil {
		return resp, err
	}
	g.countCompleted(ev.Context, ev.Upload)
	if _, err := g.cfg.Sessions.Complete(ev.Context, ev.Upload.ID); err != nil && !errors.Is(err, auth.ErrSessionNotFound) {
		g.log.WarnContext(ev.Context, "mark session complete", "upload", logID(ev.Upload.ID), "error", err)
	}
	return resp, nil
}

// serveTusBase routes requests for tus upload URLs. Every request that
// reaches tusd has been authorised by the upload's session: tusd has no hook
// for HEAD, PATCH or DELETE, and any request that takes an upload's lock cuts
// the PATCH that is writing it.
func (g *Gateway) serveTusBase(w http.ResponseWriter, r *http.Request) {
	// The resumable-upload draft (ietf.go): offset retrieval, append, cancellation.
	r, ok := g.draftAtUpload(w, r)
	if !ok {
		return
	}
	id, _ := strings.CutPrefix(r.URL.Path, g.cfg.TusBase)
	switch r.Method {
	case http.MethodOptions:
		g.serveTusd(w, r, "", nil)
		return
	case http.MethodPost:
		if id == "" {
			g.writeRefusal(w, r, refuse(http.StatusForbidden, "create uploads at a slot URL"))
			return
		}
	case http.MethodHead, http.MethodPatch, http.MethodDelete:
		sess, rf := g.uploadSession(r, id)
		if rf != nil {
			if r.Method == http.MethodHead && rf.status == http.StatusServiceUnavailable {
				// tus-js-client restarts from byte 0 after a 5xx on HEAD but
				// retries a 423: a store outage must not cost the upload.
				rf = refuse(http.StatusLocked, "session store unavailable; retry later").with("Retry-After", strconv.Itoa(retryAfter))
			}
			g.writeRefusal(w, r, rf)
			return
		}
		if r.Method == http.MethodDelete && sess.Complete {
			g.writeRefusal(w, r, refuse(http.StatusForbidden, "a complete upload cannot be deleted through its upload URL"))
			return
		}
		g.serveTusd(w, r, id, &sess)
		return
	}
	w.Header().Set("Allow", "HEAD, PATCH, DELETE, OPTIONS")
	g.writeRefusal(w, r, refuse(http.StatusMethodNotAllowed, "method not allowed on an upload URL"))
}

// serveTusd passes an authorised request for upload id ("" for creations and
// OPTIONS) to tusd, answers the client with tusd's answer in the door's
// terms, and keeps the session in step with the outcome.
func (g *Gateway) serveTusd(w http.ResponseWriter, r *http.Request, id string, sess *auth.Session) {
	if r.Method == http.MethodPatch && sess != nil {
		if rf := g.boundPatch(r, *sess); rf != nil {
			g.writeRefusal(w, r, rf)
			return
		}
	}
	call := upload.Call{Method: r.Method, ID: id, Forward: true}
	if d := draftOf(r); d != nil {
		call.Inform = d.informOnce
	}
	out := g.tus.Do(w, r, call)
	noteOutcome(r.Context(), out.Kind)
	status := out.Status
	h := w.Header()
	for k, v := range out.Header {
		h[k] = v
	}
	switch {
	case r.Method == http.MethodHead && status >= 500:
		// tus-js-client restarts an upload from byte 0 after a 5xx on HEAD
		// but retries a 423: an outage of a dependency must not cost uploads.
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", strconv.Itoa(retryAfter))
		}
		status = http.StatusLocked
	case r.Method == http.MethodPatch && out.Kind == upload.Superseded:
		// Another request for the upload took it over: the interrupted
		// request's client, if it is still there, retries a 423 but gives up
		// on tusd's 400.
		h.Set("Retry-After", "1")
		status = http.StatusLocked
	case r.Method == http.MethodPatch && out.Kind == upload.Timeout:
		// A body that stalled past the network timeout is the client's
		// fault, not the server's: 408, as the PUT door answers (tusd says 500).
		status = http.StatusRequestTimeout
	}
	if v := h.Get("Tus-Extension"); v != "" {
		h.Set("Tus-Extension", v+",expiration")
	}
	if r.Method == http.MethodPost && success(status) && h.Get("Upload-Offset") == "" && out.Header.Get("Location") != "" {
		// A creation without content: tell the offset, as the answer to a
		// repeated creation does.
		h.Set("Upload-Offset", "0")
	}
	if sess != nil && success(status) && r.Method != http.MethodDelete {
		h.Set("Upload-Expires", httpDate(g.cfg.Sessions.DeadlineAfterTouch(*sess)))
	}
	status, replaced := g.finish(w, r, status)
	body := out.Body
	if replaced != "" {
		body = []byte(replaced)
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	if len(body) > 0 || h.Get("Content-Length") != "" {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if len(body) > 0 && r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	if sess == nil || !success(status) {
		return
	}
	// The client may hang up as soon as it has its answer: record what happened anyway.
	ctx := context.WithoutCancel(r.Context())
	if r.Method == http.MethodDelete {
		if err := g.cfg.Sessions.Forget(ctx, sess.UploadID); err != nil {
			g.log.WarnContext(ctx, "forget session", "upload", logID(sess.UploadID), "error", err)
		}
		return
	}
	if _, err := g.touch(ctx, *sess, clientAddr(r, g.cfg.TrustedProxies)); err != nil {
		g.log.WarnContext(ctx, "touch session", "upload", logID(sess.UploadID), "error", err)
	}
}

// uploadSession authorises a request at an upload URL (HEAD, PATCH, DELETE)
// by the upload's session, for every door that has upload URLs. A HEAD only
// reads: its session may come from the short-lived read cache.
func (g *Gateway) uploadSession(r *http.Request, id string) (auth.Session, *refusal) {
	if r.URL.RawPath != "" || !auth.ValidUploadID(id) {
		return auth.Session{}, refuse(http.StatusNotFound, "upload not found")
	}
	authorize := g.cfg.Sessions.Authorize
	if r.Method == http.MethodHead {
		authorize = g.cfg.Sessions.AuthorizeRead
	}
	sess, err := authorize(r.Context(), id)
	if err != nil {
		return sess, refusalFor(err)
	}
	return sess, nil
}

// boundPatch bounds the body of a PATCH by its upload's size: every byte
// stored under a slot is bounded by its signed size, also for an upload whose
// length was deferred. A PATCH that declares a deferred length must declare
// the slot's size.
func (g *Gateway) boundPatch(r *http.Request, sess auth.Session) *refusal {
	size := sess.Size
	if size < 0 && g.cfg.MaxSize > 0 {
		size = g.cfg.MaxSize
	}
	if v := r.Header.Get("Upload-Length"); v != "" && size >= 0 {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil || n < 0:
			return refuse(http.StatusBadRequest, "invalid Upload-Length header")
		case n > size:
			return refuse(http.StatusRequestEntityTooLarge, "larger than the slot's size")
		case sess.Size >= 0 && n != sess.Size:
			return refuse(http.StatusBadRequest, "Upload-Length differs from the slot's size")
		}
	}
	if size < 0 {
		return nil
	}
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 || off > size {
		// tusd refuses the request before it reads the body.
		return nil
	}
	upload.BodyOf(r).Bound(size - off)
	return nil
}

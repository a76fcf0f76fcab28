package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/gateway/upload"
	"github.com/uploadgate/uploadgate/storage"
)

// contentRange is a parsed "Content-Range: bytes first-last/total".
type contentRange struct {
	first, last, total int64
}

var errBadContentRange = errors.New("invalid Content-Range header")

// parseContentRange parses the header of a resumed PUT; nil when absent.
func parseContentRange(v string) (*contentRange, error) {
	if v == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return nil, errBadContentRange
	}
	span, total, ok := strings.Cut(strings.TrimSpace(rest), "/")
	if !ok {
		return nil, errBadContentRange
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return nil, errBadContentRange
	}
	var cr contentRange
	var err error
	if cr.first, err = parseNonNegative(first); err != nil {
		return nil, errBadContentRange
	}
	if cr.last, err = parseNonNegative(last); err != nil {
		return nil, errBadContentRange
	}
	if cr.total, err = parseNonNegative(total); err != nil {
		return nil, errBadContentRange
	}
	if cr.first > cr.last || cr.last >= cr.total {
		return nil, errBadContentRange
	}
	return &cr, nil
}

func parseNonNegative(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errBadContentRange
	}
	return strconv.ParseInt(s, 10, 64)
}

// requestType is the Content-Type a request claims: nil when the header is
// absent, its value verbatim (even empty) when present.
func requestType(r *http.Request) *string {
	if v, ok := r.Header["Content-Type"]; ok {
		t := ""
		if len(v) > 0 {
			t = v[0]
		}
		return &t
	}
	return nil
}

// putAtSlot is the XEP-0363 upload: PUT to a slot URL, streamed through tusd.
// It creates the slot's upload, continues it (Content-Range, or a full retry
// whose already-stored prefix is proven equal), or confirms a completed one.
func (g *Gateway) putAtSlot(w http.ResponseWriter, r *http.Request, sp slotPath) {
	ctx := r.Context()
	cr, err := parseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, err.Error()))
		return
	}
	if cr != nil && r.ContentLength >= 0 && r.ContentLength != cr.last-cr.first+1 {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Content-Length does not match Content-Range"))
		return
	}
	st, err := g.resolveSlot(ctx, sp.Path)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	id, info, exists := st.id, st.info, st.exists

	// The size the request claims for the whole file.
	claimed := r.ContentLength
	if cr != nil {
		claimed = cr.total
	}
	claimed = draftClaimedSize(r, claimed)
	verifySize := claimed
	if verifySize < 0 && exists && !info.SizeIsDeferred {
		verifySize = info.Size
	}
	if verifySize < 0 {
		g.writeRefusal(w, r, refuse(http.StatusLengthRequired, "Content-Length required"))
		return
	}
	// The body may carry the Content-Range's bytes, else the whole file, and
	// not one byte more: a chunked body that goes on is refused before the
	// byte past its bound is stored.
	if cr != nil {
		upload.BodyOf(r).Bound(cr.last - cr.first + 1)
	} else {
		upload.BodyOf(r).Bound(verifySize)
	}
	slot, verr := g.checkSlot(r, g.slotRequest(r, sp, verifySize))
	if errors.Is(verr, auth.ErrBadSignature) && exists && verifySize != info.Size {
		// v1 and v2 sign the size: a wrong length looks like a forged signature.
		// Once the slot's upload exists its size is known, and the answer can
		// say what is wrong.
		if _, e := g.cfg.Verifier.Verify(g.slotRequest(r, sp, info.Size)); e == nil || errors.Is(e, auth.ErrSlotExpired) {
			if claimed > info.Size {
				g.writeRefusal(w, r, refuse(http.StatusRequestEntityTooLarge, "larger than the slot's size"))
			} else {
				g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Content-Length differs from the slot's size; resume with Content-Range"))
			}
			return
		}
	}
	expired := errors.Is(verr, auth.ErrSlotExpired)
	if verr != nil && !expired {
		g.writeRefusal(w, r, refusalFor(verr))
		return
	}
	if exists && cr == nil {
		// A full retry right after a cut: the cut request may still be saving
		// what it received. Let it finish, then look at the upload again.
		g.settle(ctx, id)
		if info, err = g.cfg.Storage.Info(ctx, id); err != nil {
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
		st.info = info
	}
	if g.cfg.MaxSize > 0 && verifySize > g.cfg.MaxSize {
		g.writeRefusal(w, r, refuse(http.StatusRequestEntityTooLarge, "larger than the gateway's maximum upload size"))
		return
	}
	if exists && !info.SizeIsDeferred && (claimed > info.Size || r.ContentLength > info.Size) {
		g.writeRefusal(w, r, refuse(http.StatusRequestEntityTooLarge, "larger than the slot's size"))
		return
	}

	addr := clientAddr(r, g.cfg.TrustedProxies)
	sess, serr := st.sess, st.serr
	if from := r.Header.Get(resumeFromHeader); from != "" {
		// A fresh slot continues an upload whose session ended.
		var rf *refusal
		if sess, info, rf = g.rebindFrom(r, sp, from, slot, expired, claimed, addr); rf != nil {
			g.writeRefusal(w, r, rf)
			return
		}
		id, exists, serr = sess.UploadID, true, nil
		st.id, st.sess, st.serr, st.info, st.exists = id, sess, nil, info, true
	}
	if rf := g.admitExpired(doorPut, verr, serr); rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	if exists && !st.complete() {
		if rf := g.renewOwn(ctx, &st, slot, expired, addr); rf != nil {
			g.writeRefusal(w, r, rf)
			return
		}
		sess, serr = st.sess, st.serr
	}
	if errors.Is(serr, auth.ErrSessionNotFound) && exists {
		// The upload outlived its session record: the valid slot opens it again.
		if err := g.reopen(ctx, &st, slot, addr); err != nil {
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
		sess = st.sess
	}

	if exists {
		g.draftAnnounce(w, r, id, info)
	}
	switch {
	case !exists:
		if cr != nil && cr.first != 0 {
			g.writeOffsetConflict(w, r, 0, verifySize)
			return
		}
		g.putCreate(w, r, sp, slot, id, addr, r.Body, verifySize)
	case !info.SizeIsDeferred && info.Offset == info.Size:
		g.putConfirm(w, r, id, info, cr)
	case cr != nil:
		if cr.first != info.Offset {
			g.writeOffsetConflict(w, r, info.Offset, info.Size)
			return
		}
		g.countResume(resumePutRange, cr.first > 0)
		g.putAppend(w, r, id, info.Offset, r.Body, cr.last-cr.first+1, &sess)
	default:
		g.putRetry(w, r, sp, slot, expired, id, info, addr, &sess)
	}
}

// slotRequest builds the slot request of r for a given size.
func (g *Gateway) slotRequest(r *http.Request, sp slotPath, size int64) auth.SlotRequest {
	return auth.SlotRequest{
		Path:          sp.Path,
		URLPath:       sp.URLPath,
		Query:         r.URL.Query(),
		Authorization: r.Header.Get("Authorization"),
		Size:          size,
		ContentType:   requestType(r),
	}
}

// writeOffsetConflict answers a resume that does not start where the upload is.
func (g *Gateway) writeOffsetConflict(w http.ResponseWriter, r *http.Request, offset, size int64) {
	h := w.Header()
	h.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	h.Set("Upload-Length", strconv.FormatInt(size, 10))
	if offset > 0 {
		h.Set("Range", fmt.Sprintf("bytes=0-%d", offset-1))
	}
	g.writeRefusal(w, r, refuse(http.StatusConflict, fmt.Sprintf("the upload continues at byte %d", offset)))
}

// putCreate creates the slot's upload and writes body to it.
func (g *Gateway) putCreate(w http.ResponseWriter, r *http.Request, sp slotPath, slot auth.Slot, id, addr string, body io.Reader, size int64) {
	ctype := slot.Type
	if ctype == "" {
		if t := requestType(r); t != nil {
			ctype = *t
		}
	}
	meta := map[string]string{"filename": sp.Segments[len(sp.Segments)-1]}
	if ctype != "" {
		meta["filetype"] = ctype
	}
	if d := draftPutOf(r); d != nil {
		g.putCreateDraft(w, r, d, slot, id, addr, body, size, meta)
		return
	}
	cr := &creation{slot: slot, uploadID: id, kind: auth.KindWhole, addr: addr}
	out := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPost,
		Header: map[string]string{"Upload-Length": strconv.FormatInt(size, 10), "Upload-Metadata": handler.SerializeMetadataHeader(meta)},
		Body:   body,
		Length: size,
		Ctx:    context.WithValue(r.Context(), creationKey{}, cr),
	})
	g.answerPut(w, r, out, size, nil)
}

// putAppend continues an upload at offset with body.
func (g *Gateway) putAppend(w http.ResponseWriter, r *http.Request, id string, offset int64, body io.Reader, length int64, sess *auth.Session) {
	out := g.tus.Do(w, r, upload.Call{
		Method: http.MethodPatch,
		ID:     id,
		Header: map[string]string{"Upload-Offset": strconv.FormatInt(offset, 10)},
		Body:   body,
		Length: length,
	})
	info, err := g.cfg.Storage.Info(r.Context(), id)
	size := int64(-1)
	if err == nil {
		size = info.Size
	}
	g.answerPut(w, r, out, size, sess)
}

// answerPut turns tusd's outcome into the PUT door's answer: exactly 201 once
// the file is complete.
func (g *Gateway) answerPut(w http.ResponseWriter, r *http.Request, out upload.Outcome, size int64, sess *auth.Session) {
	noteOutcome(r.Context(), out.Kind)
	if out.OK() && size >= 0 && out.Offset == size {
		if sess != nil {
			if _, err := g.touch(context.WithoutCancel(r.Context()), *sess, clientAddr(r, g.cfg.TrustedProxies)); err != nil {
				g.log.WarnContext(r.Context(), "touch session", "upload", logID(sess.UploadID), "error", err)
			}
		}
		g.send(w, r, http.StatusCreated, "")
		return
	}
	if out.OK() {
		// tusd stored what arrived, but the file is not complete.
		g.writeOffsetConflict(w, r, out.Offset, size)
		return
	}
	rf := &refusal{status: out.Status, reason: out.Reason}
	if out.Kind == upload.Timeout {
		// The body stalled for longer than the network timeout: the client's
		// fault, not the server's. What arrived is kept (a HEAD at the slot
		// URL tells the offset to resume from).
		rf.status = http.StatusRequestTimeout
	}
	if out.Offset >= 0 {
		w.Header().Set("Upload-Offset", strconv.FormatInt(out.Offset, 10))
	}
	if v := out.Header.Get("Retry-After"); v != "" {
		w.Header().Set("Retry-After", v)
	}
	g.writeRefusal(w, r, rf)
}

// compareChunk is how much of a retried body is compared at a time.
const compareChunk = 256 << 10

// errDiffers marks a retried body that is not what was stored.
var errDiffers = errors.New("the body differs from the stored bytes")

// comparePrefix reads n bytes from body and from stored and reports the
// length of their equal prefix. When they differ, the bytes read from body
// past the equal prefix are returned so that nothing read is lost.
func comparePrefix(body, stored io.Reader, n int64) (equal int64, pending []byte, err error) {
	a := make([]byte, compareChunk)
	b := make([]byte, compareChunk)
	for equal < n {
		k := int(min(int64(compareChunk), n-equal))
		if _, err := io.ReadFull(body, a[:k]); err != nil {
			return equal, nil, fmt.Errorf("read body: %w", err)
		}
		if _, err := io.ReadFull(stored, b[:k]); err != nil {
			return equal, nil, fmt.Errorf("read stored bytes: %w", err)
		}
		if !bytes.Equal(a[:k], b[:k]) {
			i := 0
			for a[i] == b[i] {
				i++
			}
			return equal + int64(i), append([]byte(nil), a[i:k]...), errDiffers
		}
		equal += int64(k)
	}
	return equal, nil, nil
}

// putRetry handles a plain full PUT for a slot whose upload is incomplete.
// The client sends the whole file again. The stored prefix is compared with
// the start of the body: if equal, the rest is appended (nothing is sent
// twice to the store); if not, the upload starts over cleanly, with the
// stored bytes that did match replayed first. No file mixes two bodies.
func (g *Gateway) putRetry(w http.ResponseWriter, r *http.Request, sp slotPath, slot auth.Slot, expired bool, id string, info handler.FileInfo, addr string, sess *auth.Session) {
	ctx := r.Context()
	size := info.Size
	if r.ContentLength >= 0 && r.ContentLength != size {
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "Content-Length differs from the slot's size; resume with Content-Range"))
		return
	}
	if info.Offset == 0 {
		g.putAppend(w, r, id, 0, r.Body, size, sess)
		return
	}
	up, err := g.cfg.Storage.Upload(ctx, id)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	stored, err := up.GetReader(ctx)
	if err != nil {
		// The store cannot show what it holds (e.g. an incomplete object):
		// nothing can be proven, so start over.
		g.putRestart(w, r, sp, slot, expired, id, addr, nil, 0, nil, size)
		return
	}
	defer stored.Close()
	equal, pending, cerr := comparePrefix(r.Body, stored, info.Offset)
	switch {
	case cerr == nil:
		g.countResume(resumePutRetry, true)
		g.putAppend(w, r, id, info.Offset, r.Body, size-info.Offset, sess)
	case errors.Is(cerr, errDiffers):
		// Keep the equal prefix: reopen the stored bytes before the upload is
		// removed (an open file outlives its removal).
		replay, err := up.GetReader(ctx)
		if err != nil {
			g.writeRefusal(w, r, refusalFor(err))
			return
		}
		defer replay.Close()
		g.putRestart(w, r, sp, slot, expired, id, addr, replay, equal, pending, size)
	default:
		// The client went away during the comparison; nothing was changed.
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "request body ended early"))
	}
}

// putRestart replaces the slot's incomplete upload by a new one, created from
// prefixLen bytes of prefix, then pending, then the rest of the request body.
// The new upload has a new ID: the old upload's URL (which a tus client may
// still hold) leads nowhere, so that no client appends its body to another's
// and one upload always holds one body. Only a slot that has not expired may
// start over: an expired slot reaches its upload through its session, and a
// new upload would need a new session.
func (g *Gateway) putRestart(w http.ResponseWriter, r *http.Request, sp slotPath, slot auth.Slot, expired bool, id, addr string, prefix io.Reader, prefixLen int64, pending []byte, size int64) {
	ctx := r.Context()
	if expired {
		g.writeRefusal(w, r, refuse(http.StatusConflict, "the body differs from the stored bytes; starting over needs a slot that has not expired"))
		return
	}
	newID, err := auth.NewRandomUploadID()
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	if err := g.cfg.Storage.Terminate(ctx, id); err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	if err := g.cfg.Sessions.Forget(ctx, id); err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	noteUpload(ctx, newID)
	g.log.InfoContext(ctx, "retried PUT differs from the stored bytes; upload starts over under a new ID", "upload", logID(newID), "kept", prefixLen)
	var parts []io.Reader
	if prefix != nil {
		parts = append(parts, io.LimitReader(prefix, prefixLen))
	}
	parts = append(parts, bytes.NewReader(pending), r.Body)
	g.putCreate(w, r, sp, slot, newID, addr, io.MultiReader(parts...), size)
}

// putConfirm answers a PUT for a slot whose file is complete: 201 again when
// the body is the same bytes (the client may have lost the first answer),
// 409 when it differs.
func (g *Gateway) putConfirm(w http.ResponseWriter, r *http.Request, id string, info handler.FileInfo, cr *contentRange) {
	ctx := r.Context()
	start, n := int64(0), info.Size
	if cr != nil {
		start, n = cr.first, cr.last-cr.first+1
	} else if r.ContentLength >= 0 && r.ContentLength != info.Size {
		g.writeRefusal(w, r, refuse(http.StatusConflict, "the slot's file is complete"))
		return
	}
	up, err := g.cfg.Storage.Upload(ctx, id)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	stored, err := up.GetReader(ctx)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	defer stored.Close()
	if _, err := io.CopyN(io.Discard, stored, start); err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	_, _, cerr := comparePrefix(r.Body, stored, n)
	switch {
	case cerr == nil:
		g.send(w, r, http.StatusCreated, "")
	case errors.Is(cerr, errDiffers):
		g.writeRefusal(w, r, refuse(http.StatusConflict, "the slot's file is complete and differs from this body"))
	default:
		g.writeRefusal(w, r, refuse(http.StatusBadRequest, "request body ended early"))
	}
}

// headAtSlot answers HEAD on a slot URL that carries its signature: the
// resume state of the slot's upload (tus headers, and Range for what is stored).
func (g *Gateway) headAtSlot(w http.ResponseWriter, r *http.Request, sp slotPath) {
	// Only a read: the storage may answer from its cache of upload states.
	r = r.WithContext(storage.ReadOnly(r.Context()))
	ctx := r.Context()
	// No lock: a HEAD never cuts a running upload. Should a request of a dead
	// connection still be saving, the offset may be a little behind; the
	// client's Content-Range PUT then gets 409 with the exact offset.
	st, rf, verr := g.checkSlotOfUpload(r, sp)
	if rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	sess, serr, info := st.sess, st.serr, st.info
	expired := verr != nil
	if serr != nil && (expired || !errors.Is(serr, auth.ErrSessionNotFound)) {
		g.writeRefusal(w, r, refusalFor(serr))
		return
	}
	if rf := g.admitExpired(doorPut, verr, serr); rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	h := w.Header()
	h.Set("Tus-Resumable", tusVersion)
	h.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
	h.Set("Upload-Length", strconv.FormatInt(info.Size, 10))
	h.Set("Cache-Control", "no-store")
	if info.Offset > 0 {
		h.Set("Range", fmt.Sprintf("bytes=0-%d", info.Offset-1))
	}
	if serr == nil {
		h.Set("Upload-Expires", httpDate(g.cfg.Sessions.DeadlineAfterTouch(sess)))
	}
	w.WriteHeader(http.StatusOK)
	if serr == nil {
		if _, err := g.touch(context.WithoutCancel(ctx), sess, clientAddr(r, g.cfg.TrustedProxies)); err != nil {
			g.log.WarnContext(ctx, "touch session", "upload", logID(sess.UploadID), "error", err)
		}
	}
}

// settle takes and releases the upload's lock: a request still writing the
// upload is asked to stop (tusd saves what it received) and waited for.
// Callers have checked the slot first: only its holder may cut a write.
func (g *Gateway) settle(ctx context.Context, id string) {
	lctx, cancel := context.WithTimeout(ctx, g.cfg.LockTimeout)
	defer cancel()
	if lock, err := g.cfg.Storage.Lock(lctx, id, func() {}); err == nil {
		_ = lock.Unlock()
	}
}

// checkSlotOfUpload resolves the slot of a bodiless request (HEAD, tus PATCH)
// on a slot whose upload exists, and checks the slot against that upload's
// size and type. An expired slot passes with verr set (wrapping
// auth.ErrSlotExpired): its session decides.
func (g *Gateway) checkSlotOfUpload(r *http.Request, sp slotPath) (st slotState, rf *refusal, verr error) {
	st, err := g.resolveSlot(r.Context(), sp.Path)
	if err != nil {
		return st, refusalFor(err), nil
	}
	if !st.exists {
		return st, refusalFor(handler.ErrNotFound), nil
	}
	_, verr = g.checkSlot(r, g.slotRequestForUpload(r, sp, st.info))
	if verr != nil && !errors.Is(verr, auth.ErrSlotExpired) {
		return st, refusalFor(verr), nil
	}
	return st, nil, verr
}

// slotRequestForUpload is the slot request of a bodiless request (HEAD, the
// first check of a tus PATCH) on a slot whose upload exists: its size and type
// are the upload's.
func (g *Gateway) slotRequestForUpload(r *http.Request, sp slotPath, info handler.FileInfo) auth.SlotRequest {
	req := g.slotRequest(r, sp, info.Size)
	if t, ok := info.MetaData["filetype"]; ok {
		req.ContentType = &t
	} else {
		req.ContentType = nil
	}
	return req
}

// patchAtSlot is a tus PATCH sent to the slot URL itself (the slot URL is a
// tus resource): checked like a HEAD, then passed to tusd.
func (g *Gateway) patchAtSlot(w http.ResponseWriter, r *http.Request, sp slotPath) {
	st, rf, verr := g.checkSlotOfUpload(r, sp)
	if rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	if st.serr != nil {
		g.writeRefusal(w, r, refusalFor(st.serr))
		return
	}
	if rf := g.admitExpired(doorPut, verr, nil); rf != nil {
		g.writeRefusal(w, r, rf)
		return
	}
	g.serveTusd(w, r, st.id, &st.sess)
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
)

// resumeFromHeader names the upload that a creation or PUT at a fresh slot
// re-binds: a client whose session ended (it was offline too long) gets a new
// slot and continues its old upload instead of starting over.
const resumeFromHeader = "Upload-Resume-From"

// resumeFromID extracts the upload to continue from an Upload-Resume-From
// header: the old upload URL as the client received it in Location (or its
// path), or — for XEP-0363 clients, which never see an upload URL — the old
// slot's signed PUT URL, whose signature must still be valid (its expiry
// does not matter). The GET URL is shared with recipients and is refused.
func (g *Gateway) resumeFromID(r *http.Request, v string) (string, *refusal) {
	ctx := r.Context()
	bad := refuse(http.StatusBadRequest, "invalid "+resumeFromHeader+" header: want an upload URL or the old slot's PUT URL")
	if i := strings.LastIndex(v, g.cfg.TusBase); i >= 0 {
		id := v[i+len(g.cfg.TusBase):]
		if !auth.ValidUploadID(id) {
			return "", bad
		}
		return id, nil
	}
	u, err := url.Parse(v)
	if err != nil || !strings.Contains(u.EscapedPath(), g.cfg.UploadBase) {
		return "", bad
	}
	if i := strings.Index(u.EscapedPath(), g.cfg.UploadBase); i > 0 {
		u.RawPath = u.EscapedPath()[i:]
		u.Path, _ = url.PathUnescape(u.RawPath)
	}
	sp, err := parseSlotPath(u, g.cfg.UploadBase)
	if err != nil {
		return "", bad
	}
	// The old slot may have been re-bound already (a repeated re-bind whose
	// answer was lost): it still names the upload it was mapped to.
	id, _, err := g.slotMapping(ctx, sp.Path)
	if err != nil {
		return "", refusalFor(err)
	}
	info, err := g.cfg.Storage.Info(ctx, id)
	if err != nil {
		return "", refusalFor(err)
	}
	req := auth.SlotRequest{Path: sp.Path, URLPath: sp.URLPath, Query: u.Query(), Size: info.Size}
	if t, ok := info.MetaData["filetype"]; ok {
		req.ContentType = &t
	}
	// A signature check like any other: its failures count against the
	// client's address.
	if _, err := g.checkSlot(r, req); err != nil && !errors.Is(err, auth.ErrSlotExpired) {
		var rf *refusal
		if errors.As(err, &rf) {
			return "", rf
		}
		return "", refuse(http.StatusForbidden, "the old slot URL in "+resumeFromHeader+" is not validly signed")
	}
	return id, nil
}

// errSlotTaken refuses a re-bind onto a slot that has an upload of its own.
var errSlotTaken = refuse(http.StatusConflict, "this slot has an upload of its own; a re-bind needs a fresh slot")

// rebindTable maps the session manager's refusals of a re-bind to statuses.
var rebindTable = []struct {
	err error
	r   *refusal
}{
	{auth.ErrSessionNotFound, refuse(http.StatusNotFound, "the upload to resume does not exist (any more)")},
	{auth.ErrRebindLimit, refuse(http.StatusForbidden, "the upload cannot be re-bound again; start a new upload")},
	{auth.ErrSlotTaken, errSlotTaken},
	{auth.ErrRebindMismatch, refuse(http.StatusConflict, "the slot is for another file (name, size, type or uploader) than the upload")},
	{auth.ErrUploadComplete, refuse(http.StatusConflict, "the upload is complete")},
	{auth.ErrSessionExpired, refuse(http.StatusGone, "the upload's data is no longer kept; start a new upload")},
}

// rebind binds the upload oldID to the fresh, verified slot of this request
// (or renews an ended session with the upload's own, still valid slot).
func (g *Gateway) rebind(ctx context.Context, oldID string, slot auth.Slot, addr string) (auth.Session, *refusal) {
	noteUpload(ctx, oldID)
	before, _ := g.cfg.Sessions.Authorize(ctx, oldID)
	s, err := g.cfg.Sessions.Rebind(ctx, oldID, slot, addr)
	if err != nil {
		for _, row := range rebindTable {
			if errors.Is(err, row.err) {
				return auth.Session{}, row.r
			}
		}
		return auth.Session{}, refusalFor(err)
	}
	if s.Rebinds != before.Rebinds {
		g.metrics.rebinds.Inc()
		g.countResume(resumeRebind, s.SlotKey != before.SlotKey)
		g.log.InfoContext(ctx, "upload re-bound to a fresh slot", "upload", logID(s.UploadID), "rebinds", s.Rebinds)
	}
	return s, nil
}

// touch slides the session of a request that succeeded and counts a change
// of the client's address (a network switch: recorded, never refused).
func (g *Gateway) touch(ctx context.Context, s auth.Session, addr string) (auth.Session, error) {
	out, changed, err := g.cfg.Sessions.Touch(ctx, s, addr)
	if err != nil {
		return s, err
	}
	if changed {
		g.metrics.addrChanges.Inc()
		g.log.InfoContext(ctx, "client address changed within an upload session", "upload", logID(s.UploadID), "addr", addr)
	}
	return out, nil
}

// rebindFrom re-binds the upload named by an Upload-Resume-From header to the
// fresh slot of this request and returns the upload's session and state.
func (g *Gateway) rebindFrom(r *http.Request, sp slotPath, from string, slot auth.Slot, expired bool, size int64, addr string) (auth.Session, handler.FileInfo, *refusal) {
	ctx := r.Context()
	if expired {
		return auth.Session{}, handler.FileInfo{}, refuse(http.StatusForbidden, "a re-bind needs a fresh slot; this one expired")
	}
	oldID, rf := g.resumeFromID(r, from)
	if rf != nil {
		return auth.Session{}, handler.FileInfo{}, rf
	}
	// The fresh slot must not have an upload of its own: a re-bind never
	// replaces a file (complete or not) that another URL already leads to.
	own, _, err := g.slotMapping(ctx, sp.Path)
	if err != nil {
		return auth.Session{}, handler.FileInfo{}, refusalFor(err)
	}
	if own != oldID {
		if _, err := g.cfg.Storage.Info(ctx, own); err == nil {
			return auth.Session{}, handler.FileInfo{}, errSlotTaken
		} else if !errors.Is(err, handler.ErrNotFound) {
			return auth.Session{}, handler.FileInfo{}, refusalFor(err)
		}
	}
	if slot.Size < 0 {
		slot.Size = size
	}
	sess, rf := g.rebind(ctx, oldID, slot, addr)
	if rf != nil {
		return auth.Session{}, handler.FileInfo{}, rf
	}
	info, err := g.cfg.Storage.Info(ctx, oldID)
	if err != nil {
		return auth.Session{}, handler.FileInfo{}, refusalFor(err)
	}
	return sess, info, nil
}

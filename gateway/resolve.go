package gateway

import (
	"context"
	"errors"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
)

// slotState is what a request at a slot URL concerns, resolved once per
// request: the slot's upload, its session and its stored state.
type slotState struct {
	id   string
	sess auth.Session
	// serr is nil for a live session, else wraps auth.ErrSessionExpired
	// (sess is then the ended session) or auth.ErrSessionNotFound.
	serr   error
	info   handler.FileInfo
	exists bool // the upload is stored
}

// complete reports whether the slot's upload is stored complete.
func (s slotState) complete() bool {
	return s.exists && !s.info.SizeIsDeferred && s.info.Offset == s.info.Size
}

// resolveSlot resolves a slot path to its upload, session and stored state
// with one lookup in the session store (the slot's mapping and the session it
// leads to) and one read of the storage. A slot whose upload was re-bound to
// another slot leads nowhere (errSlotMoved).
func (g *Gateway) resolveSlot(ctx context.Context, slotPath string) (slotState, error) {
	var st slotState
	s, err := g.cfg.Sessions.AuthorizeSlot(ctx, slotPath)
	switch {
	case err == nil, errors.Is(err, auth.ErrSessionExpired):
		if s.SlotKey != auth.SlotKey(slotPath) {
			return st, errSlotMoved
		}
		st.id, st.sess, st.serr = s.UploadID, s, err
	case errors.Is(err, auth.ErrSessionNotFound):
		st.id, st.serr = auth.DeriveUploadID(g.cfg.IDKey, slotPath), err
	default:
		return st, err
	}
	noteUpload(ctx, st.id)
	info, err := g.cfg.Storage.Info(ctx, st.id)
	switch {
	case err == nil:
		st.info, st.exists = info, true
	case !errors.Is(err, handler.ErrNotFound):
		return st, err
	}
	return st, nil
}

// admitExpired decides about a request whose slot has expired (verr wraps
// auth.ErrSlotExpired): the upload's live session authorises it (serr nil),
// else the slot's expiry refuses it. Accepted requests are counted by door.
// A request whose slot has not expired passes.
func (g *Gateway) admitExpired(door string, verr, serr error) *refusal {
	if !errors.Is(verr, auth.ErrSlotExpired) {
		return nil
	}
	if serr != nil {
		return refusalFor(verr)
	}
	g.metrics.sessionAccepts.WithLabelValues(door).Inc()
	return nil
}

// renewOwn renews the ended session of a slot's own upload with the slot
// itself when the slot is still valid (v1 and v2 slots never expire): a
// re-bind to the slot the upload already has.
func (g *Gateway) renewOwn(ctx context.Context, st *slotState, slot auth.Slot, expired bool, addr string) *refusal {
	if expired || !errors.Is(st.serr, auth.ErrSessionExpired) {
		return nil
	}
	s, rf := g.rebind(ctx, st.id, slot, addr)
	if rf != nil {
		return rf
	}
	st.sess, st.serr = s, nil
	return nil
}

// reopen opens the session of a slot's upload that outlived its record (the
// record was forgotten after the history, or the store was restored from an
// older copy) with the slot, which the caller verified. The session of a
// complete file is recorded complete at once: an incomplete one would let
// the file's upload URL delete it.
func (g *Gateway) reopen(ctx context.Context, st *slotState, slot auth.Slot, addr string) error {
	s, _, err := g.cfg.Sessions.Open(ctx, slot, st.id, auth.KindWhole, addr)
	if err != nil {
		return err
	}
	if s.UploadID == st.id && !s.Complete && st.complete() {
		if s, err = g.cfg.Sessions.Complete(ctx, st.id); err != nil {
			return err
		}
	}
	st.sess, st.serr = s, nil
	return nil
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/uploadgate/uploadgate/auth"
)

// resumeFromHeader names the upload that a creation or PUT at a fresh slot
// re-binds: a client whose session ended (it was offline too long) gets a new
// slot and continues its old upload instead of starting over.
const resumeFromHeader = "Upload-Resume-From"

// resumeFromID extracts the upload ID from an Upload-Resume-From header: the
// old upload URL as the client received it in Location (or its path).
func (g *Gateway) resumeFromID(v string) (string, *refusal) {
	i := strings.LastIndex(v, g.cfg.TusBase)
	if i < 0 {
		return "", refuse(http.StatusBadRequest, "invalid "+resumeFromHeader+" header: want an upload URL")
	}
	id := v[i+len(g.cfg.TusBase):]
	if !auth.ValidUploadID(id) {
		return "", refuse(http.StatusBadRequest, "invalid "+resumeFromHeader+" header: want an upload URL")
	}
	return id, nil
}

// rebindTable maps the session manager's refusals of a re-bind to statuses.
var rebindTable = []struct {
	err error
	r   *refusal
}{
	{auth.ErrSessionNotFound, refuse(http.StatusNotFound, "the upload to resume does not exist (any more)")},
	{auth.ErrRebindLimit, refuse(http.StatusForbidden, "the upload cannot be re-bound again; start a new upload")},
	{auth.ErrRebindMismatch, refuse(http.StatusConflict, "the slot is for another size or type than the upload")},
	{auth.ErrUploadComplete, refuse(http.StatusConflict, "the upload is complete")},
	{auth.ErrSessionExpired, refuse(http.StatusGone, "the upload's data is no longer kept; start a new upload")},
}

// rebind binds the upload oldID to the fresh, verified slot of this request
// (or renews an ended session with the upload's own, still valid slot).
func (g *Gateway) rebind(ctx context.Context, oldID string, slot auth.Slot, addr string) (auth.Session, *refusal) {
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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/storage"
)

// cleanupBatch is how many due sessions one clean-up step handles.
const cleanupBatch = 100

// cleanup removes the uploads whose sessions are due (expired past the
// retention period, or complete files past their expiry), then their sessions.
// An upload that cannot be removed is logged and skipped, and the others are
// removed all the same; the failures are returned joined. A failed upload
// stays due and is tried again at the next clean-up.
func (g *Gateway) cleanup(ctx context.Context) error {
	var errs []error
	failed := map[string]bool{}
	for {
		due, err := g.cfg.Sessions.Due(ctx, cleanupBatch)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("list due sessions: %w", err))...)
		}
		progress := false
		for _, s := range due {
			if failed[s.UploadID] {
				continue // still due: failed earlier in this clean-up
			}
			if err := g.cleanupOne(ctx, s); err != nil {
				if ctx.Err() != nil {
					return errors.Join(append(errs, err)...)
				}
				failed[s.UploadID] = true
				errs = append(errs, err)
				g.log.WarnContext(ctx, "clean-up of an upload failed", "upload", logID(s.UploadID), "error", err)
				continue
			}
			progress = true
		}
		// A batch of uploads that all failed before comes back unchanged:
		// they are tried again at the next clean-up.
		if len(due) < cleanupBatch || !progress {
			return errors.Join(errs...)
		}
	}
}

// cleanupOne removes the upload of one due session, then the session; or,
// for an upload found complete, records its completion and keeps it; or, for
// a complete file whose record's history is over, forgets the record only.
func (g *Gateway) cleanupOne(ctx context.Context, s auth.Session) error {
	if s.Complete && s.KeepFile {
		return g.forgetRecord(ctx, s)
	}
	if !s.Complete && s.Kind == auth.KindWhole {
		done, err := g.storedComplete(ctx, s.UploadID)
		if err != nil {
			return fmt.Errorf("look at upload %s before removing it: %w", logID(s.UploadID), err)
		}
		if done {
			// The last byte arrived but the session store failed to
			// record it (completion only logs such a failure): record
			// it now, and keep the file as the complete file it is.
			if _, err := g.cfg.Sessions.Complete(ctx, s.UploadID); err != nil {
				return fmt.Errorf("record completion of upload %s: %w", logID(s.UploadID), err)
			}
			g.log.WarnContext(ctx, "kept a complete upload whose session missed its completion", "upload", logID(s.UploadID))
			return nil
		}
	}
	if err := g.cfg.Storage.Terminate(ctx, s.UploadID); err != nil {
		return fmt.Errorf("remove upload %s: %w", logID(s.UploadID), err)
	}
	if err := g.cfg.Sessions.Forget(ctx, s.UploadID); err != nil {
		return fmt.Errorf("forget session %s: %w", logID(s.UploadID), err)
	}
	g.countRemoved(s)
	g.log.InfoContext(ctx, "removed expired upload", "upload", logID(s.UploadID), "complete", s.Complete)
	return nil
}

// forgetRecord forgets the record of a complete file kept for ever once its
// history is over (auth.Policy.History), and keeps the file. Without the
// record a request at the slot finds the upload by the ID that the slot path
// derives, so only an upload with that ID, at its own slot and never re-bound,
// may lose it: the record of one that started over under a new ID (a retried
// PUT with other bytes) is kept for ever instead, else its GET URL would lead
// nowhere and a PUT at its slot could store another file.
func (g *Gateway) forgetRecord(ctx context.Context, s auth.Session) error {
	if s.Rebinds != 0 || s.SlotPath == "" || auth.SlotKey(s.SlotPath) != s.SlotKey || auth.DeriveUploadID(g.cfg.IDKey, s.SlotPath) != s.UploadID {
		if _, err := g.cfg.Sessions.KeepRecord(ctx, s.UploadID); err != nil {
			return fmt.Errorf("keep the record of upload %s: %w", logID(s.UploadID), err)
		}
		g.log.DebugContext(ctx, "kept the record of a complete upload whose ID its slot does not derive", "upload", logID(s.UploadID))
		return nil
	}
	if err := g.cfg.Sessions.Forget(ctx, s.UploadID); err != nil {
		return fmt.Errorf("forget session %s: %w", logID(s.UploadID), err)
	}
	g.log.DebugContext(ctx, "forgot the record of a complete upload, kept its file", "upload", logID(s.UploadID))
	return nil
}

// storedComplete reports whether the storage holds all of an upload's bytes.
func (g *Gateway) storedComplete(ctx context.Context, id string) (bool, error) {
	info, err := g.cfg.Storage.Info(ctx, id)
	if errors.Is(err, handler.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !info.SizeIsDeferred && !info.IsPartial && info.Offset == info.Size, nil
}

// orphanMargin is added to the longest life a session gives an incomplete
// upload before an upload without a session counts as abandoned.
const orphanMargin = 24 * time.Hour

// sweepOrphans removes uploads that lost their session record (a session
// database restored from an older copy or damaged, a Redis without
// persistence): cleanup works from the sessions and never finds them.
//   - An incomplete upload goes once nothing has written it for longer than
//     any session lets one live (MaxAge, then Retention), plus a day: no
//     session could still authorise its resume.
//   - A complete file stays downloadable, and goes only under a file
//     retention, that long after its last byte.
//
// The session is looked up again under the upload's lock, so an upload that
// a client takes up again meanwhile (a valid slot opens a new session) is
// kept. Storage that cannot list its uploads (S3) is left to its lifecycle
// rules.
func (g *Gateway) sweepOrphans(ctx context.Context) error {
	p := g.cfg.Sessions.Policy()
	abandoned := p.MaxAge + p.Retention + orphanMargin
	now := g.cfg.Now()
	err := g.cfg.Storage.Uploads(ctx, func(u storage.StoredUpload) error {
		age := now.Sub(u.Modified)
		if age < abandoned && (p.FileRetention <= 0 || age < p.FileRetention) {
			return nil
		}
		if has, err := g.hasSession(ctx, u.ID); err != nil || has {
			return err
		}
		complete := false
		removed, err := g.cfg.Storage.TerminateIf(ctx, u.ID, func(info handler.FileInfo) (bool, error) {
			if has, err := g.hasSession(ctx, u.ID); err != nil || has {
				return false, err
			}
			complete = !info.SizeIsDeferred && !info.IsPartial && info.Offset == info.Size
			if complete {
				return p.FileRetention > 0 && age >= p.FileRetention, nil
			}
			return age >= abandoned, nil
		})
		if err != nil {
			return fmt.Errorf("remove upload %s without a session: %w", logID(u.ID), err)
		}
		if removed {
			g.log.InfoContext(ctx, "removed an upload without a session", "upload", logID(u.ID), "complete", complete, "unchanged_for", age.Round(time.Hour).String())
		}
		return nil
	})
	if errors.Is(err, storage.ErrCannotList) {
		return nil
	}
	return err
}

// hasSession reports whether the session store holds a session for the
// upload id, live or not.
func (g *Gateway) hasSession(ctx context.Context, id string) (bool, error) {
	_, err := g.cfg.Sessions.Authorize(ctx, id)
	switch {
	case err == nil, errors.Is(err, auth.ErrSessionExpired):
		return true, nil
	case errors.Is(err, auth.ErrSessionNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("look up the session of %s: %w", logID(id), err)
	}
}

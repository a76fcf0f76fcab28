package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
)

// cleanupBatch is how many due sessions one clean-up step handles.
const cleanupBatch = 100

// cleanup removes the uploads whose sessions are due (expired past the
// retention period, or complete files past their expiry), then their sessions.
func (g *Gateway) cleanup(ctx context.Context) error {
	for {
		due, err := g.cfg.Sessions.Due(ctx, cleanupBatch)
		if err != nil {
			return fmt.Errorf("list due sessions: %w", err)
		}
		for _, s := range due {
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
					continue
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
		}
		if len(due) < cleanupBatch {
			return nil
		}
	}
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

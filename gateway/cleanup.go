package gateway

import (
	"context"
	"fmt"
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

package storage

import (
	"context"
	"time"
)

// DefaultWriteGrace is how long a write goes on after its request ended
// early (the client went away, or another request took the upload's lock),
// so that what arrived is saved: an S3 part still to be sent, the upload's
// completion.
const DefaultWriteGrace = 10 * time.Second

// WithGrace returns a context with ctx's values that ends grace after ctx
// ends (grace from now if ctx has ended already), or when release is called,
// whichever comes first. The caller calls release when its work is done.
//
// tusd has a grace period of its own (GracefulRequestCompletionTimeout), but
// it keeps every request's context and a goroutine alive for the whole
// period after the request ended, also after a request that ended normally:
// 10 s of every request's memory. Here nothing outlives release: a goroutine
// exists only while ctx has ended and the work has not.
func WithGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(context.Cause(ctx))
		case <-gctx.Done():
		}
	})
	return gctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

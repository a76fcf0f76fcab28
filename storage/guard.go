package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// ErrUploadExists is returned when an upload is created with an ID that is
// already in use. tusd's filestore would silently truncate the existing upload.
var ErrUploadExists = handler.NewError("ERR_UPLOAD_EXISTS", "an upload with this ID exists already; retry to resume it", http.StatusConflict)

// ErrUnavailable answers a failure of the storage service (disk I/O, S3
// unreachable): 503 with Retry-After, which clients retry. Nothing stored is
// lost; the upload resumes once the service is back.
var ErrUnavailable = handler.Error{
	ErrorCode: "ERR_STORAGE_UNAVAILABLE",
	Message:   "storage unavailable; retry later",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_STORAGE_UNAVAILABLE: storage unavailable; retry later\n",
		Header:     handler.HTTPHeader{"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"},
	},
}

// ErrInsufficientStorage answers a write to a full disk: 507, and the bytes
// stored before are kept.
var ErrInsufficientStorage = handler.NewError("ERR_INSUFFICIENT_STORAGE", "the server has no room for this upload", http.StatusInsufficientStorage)

// guard wraps a store's parts. Creation is atomic per ID and never truncates
// an existing upload. Failures of the storage service become ErrUnavailable
// or ErrInsufficientStorage, never tusd's 500 with the error text.
type guard struct {
	core    handler.DataStore
	term    handler.TerminaterDataStore
	concat  handler.ConcaterDataStore
	length  handler.LengthDeferrerDataStore
	content handler.ContentServerDataStore
	locker  *contendedLocker
	timeout time.Duration
	// grace is how long a write goes on after its request ended (WithGrace).
	grace time.Duration
	log   *slog.Logger
	bufs  copyBuffers
}

// classify turns a storage error into the error clients should see. tusd's
// own errors (not found, offsets…) and cancellations pass unchanged.
func (g *guard) classify(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var he handler.Error
	if errors.As(err, &he) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		g.log.WarnContext(ctx, "storage full", "op", op, "error", err)
		return ErrInsufficientStorage
	}
	g.log.ErrorContext(ctx, "storage failed", "op", op, "error", err)
	return ErrUnavailable
}

func (g *guard) useIn(c *handler.StoreComposer) {
	c.UseCore(g)
	c.UseTerminater(g)
	c.UseConcater(g)
	c.UseLengthDeferrer(g)
	if g.content != nil {
		c.UseContentServer(g)
	}
}

// writing gives a write the grace period after its request ends (WithGrace):
// tusd's own is short, and what arrived must be saved. Call it as
// ctx, done := g.writing(ctx); defer done().
func (g *guard) writing(ctx context.Context) (context.Context, context.CancelFunc) {
	return WithGrace(ctx, g.grace)
}

func (g *guard) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	ctx, done := g.writing(ctx)
	defer done()
	if info.ID == "" {
		up, err := g.core.NewUpload(ctx, info)
		return g.wrap(up, ""), g.classify(ctx, "create", err)
	}
	lock, err := g.locker.NewLock(info.ID)
	if err != nil {
		return nil, g.classify(ctx, "lock", fmt.Errorf("new lock: %w", err))
	}
	lctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	// A creation is short; it does not give up the lock when asked.
	if err := lock.Lock(lctx, func() {}); err != nil {
		return nil, g.classify(ctx, "lock", err)
	}
	defer lock.Unlock()
	if _, err := g.core.GetUpload(ctx, info.ID); err == nil {
		return nil, ErrUploadExists
	} else if !errors.Is(err, handler.ErrNotFound) {
		return nil, g.classify(ctx, "check existing", err)
	}
	up, err := g.core.NewUpload(ctx, info)
	if err != nil {
		return nil, g.classify(ctx, "create", err)
	}
	return g.wrap(up, info.ID), nil
}

// GetUpload reads an upload. A read-only request (ReadOnly) may get its state
// from the cache that the locker keeps (infocache.go).
func (g *guard) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	if isReadOnly(ctx) {
		return g.readUpload(id, func() (handler.Upload, error) { return g.getUpload(ctx, id) })
	}
	return g.getUpload(ctx, id)
}

func (g *guard) getUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := g.core.GetUpload(ctx, id)
	// filestore writes an upload's .info in place (truncate, then write): a
	// read that races with a creation can see it empty or half written.
	var syntax *json.SyntaxError
	for i := 0; i < 20 && errors.As(err, &syntax); i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		up, err = g.core.GetUpload(ctx, id)
	}
	if err != nil {
		return nil, g.classify(ctx, "get", err)
	}
	return g.wrap(up, id), nil
}

// wrap guards the upload u with ID id ("" if not known: a new upload whose
// ID the store chose, which nothing has read yet).
func (g *guard) wrap(u handler.Upload, id string) handler.Upload {
	if u == nil {
		return nil
	}
	return guardedUpload{inner: u, g: g, id: id}
}

// uploadID is the ID that u was read or created with.
func uploadID(u handler.Upload) string {
	switch w := u.(type) {
	case guardedUpload:
		return w.id
	case *recordingUpload:
		return w.id
	case *cachedUpload:
		return w.id
	}
	return ""
}

// changing drops the cached state of an upload before and after a write
// (call it as defer g.changing(id)()). Every write holds the upload's lock,
// which does the same, except tusd's concatenation, which writes the final
// upload it has just created without it.
func (g *guard) changing(id string) func() {
	g.locker.dropInfo(id)
	return func() { g.locker.dropInfo(id) }
}

func unwrapGuarded(u handler.Upload) handler.Upload {
	switch w := u.(type) {
	case guardedUpload:
		return w.inner
	case *recordingUpload:
		return unwrapGuarded(w.Upload)
	case *cachedUpload:
		if up, err := w.get(); err == nil {
			return unwrapGuarded(up)
		}
	}
	return u
}

func (g *guard) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return guardedTerm{inner: g.term.AsTerminatableUpload(unwrapGuarded(u)), g: g, id: uploadID(u)}
}

func (g *guard) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return guardedLength{inner: g.length.AsLengthDeclarableUpload(unwrapGuarded(u)), g: g, id: uploadID(u)}
}

func (g *guard) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return guardedServe{inner: g.content.AsServableUpload(unwrapGuarded(u)), g: g}
}

func (g *guard) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return guardedConcat{inner: g.concat.AsConcatableUpload(unwrapGuarded(u)), g: g, id: uploadID(u)}
}

type guardedUpload struct {
	inner handler.Upload
	g     *guard
	id    string
}

func (u guardedUpload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.inner.GetInfo(ctx)
	return info, u.g.classify(ctx, "info", err)
}

func (u guardedUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	ctx, done := u.g.writing(ctx)
	defer done()
	defer u.g.changing(u.id)()
	n, err := u.inner.WriteChunk(ctx, offset, grownSource{r: src, bufs: &u.g.bufs})
	return n, u.g.classify(ctx, "write", err)
}

func (u guardedUpload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	rc, err := u.inner.GetReader(ctx)
	return rc, u.g.classify(ctx, "read", err)
}

func (u guardedUpload) FinishUpload(ctx context.Context) error {
	ctx, done := u.g.writing(ctx)
	defer done()
	defer u.g.changing(u.id)()
	return u.g.classify(ctx, "finish", u.inner.FinishUpload(ctx))
}

type guardedTerm struct {
	inner handler.TerminatableUpload
	g     *guard
	id    string
}

func (t guardedTerm) Terminate(ctx context.Context) error {
	ctx, done := t.g.writing(ctx)
	defer done()
	defer t.g.changing(t.id)()
	return t.g.classify(ctx, "terminate", t.inner.Terminate(ctx))
}

type guardedLength struct {
	inner handler.LengthDeclarableUpload
	g     *guard
	id    string
}

func (l guardedLength) DeclareLength(ctx context.Context, length int64) error {
	ctx, done := l.g.writing(ctx)
	defer done()
	defer l.g.changing(l.id)()
	return l.g.classify(ctx, "declare length", l.inner.DeclareLength(ctx, length))
}

type guardedServe struct {
	inner handler.ServableUpload
	g     *guard
}

func (s guardedServe) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	return s.g.classify(ctx, "serve", s.inner.ServeContent(ctx, w, r))
}

type guardedConcat struct {
	inner handler.ConcatableUpload
	g     *guard
	id    string
}

func (c guardedConcat) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	ctx, done := c.g.writing(ctx)
	defer done()
	defer c.g.changing(c.id)()
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		inner[i] = unwrapGuarded(p)
	}
	return c.g.classify(ctx, "concatenate", c.inner.ConcatUploads(ctx, inner))
}

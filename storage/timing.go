package storage

import (
	"context"
	"io"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Observer receives the duration of one call into the storage, by operation
// (create, get, info, write, read, finish, terminate, concat, declare_length,
// lock, unlock). Config.Observe sets it; the gateway's metrics record it.
type Observer func(op string, took time.Duration)

func since(observe Observer, op string, start time.Time) { observe(op, time.Since(start)) }

// timed returns a store composer for tusd that passes every call to c's
// stores and locker and reports its duration to observe.
func timed(c *handler.StoreComposer, observe Observer) *handler.StoreComposer {
	t := &timedStore{c: c, observe: observe}
	out := handler.NewStoreComposer()
	out.UseCore(t)
	if c.UsesTerminater {
		out.UseTerminater(t)
	}
	if c.UsesConcater {
		out.UseConcater(t)
	}
	if c.UsesLengthDeferrer {
		out.UseLengthDeferrer(t)
	}
	if c.UsesContentServer {
		out.UseContentServer(t)
	}
	if c.UsesLocker {
		out.UseLocker(timedLocker{inner: c.Locker, observe: observe})
	}
	return out
}

type timedStore struct {
	c       *handler.StoreComposer
	observe Observer
}

func (s *timedStore) wrap(u handler.Upload) handler.Upload {
	if u == nil {
		return nil
	}
	return timedUpload{inner: u, observe: s.observe}
}

// unwrapTimed is the upload of the wrapped store.
func unwrapTimed(u handler.Upload) handler.Upload {
	if t, ok := u.(timedUpload); ok {
		return t.inner
	}
	return u
}

func (s *timedStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	defer since(s.observe, "create", time.Now())
	u, err := s.c.Core.NewUpload(ctx, info)
	return s.wrap(u), err
}

func (s *timedStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	defer since(s.observe, "get", time.Now())
	u, err := s.c.Core.GetUpload(ctx, id)
	return s.wrap(u), err
}

func (s *timedStore) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return timedTerminate{inner: s.c.Terminater.AsTerminatableUpload(unwrapTimed(u)), observe: s.observe}
}

func (s *timedStore) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return timedConcat{inner: s.c.Concater.AsConcatableUpload(unwrapTimed(u)), observe: s.observe}
}

func (s *timedStore) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return timedDeclare{inner: s.c.LengthDeferrer.AsLengthDeclarableUpload(unwrapTimed(u)), observe: s.observe}
}

func (s *timedStore) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return s.c.ContentServer.AsServableUpload(unwrapTimed(u))
}

type timedUpload struct {
	inner   handler.Upload
	observe Observer
}

func (u timedUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	defer since(u.observe, "write", time.Now())
	return u.inner.WriteChunk(ctx, offset, src)
}

func (u timedUpload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	defer since(u.observe, "info", time.Now())
	return u.inner.GetInfo(ctx)
}

func (u timedUpload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	defer since(u.observe, "read", time.Now())
	return u.inner.GetReader(ctx)
}

func (u timedUpload) FinishUpload(ctx context.Context) error {
	defer since(u.observe, "finish", time.Now())
	return u.inner.FinishUpload(ctx)
}

type timedTerminate struct {
	inner   handler.TerminatableUpload
	observe Observer
}

func (t timedTerminate) Terminate(ctx context.Context) error {
	defer since(t.observe, "terminate", time.Now())
	return t.inner.Terminate(ctx)
}

type timedConcat struct {
	inner   handler.ConcatableUpload
	observe Observer
}

func (c timedConcat) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	defer since(c.observe, "concat", time.Now())
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		inner[i] = unwrapTimed(p)
	}
	return c.inner.ConcatUploads(ctx, inner)
}

type timedDeclare struct {
	inner   handler.LengthDeclarableUpload
	observe Observer
}

func (d timedDeclare) DeclareLength(ctx context.Context, length int64) error {
	defer since(d.observe, "declare_length", time.Now())
	return d.inner.DeclareLength(ctx, length)
}

type timedLocker struct {
	inner   handler.Locker
	observe Observer
}

func (l timedLocker) NewLock(id string) (handler.Lock, error) {
	lock, err := l.inner.NewLock(id)
	if err != nil {
		return nil, err
	}
	return timedLock{inner: lock, observe: l.observe}, nil
}

type timedLock struct {
	inner   handler.Lock
	observe Observer
}

// Lock includes the wait for another request to give the lock up.
func (l timedLock) Lock(ctx context.Context, requestRelease func()) error {
	defer since(l.observe, "lock", time.Now())
	return l.inner.Lock(ctx, requestRelease)
}

func (l timedLock) Unlock() error {
	defer since(l.observe, "unlock", time.Now())
	return l.inner.Unlock()
}

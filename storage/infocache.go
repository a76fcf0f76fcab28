package storage

import (
	"context"
	"io"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// infoTTL is how long a read-only request may answer an upload's state from
// the cache. The cache is exact for changes made by this process (each
// write, and each lock taken or released, drops the upload's entry); the TTL
// bounds how long a change made behind its back, such as a file removed by
// hand, goes unseen.
const infoTTL = time.Second

// maxInfos bounds the cached upload states; an arbitrary entry makes room.
const maxInfos = 4096

type cachedInfo struct {
	info handler.FileInfo
	at   time.Time
}

// The info cache lives in contendedLocker, under its mutex, because it is the
// locks that tell when an upload may change: every write of an upload (a
// PATCH, a creation with a body, a completion, a termination) holds its
// lock, except tusd's concatenation into a final upload it has just
// created; the guard's writes drop the entry too (guard.changing). It is
// kept only when the locker is local to this process; with a shared locker
// other instances write uploads without this process seeing their locks.

// infoGen returns the generation that a read must present to cache what it read.
func (l *contendedLocker) infoGen() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// cachedInfo returns the cached state of upload id if nobody here holds or
// is acquiring its lock and the entry is younger than infoTTL.
func (l *contendedLocker) cachedInfo(id string) (handler.FileInfo, bool) {
	if l.infos == nil {
		return handler.FileInfo{}, false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.infos[id]
	if !ok || l.local[id] > 0 || now.Sub(c.at) >= infoTTL || now.Before(c.at) {
		return handler.FileInfo{}, false
	}
	return c.info, true
}

// storeInfo caches info, read by a request that took gen before reading,
// unless an upload was written or a lock taken or released since (the read
// may predate a write) or this upload's lock is held now.
func (l *contendedLocker) storeInfo(id string, info handler.FileInfo, gen uint64) {
	if l.infos == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen || l.local[id] > 0 {
		return
	}
	if _, ok := l.infos[id]; !ok && len(l.infos) >= maxInfos {
		for k := range l.infos {
			delete(l.infos, k)
			break
		}
	}
	l.infos[id] = cachedInfo{info: info, at: now}
}

// changed drops the cached state of id; l.mu is held.
func (l *contendedLocker) changed(id string) {
	l.gen++
	delete(l.infos, id)
}

// dropInfo drops the cached state of id (an upload being written).
func (l *contendedLocker) dropInfo(id string) {
	l.mu.Lock()
	l.changed(id)
	l.mu.Unlock()
}

// readUpload answers a read-only request's GetUpload from the cache, or reads
// the upload with get and caches the state its GetInfo returns.
func (g *guard) readUpload(id string, get func() (handler.Upload, error)) (handler.Upload, error) {
	l := g.locker
	if l.infos == nil {
		return get()
	}
	if info, ok := l.cachedInfo(id); ok {
		return &cachedUpload{id: id, info: info, get: get}, nil
	}
	gen := l.infoGen()
	up, err := get()
	if err != nil {
		return nil, err
	}
	return &recordingUpload{Upload: up, id: id, gen: gen, l: l}, nil
}

// recordingUpload caches the state its GetInfo reads.
type recordingUpload struct {
	handler.Upload
	id  string
	gen uint64
	l   *contendedLocker
}

func (u *recordingUpload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.Upload.GetInfo(ctx)
	if err == nil {
		u.l.storeInfo(u.id, info, u.gen)
	}
	return info, err
}

// cachedUpload is an upload whose state came from the cache. A read-only
// request only asks for its state; anything else reads the upload first.
type cachedUpload struct {
	id   string
	info handler.FileInfo
	get  func() (handler.Upload, error)
}

func (u *cachedUpload) GetInfo(context.Context) (handler.FileInfo, error) { return u.info, nil }

func (u *cachedUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	up, err := u.get()
	if err != nil {
		return 0, err
	}
	return up.WriteChunk(ctx, offset, src)
}

func (u *cachedUpload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	up, err := u.get()
	if err != nil {
		return nil, err
	}
	return up.GetReader(ctx)
}

func (u *cachedUpload) FinishUpload(ctx context.Context) error {
	up, err := u.get()
	if err != nil {
		return err
	}
	return up.FinishUpload(ctx)
}

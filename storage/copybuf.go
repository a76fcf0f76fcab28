package storage

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Upload bytes are copied from the request to the store in buffers that grow
// with the client's speed. Each copy starts with io.Copy's 32 KiB; once a
// read fills it (more was waiting in the socket), the copy moves to 128 KiB.
// At 128 KiB, 64 concurrent uploads over loopback cost about a fifth less
// server CPU per byte than at 32 KiB, because each read and write system call
// moves more (docs/performance.md). A client that trickles its bytes never
// fills the small buffer and never holds a large one: a thousand slow mobile
// uploads cost what they did, and at most maxLargeCopyBuffers large buffers
// are lent at once (16 MiB), whatever the number of fast uploads.
const (
	smallCopyBuffer     = 32 << 10
	largeCopyBuffer     = 128 << 10
	maxLargeCopyBuffers = 128
)

// copyBuffers lends copy buffers: a buffer is held only while an upload's
// bytes are being copied.
type copyBuffers struct {
	small, large sync.Pool
	// largeLent counts the large buffers lent; maxLarge bounds it
	// (maxLargeCopyBuffers if 0).
	largeLent atomic.Int64
	maxLarge  int64
}

func (c *copyBuffers) getSmall() *[]byte { return fromPool(&c.small, smallCopyBuffer) }

// getLarge lends a large buffer, unless as many as allowed are lent already.
func (c *copyBuffers) getLarge() (*[]byte, bool) {
	limit := c.maxLarge
	if limit == 0 {
		limit = maxLargeCopyBuffers
	}
	if c.largeLent.Add(1) > limit {
		c.largeLent.Add(-1)
		return nil, false
	}
	return fromPool(&c.large, largeCopyBuffer), true
}

func fromPool(p *sync.Pool, size int) *[]byte {
	if b, ok := p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, size)
	return &b
}

func (c *copyBuffers) put(b *[]byte) {
	if len(*b) == largeCopyBuffer {
		c.largeLent.Add(-1)
		c.large.Put(b)
		return
	}
	c.small.Put(b)
}

// grownSource is an upload's byte source as handed to a store. A store that
// copies it with io.Copy (filestore does) gets WriteTo and its growing
// buffer; each read is written before the next read, so what arrived is in
// the store as soon as it arrived, as with io.Copy. Read is the source's own.
type grownSource struct {
	r    io.Reader
	bufs *copyBuffers
}

func (s grownSource) Read(p []byte) (int, error) { return s.r.Read(p) }

// WriteTo copies the source to w until the source ends. What was read before
// a read error is written first: an interrupted upload keeps every byte that
// arrived.
func (s grownSource) WriteTo(w io.Writer) (int64, error) {
	bp := s.bufs.getSmall()
	defer func() { s.bufs.put(bp) }()
	var total int64
	for {
		buf := *bp
		n, rerr := s.r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
		if n == len(buf) && len(buf) < largeCopyBuffer {
			if large, ok := s.bufs.getLarge(); ok {
				s.bufs.put(bp)
				bp = large
			}
		}
	}
}

package upload

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrBodyTooLong marks a request body that goes on past the bytes the request
// may store. tusd turns a *http.MaxBytesError into its 413 (ERR_UPLOAD_SIZE_EXCEEDED).
var ErrBodyTooLong = &http.MaxBytesError{}

// Body is a request body read under the gateway's two body rules:
//
//   - every read obeys the network timeout: the connection's read deadline is
//     moved to now+timeout before each read, whoever reads (tusd, or the PUT
//     door comparing a retried body with what is stored), so a client that
//     stalls is cut within the timeout;
//   - when the request may store at most limit bytes, the last of them is
//     handed on only once the body is known to end there. A body that goes on
//     (a chunked body longer than its upload, a Content-Range shorter than its
//     content) fails with ErrBodyTooLong before the byte that would complete
//     the upload is written: an overlong request never leaves a complete
//     file behind.
//
// It records how reading ended, so that the outcome of a failed request
// tells a client that stalled (Timeout) without reading tusd's answer.
type Body struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration

	mu sync.Mutex
	// limit is how many bytes may still be handed on (-1: no limit).
	limit int64
	// held is a byte read ahead while checking for the end of the body.
	held    []byte
	err     error // the first read error other than io.EOF
	tooLong bool
	eof     bool // the body was read to its end
}

// NewBody wraps r's body. w reaches the connection (http.ResponseController).
func NewBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) *Body {
	return &Body{r: r.Body, rc: http.NewResponseController(w), timeout: timeout, limit: -1}
}

// Bound sets how many more bytes of the body may be handed on (n < 0: no
// bound). It only ever lowers an existing bound.
func (b *Body) Bound(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n >= 0 && (b.limit < 0 || n < b.limit) {
		b.limit = n
	}
}

func (b *Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tooLong {
		return 0, ErrBodyTooLong
	}
	switch {
	case len(p) == 0:
		return 0, nil
	case b.limit < 0:
		return b.read(p)
	case b.limit > 1:
		n, err := b.read(p[:min(int64(len(p)), b.limit-1)])
		b.limit -= int64(n)
		return n, err
	}
	// One byte, or none, may still be handed on: read ahead until the end of
	// the body shows.
	var buf [2]byte
	have := copy(buf[:], b.held)
	b.held = nil
	for {
		if int64(have) > b.limit {
			b.tooLong = true
			return 0, ErrBodyTooLong
		}
		n, err := b.read(buf[have:])
		have += n
		if int64(have) > b.limit {
			continue
		}
		if err == io.EOF {
			k := copy(p, buf[:have])
			b.limit -= int64(k)
			return k, io.EOF
		}
		if err != nil {
			// The body ended early or stalled: keep what was read for a
			// later call; nothing past the limit was handed on.
			b.held = append([]byte(nil), buf[:have]...)
			return 0, err
		}
	}
}

// read reads from the client with the deadline moved; the caller holds mu.
func (b *Body) read(p []byte) (int, error) {
	if len(b.held) > 0 {
		n := copy(p, b.held)
		b.held = b.held[n:]
		return n, nil
	}
	if b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// Unread reports whether the client may still be sending the body: it was
// neither read to its end nor cut by an error.
func (b *Body) Unread() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof && b.err == nil
}

func (b *Body) Close() error { return b.r.Close() }

// TimedOut reports whether a read of the body hit the network timeout.
func (b *Body) TimedOut() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Is(b.err, os.ErrDeadlineExceeded)
}

// BodyOf returns the Body of r, nil if r carries none. Every method of a nil
// *Body is safe: no bound, nothing read.
func BodyOf(r *http.Request) *Body {
	b, _ := r.Body.(*Body)
	return b
}

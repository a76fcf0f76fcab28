package gateway

import (
	"bytes"
	"net/http"
)

// recorder wraps a ResponseWriter to learn the final status and the bytes
// written, and to add headers just before the status is sent. It implements
// Unwrap so that tusd's http.ResponseController still reaches the connection
// (read deadlines, dead-connection detection).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	// mapStatus may replace a final status before it is sent.
	mapStatus func(h http.Header, status int) int
	// beforeHeader runs once, before a final (non-1xx) status is written.
	beforeHeader func(h http.Header, status int)
	// interruptedIsLocked answers tusd's "upload interrupted" (400) with
	// 423: the interrupted request's client, if it is still there, retries
	// a 423 but gives up on a 400. The status is held until the body shows
	// which 400 it is.
	interruptedIsLocked bool
	held                bool
}

func (w *recorder) WriteHeader(code int) {
	if code < 200 {
		// Informational responses (104 of the resumable-upload draft) pass through.
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status != 0 {
		return
	}
	if w.mapStatus != nil {
		code = w.mapStatus(w.ResponseWriter.Header(), code)
	}
	if code == http.StatusBadRequest && w.interruptedIsLocked && !w.held {
		w.held = true
		return
	}
	w.status = code
	if w.beforeHeader != nil {
		w.beforeHeader(w.ResponseWriter.Header(), code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.held && w.status == 0 {
		code := http.StatusBadRequest
		if bytes.HasPrefix(p, []byte("ERR_UPLOAD_INTERRUPTED")) {
			code = http.StatusLocked
			w.ResponseWriter.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(code)
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// flush sends a status that is still held.
func (w *recorder) flush() {
	if w.held && w.status == 0 {
		w.WriteHeader(http.StatusBadRequest)
	}
}

// Unwrap gives http.ResponseController access to the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the final status, 200 if the handler wrote nothing.
func (w *recorder) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func success(status int) bool { return status >= 200 && status < 300 }

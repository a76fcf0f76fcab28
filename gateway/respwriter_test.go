package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRecorderTurnsInterruptedIntoLocked(t *testing.T) {
	cases := []struct {
		body string
		want int
	}{
		{"ERR_UPLOAD_INTERRUPTED: upload has been interrupted by another request for this upload resource\n", http.StatusLocked},
		{"ERR_INVALID_OFFSET: missing or invalid Upload-Offset header\n", http.StatusBadRequest},
		{"", http.StatusBadRequest},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		rec := &recorder{ResponseWriter: w, interruptedIsLocked: true}
		rec.WriteHeader(http.StatusBadRequest)
		if c.body != "" {
			_, _ = rec.Write([]byte(c.body))
		}
		rec.flush()
		if w.Code != c.want || rec.Status() != c.want {
			t.Errorf("body %q: status %d (recorded %d), want %d", c.body, w.Code, rec.Status(), c.want)
		}
		if w.Body.String() != c.body {
			t.Errorf("body changed to %q", w.Body.String())
		}
	}
	// The wrapper must let tusd reach the connection.
	var _ interface{ Unwrap() http.ResponseWriter } = &recorder{}
	var _ interface{ Unwrap() http.ResponseWriter } = &captured{}
}

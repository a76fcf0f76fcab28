package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
)

// unreachableStore is a session store whose Ping fails with err.
type unreachableStore struct {
	*memstore.Store
	err error
}

func (s unreachableStore) Ping(context.Context) error { return s.err }

// /readyz says which dependency is down, never the error's text: that is for
// the log, which gets it at warn.
func TestReadyzHidesErrorText(t *testing.T) {
	const secret = "redis://default:hunter2-s3cr3t-pa55word@10.9.8.7:6379/0"
	tg := newTestGateway(t)
	var logs bytes.Buffer
	cfg := tg.gw.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Sessions = auth.NewSessions(unreachableStore{memstore.New(), errors.New("dial " + secret + ": connection refused")},
		auth.DefaultPolicy(), nil)
	cfg.Registry = nil
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The disk storage cannot write its probe file: its error names the path.
	if err := os.RemoveAll(filepath.Join(tg.dir, "uploads")); err != nil {
		t.Fatal(err)
	}

	w := httptest.NewRecorder()
	gw.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	body := w.Body.String()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("/readyz: %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if body != "storage: unavailable\nsession store: unavailable\n" {
		t.Errorf("/readyz body %q; want each dependency named unavailable", body)
	}
	for _, leak := range []string{"hunter2", "10.9.8.7", tg.dir, "connection refused"} {
		if strings.Contains(body, leak) {
			t.Errorf("/readyz body %q contains %q", body, leak)
		}
	}
	for _, want := range []string{"level=WARN", "session store unavailable", "hunter2-s3cr3t", "storage unavailable", tg.dir} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
}

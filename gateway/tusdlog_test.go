package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

// countingHandler counts the WithAttrs and WithGroup calls that reach it.
type countingHandler struct {
	slog.Handler
	derived *atomic.Int64
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.derived.Add(1)
	return countingHandler{Handler: h.Handler.WithAttrs(as), derived: h.derived}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	h.derived.Add(1)
	return countingHandler{Handler: h.Handler.WithGroup(name), derived: h.derived}
}

// tusdLines decodes the JSON lines written to buf.
func tusdLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestTusdLogger(t *testing.T) {
	var buf bytes.Buffer
	var derived atomic.Int64
	inner := countingHandler{Handler: slog.NewJSONHandler(&buf, nil), derived: &derived}
	base := newTusdLogger(inner, slog.LevelWarn)
	derived.Store(0) // the "tusd" group of newTusdLogger itself

	const id = "d5g6gtgkdda6mikpf4en5qb6hy"
	// As tusd derives a request's logger, and then the upload's.
	req := base.With("method", "PATCH", "path", "/files/"+id, "requestId", "r1")
	up := req.WithGroup("upload").With("id", id)

	t.Run("below the minimum nothing is done", func(t *testing.T) {
		for range 100 {
			l := base.With("method", "HEAD", "path", "/files/"+id).With("id", id)
			l.Info("ResponseOutgoing", "status", 200)
		}
		up.Info("UploadCreated", "url", "http://h/files/"+id)
		if buf.Len() != 0 {
			t.Fatalf("records below warn were written: %s", buf.String())
		}
		if n := derived.Load(); n != 0 {
			t.Fatalf("the inner handler was derived %d times for loggers that wrote nothing", n)
		}
	})

	t.Run("a record keeps its attributes and groups, IDs hashed", func(t *testing.T) {
		up.Warn("ChunkWriteFailed", "url", "http://h/files/"+id, "error", "disk full")
		if strings.Contains(buf.String(), id) {
			t.Fatalf("an upload ID reached the log: %s", buf.String())
		}
		lines := tusdLines(t, &buf)
		if len(lines) != 1 {
			t.Fatalf("%d lines, want 1", len(lines))
		}
		tusd, _ := lines[0]["tusd"].(map[string]any)
		if tusd["method"] != "PATCH" || tusd["requestId"] != "r1" || tusd["path"] != "/files/"+logID(id) {
			t.Errorf("request attributes: %v", tusd)
		}
		group, _ := tusd["upload"].(map[string]any)
		if group["id"] != logID(id) || group["url"] != "http://h/files/"+logID(id) || group["error"] != "disk full" {
			t.Errorf("upload group: %v", group)
		}
		if lines[0]["msg"] != "ChunkWriteFailed" || lines[0]["level"] != "WARN" {
			t.Errorf("record: %v", lines[0])
		}
	})

	t.Run("loggers derived from one logger do not share attributes", func(t *testing.T) {
		// Three attributes give the list spare capacity: an append in place
		// would let the second derived logger overwrite the first's.
		parent := base.With("a", 1).With("b", 2).With("c", 3)
		d := parent.With("d", 4)
		e := parent.With("e", 5)
		d.Error("one")
		e.Error("two")
		lines := tusdLines(t, &buf)
		if len(lines) != 2 {
			t.Fatalf("%d lines, want 2", len(lines))
		}
		for i, want := range []string{"d", "e"} {
			tusd, _ := lines[i]["tusd"].(map[string]any)
			other := map[string]string{"d": "e", "e": "d"}[want]
			if tusd[want] == nil || tusd[other] != nil || tusd["a"] == nil || tusd["c"] == nil {
				t.Errorf("line %d: %v, want a to c and %s only", i, tusd, want)
			}
		}
	})
}

// BenchmarkTusdRequestLogger is what deriving tusd's per-request logger
// costs when nothing is logged at its level (every successful request).
func BenchmarkTusdRequestLogger(b *testing.B) {
	l := newTusdLogger(slog.NewTextHandler(&bytes.Buffer{}, nil), slog.LevelWarn)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := l.With("method", "POST", "path", "/files/", "requestId", "r1")
		r.InfoContext(ctx, "RequestIncoming")
		r.With("id", "d5g6gtgkdda6mikpf4en5qb6hy").InfoContext(ctx, "UploadCreated")
	}
}

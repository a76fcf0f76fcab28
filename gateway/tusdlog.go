package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"

	xslog "golang.org/x/exp/slog"
)

// tusdLogHandler carries tusd's log records (tusd v2.10.1 logs through
// golang.org/x/exp/slog) into the gateway's log/slog handler, at or above a
// minimum level. Upload IDs are capabilities: attributes that carry one
// (id, path, url) are replaced by a short hash.
type tusdLogHandler struct {
	inner slog.Handler
	min   slog.Level
}

func newTusdLogger(h slog.Handler, min slog.Level) *xslog.Logger {
	return xslog.New(tusdLogHandler{inner: h.WithGroup("tusd"), min: min})
}

func (h tusdLogHandler) Enabled(ctx context.Context, l xslog.Level) bool {
	return slog.Level(l) >= h.min && h.inner.Enabled(ctx, slog.Level(l))
}

func (h tusdLogHandler) Handle(ctx context.Context, r xslog.Record) error {
	rec := slog.NewRecord(r.Time, slog.Level(r.Level), r.Message, r.PC)
	r.Attrs(func(a xslog.Attr) bool {
		rec.AddAttrs(convertAttr(a))
		return true
	})
	return h.inner.Handle(ctx, rec)
}

func (h tusdLogHandler) WithAttrs(attrs []xslog.Attr) xslog.Handler {
	out := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, convertAttr(a))
	}
	return tusdLogHandler{inner: h.inner.WithAttrs(out), min: h.min}
}

func (h tusdLogHandler) WithGroup(name string) xslog.Handler {
	return tusdLogHandler{inner: h.inner.WithGroup(name), min: h.min}
}

func convertAttr(a xslog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == xslog.KindGroup {
		group := v.Group()
		args := make([]any, 0, len(group))
		for _, g := range group {
			args = append(args, convertAttr(g))
		}
		return slog.Group(a.Key, args...)
	}
	switch a.Key {
	case "id", "path", "url":
		return slog.String(a.Key, redactIDs(v.String()))
	}
	return slog.Any(a.Key, v.Any())
}

// redactIDs replaces the last path segment of a path or URL (where tusd puts
// upload IDs) by a short hash, so logs never carry a usable upload URL.
func redactIDs(s string) string {
	if s == "" {
		return s
	}
	i := strings.LastIndexByte(s, '/')
	return s[:i+1] + logID(s[i+1:])
}

// logID is how upload IDs appear in logs: a short hash, enough to correlate lines.
func logID(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return "h:" + hex.EncodeToString(sum[:6])
}

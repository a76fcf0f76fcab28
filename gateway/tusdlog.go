package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"

	xslog "golang.org/x/exp/slog"
)

// tusdLogHandler carries tusd's log records (tusd v2.10.1 logs through
// golang.org/x/exp/slog) into the gateway's log/slog handler, at or above a
// minimum level. Upload IDs are capabilities: attributes that carry one
// (id, path, url) are replaced by a short hash.
//
// tusd derives a logger with the request's attributes for every request,
// and almost none of them logs at the minimum level (warn): With and
// WithGroup only note what they were given, and the notes are converted and
// applied to the inner handler when a record is handled (so a LogValuer
// given to With is resolved then, not at With; tusd gives plain values).
type tusdLogHandler struct {
	inner slog.Handler
	min   slog.Level
	ops   []tusdLogOp
}

// tusdLogOp is one With (attrs) or WithGroup (group) call not yet applied.
type tusdLogOp struct {
	attrs []xslog.Attr
	group string
}

func newTusdLogger(h slog.Handler, min slog.Level) *xslog.Logger {
	return xslog.New(tusdLogHandler{inner: h.WithGroup("tusd"), min: min})
}

func (h tusdLogHandler) Enabled(ctx context.Context, l xslog.Level) bool {
	return slog.Level(l) >= h.min && h.inner.Enabled(ctx, slog.Level(l))
}

func (h tusdLogHandler) Handle(ctx context.Context, r xslog.Record) error {
	inner := h.inner
	for _, op := range h.ops {
		if op.attrs == nil {
			inner = inner.WithGroup(op.group)
			continue
		}
		out := make([]slog.Attr, 0, len(op.attrs))
		for _, a := range op.attrs {
			out = append(out, convertAttr(a))
		}
		inner = inner.WithAttrs(out)
	}
	rec := slog.NewRecord(r.Time, slog.Level(r.Level), r.Message, r.PC)
	r.Attrs(func(a xslog.Attr) bool {
		rec.AddAttrs(convertAttr(a))
		return true
	})
	return inner.Handle(ctx, rec)
}

func (h tusdLogHandler) WithAttrs(attrs []xslog.Attr) xslog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(tusdLogOp{attrs: attrs})
}

func (h tusdLogHandler) WithGroup(name string) xslog.Handler {
	if name == "" {
		return h
	}
	return h.with(tusdLogOp{group: name})
}

// with is h with one more operation; h's own list is never appended to in
// place, so that loggers derived from one logger do not share their notes.
func (h tusdLogHandler) with(op tusdLogOp) tusdLogHandler {
	return tusdLogHandler{inner: h.inner, min: h.min, ops: append(slices.Clip(h.ops), op)}
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

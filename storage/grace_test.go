package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

// probeStore is filestore whose uploads call onWrite with the context that
// each WriteChunk gets, before writing.
type probeStore struct {
	filestore.FileStore
	onWrite func(ctx context.Context)
}

type probeUpload struct {
	handler.Upload
	s *probeStore
}

func (s *probeStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.FileStore.NewUpload(ctx, info)
	return probeUpload{up, s}, err
}

func (s *probeStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.FileStore.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return probeUpload{up, s}, nil
}

func (u probeUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	u.s.onWrite(ctx)
	return u.Upload.WriteChunk(ctx, offset, src)
}

// A write whose request ends while it runs (the client went away) goes on
// for the write grace, so that what arrived is saved, and its context ends
// after that; one whose request had ended before it started gets the grace
// from its start.
func TestWritesOutliveTheirRequest(t *testing.T) {
	const grace = 2 * time.Second
	probe := &probeStore{FileStore: filestore.New(t.TempDir())}
	b := assemble(Config{CreateLockTimeout: time.Second, WriteGrace: grace, Logger: slog.New(slog.DiscardHandler)}, probe, nil)
	reqCtx, endRequest := context.WithCancel(context.Background())
	up, err := b.Composer.Core.NewUpload(reqCtx, handler.FileInfo{ID: "graceful", Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	var writeCtx context.Context
	var alive, ended time.Duration
	probe.onWrite = func(ctx context.Context) {
		writeCtx = ctx
		start := time.Now()
		endRequest()
		time.Sleep(grace / 10)
		if ctx.Err() == nil {
			alive = time.Since(start)
		}
		<-ctx.Done()
		ended = time.Since(start)
	}
	n, err := up.WriteChunk(reqCtx, 0, strings.NewReader("01234"))
	if err != nil || n != 5 {
		t.Fatalf("WriteChunk: %d, %v", n, err)
	}
	if alive == 0 {
		t.Fatalf("the write's context ended with its request; want it alive for %v", grace)
	}
	if ended < grace {
		t.Fatalf("the write's context ended %v after its request; want %v", ended, grace)
	}
	if !errors.Is(context.Cause(writeCtx), context.Canceled) {
		t.Fatalf("cause %v; want the request's", context.Cause(writeCtx))
	}

	// The request has ended before the write starts: the grace counts from
	// the write's start, and the bytes are written.
	probe.onWrite = func(ctx context.Context) {
		if ctx.Err() != nil {
			t.Error("a write whose request had ended started with an ended context")
		}
	}
	again, err := b.Composer.Core.GetUpload(context.Background(), "graceful")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := again.WriteChunk(reqCtx, 5, strings.NewReader("56789")); err != nil || n != 5 {
		t.Fatalf("WriteChunk after the request ended: %d, %v", n, err)
	}
	info, err := b.Info(context.Background(), "graceful")
	if err != nil || info.Offset != 10 {
		t.Fatalf("stored offset %d, %v; want 10", info.Offset, err)
	}
}

// WithGrace's context ends when the work is released, also while its
// parent lives, and keeps the parent's values.
func TestWithGraceRelease(t *testing.T) {
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	ctx, release := WithGrace(parent, time.Hour)
	if ctx.Value(key{}) != "v" {
		t.Fatal("WithGrace lost the parent's values")
	}
	if ctx.Err() != nil {
		t.Fatal("ended before release")
	}
	release()
	if ctx.Err() == nil {
		t.Fatal("still alive after release")
	}
}

package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/internal/tests3"
)

func newS3Backend(t *testing.T) (*Backend, *tests3.Server) {
	t.Helper()
	srv := tests3.Start(t)
	srv.Setenv(t)
	b, err := New(context.Background(), Config{
		Backend:           BackendS3,
		DataDir:           t.TempDir(),
		CreateLockTimeout: time.Second,
		S3:                S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, Prefix: "ug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, srv
}

// readUpload reads an upload's bytes back from the store.
func readUpload(t *testing.T, b *Backend, id string) string {
	t.Helper()
	up, err := b.Upload(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := up.GetReader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// The gateway's IDs stay the IDs on S3: no "+<multipart id>" leaks out, and
// an upload is found again by its ID alone.
func TestS3KeepsGatewayIDs(t *testing.T) {
	b, _ := newS3Backend(t)
	ctx := context.Background()
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("x", 6<<20) + "tail"
	up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "abcdefghijklmnopqrstuvwxyz", Size: int64(len(data)), MetaData: handler.MetaData{"filetype": "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := up.GetInfo(ctx)
	if err != nil || info.ID != "abcdefghijklmnopqrstuvwxyz" {
		t.Fatalf("info ID %q (%v)", info.ID, err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader(data[:5<<20])); err != nil {
		t.Fatal(err)
	}
	again, err := b.Upload(ctx, "abcdefghijklmnopqrstuvwxyz")
	if err != nil {
		t.Fatal(err)
	}
	info, err = again.GetInfo(ctx)
	if err != nil || info.Offset != 5<<20 || info.ID != "abcdefghijklmnopqrstuvwxyz" {
		t.Fatalf("after one part: %+v %v", info, err)
	}
	if _, err := again.WriteChunk(ctx, info.Offset, strings.NewReader(data[5<<20:])); err != nil {
		t.Fatal(err)
	}
	if err := again.FinishUpload(ctx); err != nil {
		t.Fatal(err)
	}
	final, _ := b.Upload(ctx, "abcdefghijklmnopqrstuvwxyz")
	info, _ = final.GetInfo(ctx)
	if info.Offset != info.Size {
		t.Fatalf("not complete: %+v", info)
	}
	rc, err := final.GetReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != data {
		t.Fatalf("object of %d bytes differs", len(got))
	}
	// A second creation with the same ID neither truncates nor orphans.
	if _, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "abcdefghijklmnopqrstuvwxyz", Size: 1}); !errors.Is(err, ErrUploadExists) {
		t.Fatalf("second creation: %v", err)
	}
	if _, err := b.Upload(ctx, "zzzzzzzzzzzzzzzzzzzzzzzzzz"); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("missing upload: %v", err)
	}
	if err := b.Terminate(ctx, "abcdefghijklmnopqrstuvwxyz"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Upload(ctx, "abcdefghijklmnopqrstuvwxyz"); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("after terminate: %v", err)
	}
}

func TestS3Concatenation(t *testing.T) {
	b, _ := newS3Backend(t)
	ctx := context.Background()
	var parts []handler.Upload
	for i, chunk := range []string{"hello ", "world"} {
		id := []string{"aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb"}[i]
		up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: int64(len(chunk)), IsPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(ctx, 0, strings.NewReader(chunk)); err != nil {
			t.Fatal(err)
		}
		if err := up.FinishUpload(ctx); err != nil {
			t.Fatal(err)
		}
		again, _ := b.Upload(ctx, id)
		parts = append(parts, again)
	}
	final, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: "cccccccccccccccccccccccccc", Size: 11, IsFinal: true, PartialUploads: []string{"aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Composer.Concater.AsConcatableUpload(final).ConcatUploads(ctx, parts); err != nil {
		t.Fatal(err)
	}
	up, _ := b.Upload(ctx, "cccccccccccccccccccccccccc")
	info, _ := up.GetInfo(ctx)
	if info.PartialUploads[0] != "aaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Fatalf("partial IDs %v", info.PartialUploads)
	}
	rc, err := up.GetReader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "hello world" {
		t.Fatalf("final %q", got)
	}
}

// A part that failed while a later one of the same PATCH succeeded leaves a
// gap in the listed parts. The offset must be the contiguous prefix, and the
// resumed upload must complete with the right bytes (no part missing).
func TestS3GapInPartsIsNotCounted(t *testing.T) {
	b, srv := newS3Backend(t)
	ctx := context.Background()
	const id = "gapgapgapgapgapgapgapgapga"
	part := 5 << 20
	data := strings.Repeat("a", part) + strings.Repeat("b", part) + strings.Repeat("c", part)
	up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader(data[:part])); err != nil {
		t.Fatal(err)
	}
	// Part 3 arrives, part 2 never did: what a failed concurrent part upload leaves.
	full, err := b.core.(*guard).core.(*s3IDs).fullID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	mp := full[strings.LastIndexByte(full, '+')+1:]
	if _, err := srv.Client().UploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(srv.Bucket), Key: aws.String("ug/" + id), UploadId: aws.String(mp),
		PartNumber: aws.Int32(3), Body: strings.NewReader(strings.Repeat("Z", part)),
	}); err != nil {
		t.Fatal(err)
	}
	again, err := b.Upload(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := again.GetInfo(ctx)
	if err != nil || info.Offset != int64(part) {
		t.Fatalf("offset %d (%v), want %d: the part after the gap must not count", info.Offset, err, part)
	}
	if _, err := again.WriteChunk(ctx, info.Offset, strings.NewReader(data[part:])); err != nil {
		t.Fatal(err)
	}
	if err := again.FinishUpload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readUpload(t, b, id); got != data {
		t.Fatalf("completed object has %d bytes and differs from the upload", len(got))
	}
}

// recordingClient notes what every part upload's signature covers of its
// body: the x-amz-content-sha256 header of a signed request, or
// "presigned" for a presigned URL, which S3 takes as an unsigned payload.
type recordingClient struct {
	mu     sync.Mutex
	hashes []string
}

func (c *recordingClient) Do(r *http.Request) (*http.Response, error) {
	if q := r.URL.Query(); q.Has("partNumber") {
		h := r.Header.Get("X-Amz-Content-Sha256")
		if h == "" && q.Has("X-Amz-Signature") {
			h = "presigned"
		}
		c.mu.Lock()
		c.hashes = append(c.hashes, h)
		c.mu.Unlock()
	}
	return http.DefaultClient.Do(r)
}

// Parts go to a presigned URL, with an unsigned payload, unless SignPayload
// asks for their SHA-256 in a signed request; the S3 server accepts both,
// and the object holds the upload's bytes.
func TestS3PayloadSigning(t *testing.T) {
	srv := tests3.Start(t)
	srv.Setenv(t)
	data := strings.Repeat("p", 6<<20) + "tail"
	sum := sha256.Sum256([]byte(data))
	for _, tc := range []struct {
		sign bool
		want string
	}{{false, "presigned"}, {true, hex.EncodeToString(sum[:])}} {
		t.Run(fmt.Sprintf("sign=%v", tc.sign), func(t *testing.T) {
			rec := &recordingClient{}
			b, err := New(context.Background(), Config{
				Backend: BackendS3, DataDir: t.TempDir(), CreateLockTimeout: time.Second,
				S3: S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, Prefix: fmt.Sprintf("sign-%v", tc.sign),
					SignPayload: tc.sign, httpClient: rec},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const id = "signsignsignsignsignsignsi"
			up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: int64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := up.WriteChunk(ctx, 0, strings.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := up.FinishUpload(ctx); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			hashes := slices.Clone(rec.hashes)
			rec.mu.Unlock()
			if len(hashes) != 1 || hashes[0] != tc.want {
				t.Fatalf("part uploads sent x-amz-content-sha256 %q, want one with %q", hashes, tc.want)
			}
			if got := readUpload(t, b, id); got != data {
				t.Fatalf("object of %d bytes differs from the upload", len(got))
			}
		})
	}
}

// flakyClient answers the first part uploads itself: fail is called with the
// number of the attempt and returns the answer to give instead of sending,
// or nil to send the request to the S3 server.
type flakyClient struct {
	mu       sync.Mutex
	attempts int
	fail     func(attempt int) (*http.Response, error)
}

func (c *flakyClient) Do(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Has("partNumber") {
		c.mu.Lock()
		c.attempts++
		n := c.attempts
		c.mu.Unlock()
		if res, err := c.fail(n); res != nil || err != nil {
			// As a transport does, even on errors.
			r.Body.Close()
			return res, err
		}
	}
	return http.DefaultClient.Do(r)
}

// A part upload that meets a network error or a 5xx is sent again from the
// part's start; a 4xx fails the write at once. Either way the offset is what
// S3 holds.
func TestS3PartUploadRetries(t *testing.T) {
	srv := tests3.Start(t)
	srv.Setenv(t)
	data := strings.Repeat("r", 6<<20) + "tail"
	answer := func(status int) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader("<Error/>")), Header: http.Header{}}
	}
	for _, tc := range []struct {
		name         string
		fail         func(attempt int) (*http.Response, error)
		wantAttempts int
		wantErr      bool
	}{
		{"network error, then sent", func(n int) (*http.Response, error) {
			if n == 1 {
				return nil, errors.New("connection reset")
			}
			return nil, nil
		}, 2, false},
		{"network error every time gives up", func(int) (*http.Response, error) {
			return nil, &url.Error{Op: "Put", URL: "http://s3.example/b/k?partNumber=1&X-Amz-Credential=AKIDSECRET&X-Amz-Signature=abc", Err: errors.New("connection reset")}
		}, partAttempts, true},
		{"503 twice, then sent", func(n int) (*http.Response, error) {
			if n <= 2 {
				return answer(http.StatusServiceUnavailable), nil
			}
			return nil, nil
		}, 3, false},
		{"403 is final", func(int) (*http.Response, error) { return answer(http.StatusForbidden), nil }, 1, true},
		{"500 every time gives up", func(int) (*http.Response, error) { return answer(http.StatusInternalServerError), nil }, partAttempts, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flaky := &flakyClient{fail: tc.fail}
			var logged bytes.Buffer
			b, err := New(context.Background(), Config{
				Backend: BackendS3, DataDir: t.TempDir(), CreateLockTimeout: time.Second,
				Logger: slog.New(slog.NewTextHandler(&logged, nil)),
				S3:     S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, Prefix: strings.ReplaceAll(tc.name, " ", "-"), httpClient: flaky},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const id = "retryretryretryretryretryr"
			up, err := b.Composer.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: int64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			_, werr := up.WriteChunk(ctx, 0, strings.NewReader(data))
			if flaky.attempts != tc.wantAttempts || (werr != nil) != tc.wantErr {
				t.Fatalf("%d attempts, error %v; want %d attempts, error %v", flaky.attempts, werr, tc.wantAttempts, tc.wantErr)
			}
			if tc.wantErr && !strings.Contains(logged.String(), "upload part 1") {
				t.Fatalf("the failed part is not in the log: %s", logged.String())
			}
			if strings.Contains(logged.String(), "X-Amz-") || strings.Contains(logged.String(), "AKID") {
				t.Fatalf("the log shows the presigned URL's query: %s", logged.String())
			}
			again, err := b.Upload(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			info, err := again.GetInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantErr {
				if info.Offset != 0 {
					t.Fatalf("offset %d after a failed part, want 0", info.Offset)
				}
				return
			}
			if err := again.FinishUpload(ctx); err != nil {
				t.Fatal(err)
			}
			if got := readUpload(t, b, id); got != data {
				t.Fatalf("object of %d bytes differs from the upload", len(got))
			}
		})
	}
}

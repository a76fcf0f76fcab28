package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
)

// The S3 scenario compares the gateway's doors with stock tusd's s3store
// (its default, and with DisableContentHashes) and with two clients that
// talk to the S3 server directly with aws-sdk-go-v2, from the driver's
// process: one PutObject of the whole file, and a multipart upload of 50 MiB
// parts, 10 in flight, each part sent from memory. The direct clients are
// the S3 server's own speed on this machine: what a gateway in front of it
// can at best approach.
const (
	directPartSize = 50 * MiB
	directInFlight = 10
)

// Door kinds of the direct clients; their target has no server of its own.
const (
	kindDirectPut = "s3-direct-put"
	kindDirectMPU = "s3-direct-mpu"
)

// s3Upload: one upload through versitygw per target and round.
func (b *bench) s3Upload() *scenarioResult {
	size := b.c.S3Size
	sc := &scenarioResult{Name: "s3", Primary: "MiB/s",
		Description: fmt.Sprintf("one %s upload to S3 (versitygw, posix backend, same disk); direct-*: aws-sdk-go-v2 from the driver, unsigned payload", fmtSize(size))}
	gw, err := startVersityGW(b.subdir("versitygw"))
	if err != nil {
		sc.Skipped = err.Error()
		return sc
	}
	defer gw.Stop()
	ctx := context.Background()
	var specs []targetSpec
	for _, s := range []struct {
		name, kind string
		extra      []string
	}{
		{"ug-put-s3", "ug-put", nil},
		// s3store's default part size instead of the gateway's 16 MiB.
		{"ug-put-50m-s3", "ug-put", []string{"--s3-preferred-part-size", "50MiB"}},
		{"ug-tus-1patch-s3", "ug-tus", nil},
		{"tusd-1patch-s3", "tusd", nil},
		{"tusd-nohash-s3", "tusd", []string{"--s3-disable-content-hashes"}},
	} {
		bucket := strings.ReplaceAll(s.name, "-1patch", "")
		if err := gw.CreateBucket(ctx, bucket); err != nil {
			sc.Skipped = err.Error()
			return sc
		}
		extra := []string{"--storage", "s3", "--s3-bucket", bucket, "--s3-endpoint", gw.URL, "--s3-path-style"}
		if s.kind == "tusd" {
			extra = []string{"--s3-bucket", bucket, "--s3-endpoint", gw.URL}
		}
		specs = append(specs, targetSpec{name: s.name, door: door{Kind: s.kind}, env: gw.Env(), extra: append(extra, s.extra...)})
	}
	targets, ok := b.startTargets(sc, specs)
	if !ok {
		return sc
	}
	const directBucket = "direct-s3"
	if err := gw.CreateBucket(ctx, directBucket); err != nil {
		sc.Skipped = err.Error()
		b.stopAll(sc, targets)
		return sc
	}
	direct := newDirectS3(gw)
	targets = append(targets,
		&target{Name: "direct-put-s3", Door: door{Kind: kindDirectPut}},
		&target{Name: "direct-mpu-s3", Door: door{Kind: kindDirectMPU}})
	b.rounds(targets, func(r int, t *target) {
		tr := sc.target(t.Name)
		c := newClient(1)
		var cpu0 time.Duration
		if t.Server != nil {
			cpu0 = t.Server.CPUTime()
		}
		gwCPU0 := gw.CPUTime()
		var ops0 map[string]float64
		if t.Server != nil {
			ops0 = t.Server.opSeconds(ctx)
		}
		name := fmt.Sprintf("s3-%d.bin", b.n.Add(1))
		start := time.Now()
		var res upResult
		switch t.Door.Kind {
		case kindDirectPut:
			res.Err = direct.put(ctx, directBucket, name, uint64(r), size)
		case kindDirectMPU:
			res.Err = direct.multipart(ctx, directBucket, name, uint64(r), size)
		default:
			res = upload(ctx, c, t, name, uint64(r), size)
		}
		d := time.Since(start)
		gwCPU := gw.CPUTime() - gwCPU0
		c.CloseIdleConnections()
		if res.Err != nil {
			tr.Notes = append(tr.Notes, fmt.Sprintf("round %d: %v", r, res.Err))
			tr.metric("errors", "").add(1)
			return
		}
		gib := float64(size) / GiB
		tr.metric("MiB/s", "MiB/s").add(float64(size) / MiB / d.Seconds())
		if t.Server != nil {
			tr.metric("server CPU s/GiB", "s").add((t.Server.CPUTime() - cpu0).Seconds() / gib)
		}
		tr.metric("S3 server CPU s/GiB", "s").add(gwCPU.Seconds() / gib)
		if t.Server != nil {
			// uploadgate: the seconds its storage spent in each call of the
			// upload (none for stock tusd, which has no such metric).
			ops := t.Server.opSeconds(ctx)
			for _, op := range []string{"create", "write", "finish", "get", "info"} {
				if d := ops[op] - ops0[op]; ops[op] > 0 {
					tr.metric("storage "+op+" s", "s").add(d)
				}
			}
		}
		removeObjects(gw)
	})
	b.stopAll(sc, targets)
	sc.target("versitygw").PeakRSSKiB = gw.PeakRSS()
	sc.finish([][2]string{
		{"ug-put-s3", "tusd-1patch-s3"}, {"ug-tus-1patch-s3", "tusd-1patch-s3"}, {"ug-put-50m-s3", "tusd-1patch-s3"}, {"ug-put-s3", "tusd-nohash-s3"},
		{"tusd-nohash-s3", "tusd-1patch-s3"}, {"ug-put-s3", "direct-mpu-s3"}, {"ug-put-50m-s3", "direct-mpu-s3"}, {"ug-put-s3", "direct-put-s3"},
		{"direct-put-s3", "direct-mpu-s3"},
	})
	return sc
}

// directS3 uploads to the S3 server with aws-sdk-go-v2, without a gateway.
type directS3 struct {
	client *s3.Client
	// parts are the multipart client's part buffers, allocated once.
	parts chan []byte
}

func newDirectS3(s *s3Server) *directS3 {
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  aws.NewCredentialsCache(staticCreds{s.AccessKey, s.SecretKey}),
		// The fastest request the server accepts: no checksum, and an
		// unsigned payload (no SHA-256 of the body on either side).
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		APIOptions:                 []func(*middleware.Stack) error{v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware},
	})
	d := &directS3{client: client, parts: make(chan []byte, directInFlight)}
	for range directInFlight {
		d.parts <- nil // allocated on first use
	}
	return d
}

// put sends the whole file in one PutObject, streamed from the pattern.
func (d *directS3) put(ctx context.Context, bucket, key string, seed uint64, size int64) error {
	_, err := d.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		Body: newPattern(seed, 0, size), ContentLength: aws.Int64(size),
	})
	if err != nil {
		return fmt.Errorf("PutObject: %w", err)
	}
	return nil
}

// multipart sends the file in directPartSize parts, directInFlight at once,
// each read into memory first.
func (d *directS3) multipart(ctx context.Context, bucket, key string, seed uint64, size int64) (err error) {
	mpu, err := d.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("CreateMultipartUpload: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = d.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId})
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	src := newPattern(seed, 0, size)
	var mu sync.Mutex
	var done []s3types.CompletedPart
	var wg sync.WaitGroup
	for n := int32(1); int64(n-1)*directPartSize < size; n++ {
		var buf []byte
		select {
		case buf = <-d.parts:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if buf == nil {
			buf = make([]byte, directPartSize)
		}
		k, rerr := io.ReadFull(src, buf)
		if rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			d.parts <- buf
			cancel(rerr)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { d.parts <- buf }()
			out, err := d.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId,
				PartNumber: aws.Int32(n), Body: bytes.NewReader(buf[:k]), ContentLength: aws.Int64(int64(k)),
			})
			if err != nil {
				cancel(fmt.Errorf("UploadPart %d: %w", n, err))
				return
			}
			mu.Lock()
			done = append(done, s3types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	slices.SortFunc(done, func(a, b s3types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err = d.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mpu.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: done},
	})
	if err != nil {
		return fmt.Errorf("CompleteMultipartUpload: %w", err)
	}
	return nil
}

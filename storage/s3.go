package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// S3Config configures the s3 backend. Credentials come from the standard AWS
// environment variables and files.
type S3Config struct {
	Bucket string
	// Endpoint is the URL of an S3-compatible server ("" for AWS).
	Endpoint string
	Region   string
	// PathStyle addresses buckets as /bucket/key (most S3-compatible servers).
	PathStyle bool
	// Prefix is prepended to every object key.
	Prefix string
	// MinPartSize is the smallest part s3store uploads (5 MiB on AWS;
	// default DefaultS3MinPartSize); PreferredPartSize the size it aims for
	// (default DefaultS3PreferredPartSize; raised to MinPartSize when smaller).
	MinPartSize       int64
	PreferredPartSize int64
	// Concurrency bounds the part uploads in flight across all uploads
	// (default DefaultS3Concurrency).
	Concurrency int
	// SignPayload signs the SHA-256 of every request's body, so that the S3
	// server rejects bytes changed on the way. Both sides then hash every
	// byte: a third of the gateway's CPU and a twentieth of the S3 server's
	// in a large upload (docs/performance.md). Without it the body is sent
	// as UNSIGNED-PAYLOAD, as s3store's DisableContentHashes does; TLS to an
	// https endpoint protects the bytes in transit either way.
	SignPayload bool

	// httpClient replaces the SDK's HTTP client (tests).
	httpClient aws.HTTPClient
}

// S3Config defaults, applied by New to the fields left zero.
const (
	// DefaultS3Region is the region when none is set.
	DefaultS3Region = "us-east-1"
	// DefaultS3MinPartSize is the smallest part that AWS S3 accepts.
	DefaultS3MinPartSize = 5 << 20
	// DefaultS3PreferredPartSize is the part size aimed at. Every upload in
	// transfer holds a part file of up to this size in the data directory
	// (docs/scaling.md). s3store's own default, 50 MiB, needs three times
	// the disk and measured no faster (docs/performance.md); a crash of the
	// gateway loses what it had received and not yet sent to S3, so larger
	// parts also lose more.
	DefaultS3PreferredPartSize = 16 << 20
	// DefaultS3Concurrency is how many part uploads are in flight at once.
	DefaultS3Concurrency = 10
)

func newS3(ctx context.Context, cfg Config) (*Backend, error) {
	c := cfg.S3
	if c.Bucket == "" {
		return nil, errors.New("s3 storage needs a bucket")
	}
	if c.Region == "" {
		c.Region = DefaultS3Region
	}
	if c.MinPartSize <= 0 {
		c.MinPartSize = DefaultS3MinPartSize
	}
	if c.PreferredPartSize <= 0 {
		c.PreferredPartSize = DefaultS3PreferredPartSize
	}
	c.PreferredPartSize = max(c.PreferredPartSize, c.MinPartSize)
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultS3Concurrency
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(c.Region))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	httpClient := c.httpClient
	if httpClient == nil {
		// One pool of connections for the SDK and the part uploads, with an
		// idle connection kept for each part upload in flight.
		httpClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, c.Concurrency)
		})
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// S3-compatible servers vary in their support of the newer default
		// checksums; send them only where the API requires them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.HTTPClient = httpClient
		if !c.SignPayload {
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		}
	})

	tmp := filepath.Join(cfg.DataDir, "s3-parts")
	if cfg.DataDir == "" {
		tmp = ""
	} else if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create part directory: %w", err)
	}
	api := gaplessParts{Client: client}
	if !c.SignPayload {
		api.parts = &partSender{presign: s3.NewPresignClient(client), http: httpClient}
	}
	store := s3store.New(c.Bucket, api)
	store.ObjectPrefix = c.Prefix
	store.MinPartSize = c.MinPartSize
	store.PreferredPartSize = c.PreferredPartSize
	store.TemporaryDirectory = tmp
	// s3store is a value: every option must be set before UseIn copies it.
	store.SetConcurrentPartUploads(c.Concurrency)

	ids := &s3IDs{inner: store, client: client, bucket: c.Bucket, prefix: c.Prefix}
	b := assemble(cfg, ids, func(ctx context.Context) error {
		if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(c.Bucket)}); err != nil {
			return fmt.Errorf("bucket %s is not reachable: %w", c.Bucket, err)
		}
		return nil
	})
	b.s3 = &store
	return b, nil
}

// gaplessParts guards s3store's offsets. s3store derives an upload's offset
// from the sum of its listed parts and numbers the next part len(parts)+1. It
// uploads a PATCH's parts concurrently, so when one part fails and a later one
// succeeds, the listing has a gap: the offset would count bytes that are not
// contiguous, and the completed object would silently lack the missing part.
// gaplessParts hands s3store only the parts up to the first gap, so the offset
// is the contiguous prefix, the next part overwrites the gap, and parts after
// it are left out of the completed object.
//
// Its UploadPart hands the parts to parts, when set (see partSender).
type gaplessParts struct {
	*s3.Client
	parts *partSender
}

func (g gaplessParts) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if body, ok := in.Body.(io.ReadSeeker); ok && g.parts != nil {
		return g.parts.upload(ctx, in, body)
	}
	return g.Client.UploadPart(ctx, in, opts...)
}

func (g gaplessParts) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	out, err := g.Client.ListParts(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	next := int32(1)
	if in.PartNumberMarker != nil && *in.PartNumberMarker != "" {
		m, err := strconv.ParseInt(*in.PartNumberMarker, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("part number marker %q: %w", *in.PartNumberMarker, err)
		}
		next = int32(m) + 1
	}
	for i, p := range out.Parts {
		if p.PartNumber == nil || *p.PartNumber != next {
			out.Parts = out.Parts[:i]
			out.IsTruncated = aws.Bool(false)
			break
		}
		next++
	}
	return out, nil
}

// s3IDs keeps upload IDs as the gateway chose them. tusd's s3store names an
// upload "<object>+<multipart upload ID>"; the gateway's IDs are derived from
// slots and must be predictable (retries converge) and short. s3IDs hands
// s3store the full name and everyone else the gateway's ID, reading the full
// name from the upload's .info object when needed.
type s3IDs struct {
	inner  s3store.S3Store
	client *s3.Client
	bucket string
	prefix string
}

// s3Upload is an upload of s3store under the gateway's ID.
type s3Upload struct {
	handler.Upload
	id string
}

func (u s3Upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.Upload.GetInfo(ctx)
	if err != nil {
		return info, err
	}
	info.ID = u.id
	for i, p := range info.PartialUploads {
		info.PartialUploads[i] = shortID(p)
	}
	return info, nil
}

// shortID drops s3store's "+<multipart upload ID>".
func shortID(id string) string {
	if i := strings.LastIndexByte(id, '+'); i >= 0 {
		return id[:i]
	}
	return id
}

func unwrapS3(u handler.Upload) handler.Upload {
	if w, ok := u.(s3Upload); ok {
		return w.Upload
	}
	return u
}

func (s *s3IDs) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	if info.ID == "" {
		return nil, errors.New("s3 storage needs the upload ID chosen by the gateway")
	}
	up, err := s.inner.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return s3Upload{Upload: up, id: info.ID}, nil
}

func (s *s3IDs) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	full, err := s.fullID(ctx, id)
	if err != nil {
		return nil, err
	}
	up, err := s.inner.GetUpload(ctx, full)
	if err != nil {
		return nil, err
	}
	return s3Upload{Upload: up, id: id}, nil
}

// fullID reads s3store's name of an upload from its .info object.
func (s *s3IDs) fullID(ctx context.Context, id string) (string, error) {
	key := id + ".info"
	if p := s.prefix; p != "" {
		key = strings.TrimSuffix(p, "/") + "/" + key
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		var re *awshttp.ResponseError
		if errors.As(err, &nsk) || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound) {
			return "", handler.ErrNotFound
		}
		return "", fmt.Errorf("read upload info: %w", err)
	}
	defer out.Body.Close()
	var info struct{ ID string }
	if err := json.NewDecoder(io.LimitReader(out.Body, 1<<20)).Decode(&info); err != nil {
		return "", fmt.Errorf("decode upload info: %w", err)
	}
	if shortID(info.ID) != id {
		return "", fmt.Errorf("upload info names another upload")
	}
	return info.ID, nil
}

func (s *s3IDs) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return s.inner.AsTerminatableUpload(unwrapS3(u))
}

func (s *s3IDs) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return s.inner.AsLengthDeclarableUpload(unwrapS3(u))
}

func (s *s3IDs) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return s.inner.AsServableUpload(unwrapS3(u))
}

func (s *s3IDs) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return s3Concat{inner: s.inner.AsConcatableUpload(unwrapS3(u))}
}

type s3Concat struct{ inner handler.ConcatableUpload }

func (c s3Concat) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		inner[i] = unwrapS3(p)
	}
	return c.inner.ConcatUploads(ctx, inner)
}

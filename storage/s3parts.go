package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// partSender uploads s3store's parts itself. s3store writes each part to a
// file in the data directory and hands it to UploadPart. The SDK wraps a
// request's body in readers of its own, so net/http copied every byte from
// the part file to the socket through a 32 KiB buffer: a read and a write
// system call per 32 KiB, a fifth of the gateway's CPU in a large upload
// (docs/performance.md). partSender presigns the UploadPart (with an
// unsigned payload) and sends it with net/http, which hands a body that is
// an *os.File to the kernel (sendfile) instead. net/http closes the file
// when it has sent it, as s3store expects of a request body; a second
// attempt opens the part file again.
type partSender struct {
	presign *s3.PresignClient
	http    aws.HTTPClient
}

// Attempts and the pause between them for one part: the SDK's standard
// retryer makes 3 attempts too.
const (
	partAttempts = 3
	partBackoff  = 200 * time.Millisecond
)

// partBodyLimit bounds how much of an error answer is kept.
const partBodyLimit = 1 << 10

// upload sends one part whose body can be re-read from its start.
func (p *partSender) upload(ctx context.Context, in *s3.UploadPartInput, body io.ReadSeeker) (*s3.UploadPartOutput, error) {
	size, err := partSize(body)
	if err != nil {
		return nil, fmt.Errorf("size of part %d: %w", aws.ToInt32(in.PartNumber), err)
	}
	if in.ContentLength != nil {
		size = *in.ContentLength
	}
	unsigned := *in
	unsigned.Body, unsigned.ContentLength = nil, nil
	signed, err := p.presign.PresignUploadPart(ctx, &unsigned, func(o *s3.PresignOptions) { o.Expires = 15 * time.Minute })
	if err != nil {
		return nil, fmt.Errorf("presign part %d: %w", aws.ToInt32(in.PartNumber), err)
	}
	for attempt := 1; ; attempt++ {
		var out *s3.UploadPartOutput
		retry := false
		r, err := partBody(body, attempt)
		if err == nil {
			out, retry, err = p.send(ctx, signed.Method, signed.URL, signed.SignedHeader, r, size)
		}
		if err == nil {
			return out, nil
		}
		err = fmt.Errorf("upload part %d (attempt %d of %d): %w", aws.ToInt32(in.PartNumber), attempt, partAttempts, err)
		if !retry || attempt == partAttempts || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * partBackoff):
		}
	}
}

// partBody is a part's body for an attempt, from its start. A part file is
// handed to net/http as it is (net/http sends an *os.File with sendfile and
// closes it); for another attempt, the file is opened again.
func partBody(body io.ReadSeeker, attempt int) (io.Reader, error) {
	if f, ok := body.(*os.File); ok {
		if attempt > 1 {
			return os.Open(f.Name())
		}
		_, err := f.Seek(0, io.SeekStart)
		return f, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.NopCloser(body), nil
}

// partSize is the length of a part's body.
func partSize(body io.ReadSeeker) (int64, error) {
	if f, ok := body.(*os.File); ok {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	return body.Seek(0, io.SeekEnd)
}

// send makes one attempt; retry says whether another may succeed.
func (p *partSender) send(ctx context.Context, method, url string, signed http.Header, body io.Reader, size int64) (out *s3.UploadPartOutput, retry bool, err error) {
	if size == 0 {
		// net/http reads a zero ContentLength with a body as "unknown" and
		// sends it chunked, which S3 refuses for a part: an empty part (a
		// zero-byte upload has one) goes with no body at all.
		if c, ok := body.(io.Closer); ok {
			_ = c.Close()
		}
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, false, err
	}
	req.ContentLength = size
	for k, v := range signed {
		if !strings.EqualFold(k, "Host") {
			req.Header[k] = v
		}
	}
	res, err := p.http.Do(req)
	if err != nil {
		// net/http names the URL, whose query holds the signature and the
		// access key ID: keep it out of errors and logs.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			bare := *req.URL
			bare.RawQuery = ""
			err = fmt.Errorf("%s %s: %w", ue.Op, bare.String(), ue.Err)
		}
		return nil, true, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, partBodyLimit))
		return nil, res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests,
			fmt.Errorf("S3 answered %s: %s", res.Status, strings.TrimSpace(string(msg)))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, partBodyLimit))
	etag := res.Header.Get("ETag")
	if etag == "" {
		return nil, false, errors.New("S3 answered without an ETag")
	}
	return &s3.UploadPartOutput{ETag: aws.String(etag)}, false, nil
}

package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// patternBlock is the block the test data repeats; each 1 MiB block starts
// with its own index and the stream's seed, so a shifted or repeated block
// never compares equal.
const patternBlock = MiB

var patternBase = func() []byte {
	b := make([]byte, patternBlock)
	r := mrand.NewChaCha8([32]byte{'u', 'l', 'b', 'e', 'n', 'c', 'h'})
	_, _ = r.Read(b)
	return b
}()

// pattern is a deterministic, cheap stream of n bytes starting at offset off
// of the stream with the given seed.
type pattern struct {
	seed   uint64
	off, n int64
}

func newPattern(seed uint64, off, n int64) *pattern { return &pattern{seed: seed, off: off, n: n} }

func (p *pattern) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	total := 0
	for len(b) > 0 {
		in := p.off % patternBlock
		k := copy(b, patternBase[in:])
		// Stamp the block header (16 bytes: index, seed) where it falls in b.
		if in < 16 {
			var hdr [16]byte
			binary.BigEndian.PutUint64(hdr[:8], uint64(p.off/patternBlock))
			binary.BigEndian.PutUint64(hdr[8:], p.seed)
			copy(b, hdr[in:])
		}
		b = b[k:]
		p.off += int64(k)
		p.n -= int64(k)
		total += k
	}
	return total, nil
}

// patternSHA256 is the SHA-256 of n bytes of the stream with seed.
func patternSHA256(seed uint64, n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, newPattern(seed, 0, n))
	return hex.EncodeToString(h.Sum(nil))
}

// newClient is an HTTP client with large write buffers and enough idle
// connections for conns concurrent requests to one host.
func newClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 * KiB,
		ReadBufferSize:      64 * KiB,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// door is a way to upload a file: the kind of server and the protocol used.
type door struct {
	// Kind: "copy", "ug-put", "ug-tus" or "tusd".
	Kind string
	// Chunk is the PATCH size for tus doors (0: the whole file in one PATCH).
	Chunk int64
}

// target is a door on a running server.
type target struct {
	Name   string
	Door   door
	Server *proc
	Secret string // slot secret of an uploadgate server
}

// result of one upload.
type upResult struct {
	Status   int
	Location string // tus upload URL, or the slot's GET URL
	PutURL   string // slot URL of uploadgate uploads
	Err      error
}

var ctypeOctet = "application/octet-stream"

// signSlot mints a v2 slot for an uploadgate server.
func signSlot(t *target, name string, size int64) (auth.SignedSlot, error) {
	return auth.SignSlot(t.Secret, auth.SignRequest{
		BaseURL: t.Server.URL + "/upload/", Name: name, Size: size, Type: &ctypeOctet, Protocol: auth.ProtoV2,
	})
}

// upload sends size bytes of the stream with seed through t's door.
func upload(ctx context.Context, c *http.Client, t *target, name string, seed uint64, size int64) upResult {
	switch t.Door.Kind {
	case "copy":
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, t.Server.URL+"/copy/"+name, newPattern(seed, 0, size))
		req.ContentLength = size
		return finish(c.Do(req))
	case "ug-put":
		slot, err := signSlot(t, name, size)
		if err != nil {
			return upResult{Err: err}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, slot.PutURL, newPattern(seed, 0, size))
		req.ContentLength = size
		req.Header.Set("Content-Type", ctypeOctet)
		r := finish(c.Do(req))
		r.Location, r.PutURL = slot.GetURL, slot.PutURL
		if r.Err == nil && r.Status != http.StatusCreated {
			r.Err = fmt.Errorf("PUT: status %d", r.Status)
		}
		return r
	case "tusd-post":
		// tus creation-with-upload: the body in the POST, as the PUT door
		// passes a PUT to tusd.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.Server.URL+"/files/", newPattern(seed, 0, size))
		req.ContentLength = size
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte(name))+",filetype "+base64.StdEncoding.EncodeToString([]byte(ctypeOctet)))
		res, err := c.Do(req)
		if err != nil {
			return upResult{Err: err}
		}
		drain(res)
		r := upResult{Status: res.StatusCode, Location: res.Header.Get("Location")}
		if off := res.Header.Get("Upload-Offset"); res.StatusCode != http.StatusCreated || off != strconv.FormatInt(size, 10) {
			r.Err = fmt.Errorf("POST with body: status %d, Upload-Offset %q", res.StatusCode, off)
		}
		return r
	case "ug-tus", "tusd":
		loc, putURL, err := tusCreate(ctx, c, t, name, size)
		if err != nil {
			return upResult{Err: err}
		}
		r := tusSend(ctx, c, loc, seed, 0, size, t.Door.Chunk)
		r.Location, r.PutURL = loc, putURL
		return r
	}
	return upResult{Err: fmt.Errorf("unknown door %q", t.Door.Kind)}
}

// tusCreate creates a tus upload and returns its URL (and the slot URL).
func tusCreate(ctx context.Context, c *http.Client, t *target, name string, size int64) (string, string, error) {
	u := t.Server.URL + "/files/"
	var putURL string
	if t.Door.Kind == "ug-tus" {
		slot, err := signSlot(t, name, size)
		if err != nil {
			return "", "", err
		}
		u, putURL = slot.PutURL, slot.PutURL
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte(name))+",filetype "+base64.StdEncoding.EncodeToString([]byte(ctypeOctet)))
	res, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	drain(res)
	if res.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("POST: status %d", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = t.Server.URL + loc
	}
	return loc, putURL, nil
}

// tusSend PATCHes bytes [from, size) of the stream in chunks (0: one PATCH).
func tusSend(ctx context.Context, c *http.Client, loc string, seed uint64, from, size, chunk int64) upResult {
	if chunk <= 0 {
		chunk = size - from
	}
	off := from
	for off < size || (size == 0 && off == 0 && from == 0) {
		n := min(chunk, size-off)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, newPattern(seed, off, n))
		req.ContentLength = n
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		res, err := c.Do(req)
		if err != nil {
			return upResult{Err: err}
		}
		drain(res)
		if res.StatusCode != http.StatusNoContent {
			return upResult{Status: res.StatusCode, Err: fmt.Errorf("PATCH at %d: status %d", off, res.StatusCode)}
		}
		next, err := strconv.ParseInt(res.Header.Get("Upload-Offset"), 10, 64)
		if err != nil || next != off+n {
			return upResult{Status: res.StatusCode, Err: fmt.Errorf("PATCH at %d: offset %q, want %d", off, res.Header.Get("Upload-Offset"), off+n)}
		}
		off = next
		if size == 0 {
			break
		}
	}
	return upResult{Status: http.StatusNoContent}
}

// tusHead returns an upload's offset.
func tusHead(ctx context.Context, c *http.Client, u string, h http.Header) (int, int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	drain(res)
	off, _ := strconv.ParseInt(res.Header.Get("Upload-Offset"), 10, 64)
	return res.StatusCode, off, nil
}

func finish(res *http.Response, err error) upResult {
	if err != nil {
		return upResult{Err: err}
	}
	drain(res)
	r := upResult{Status: res.StatusCode}
	if res.StatusCode >= 300 {
		r.Err = fmt.Errorf("status %d", res.StatusCode)
	}
	return r
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
}

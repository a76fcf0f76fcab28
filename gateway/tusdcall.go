package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
)

// captured is tusd's answer to a request the gateway made on a client's
// behalf (the PUT door speaks XEP-0363 to the client and tus to tusd).
type captured struct {
	real   http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captured) Header() http.Header { return c.header }

func (c *captured) WriteHeader(code int) {
	if code < 200 {
		// An informational response goes to the client as is.
		h := c.real.Header()
		for k, v := range c.header {
			h[k] = v
		}
		c.real.WriteHeader(code)
		for k := range c.header {
			h.Del(k)
		}
		return
	}
	if c.status == 0 {
		c.status = code
	}
}

func (c *captured) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body.Len() < 4096 {
		c.body.Write(p[:min(len(p), 4096-c.body.Len())])
	}
	return len(p), nil
}

// Unwrap lets tusd's http.ResponseController reach the connection (read deadlines).
func (c *captured) Unwrap() http.ResponseWriter { return c.real }

func (c *captured) offset() (int64, bool) {
	v := c.header.Get("Upload-Offset")
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// tusCall describes a tus request the gateway makes on a client's behalf.
type tusCall struct {
	method string
	id     string // "" for a creation
	header map[string]string
	body   io.Reader
	length int64
	ctx    context.Context
}

// callTusd runs tusd on a request built from the client's request r (its
// connection, context and remote address) and captures the answer.
func (g *Gateway) callTusd(w http.ResponseWriter, r *http.Request, call tusCall) *captured {
	ctx := call.ctx
	if ctx == nil {
		ctx = r.Context()
	}
	r2 := r.Clone(ctx)
	r2.Method = call.method
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = call.id, "", ""
	r2.URL = &u
	for _, h := range []string{"Content-Range", "Content-Type", "Upload-Concat", "Upload-Defer-Length", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Draft-Interop-Version", "Upload-Complete", "Upload-Incomplete"} {
		r2.Header.Del(h)
	}
	r2.Header.Set("Tus-Resumable", tusVersion)
	for k, v := range call.header {
		r2.Header.Set(k, v)
	}
	if call.body != nil {
		r2.Body = io.NopCloser(call.body)
		r2.ContentLength = call.length
		r2.Header.Set("Content-Type", "application/offset+octet-stream")
	} else {
		r2.Body = http.NoBody
		r2.ContentLength = 0
	}
	c := &captured{real: w, header: http.Header{}}
	g.tusdHandler(call.method).ServeHTTP(c, r2)
	return c
}

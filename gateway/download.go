package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/hooks"
	"github.com/uploadgate/uploadgate/auth"
)

// inlineTypes are shown in the browser; every other type is downloaded as an
// attachment. Types a browser would run (HTML, SVG, XML, JavaScript, PDF…)
// are never inline.
var inlineTypes = map[string]bool{
	"text/plain": true,
	"image/png":  true, "image/jpeg": true, "image/gif": true, "image/webp": true, "image/avif": true, "image/bmp": true, "image/heic": true, "image/heif": true,
	"audio/ogg": true, "audio/mpeg": true, "audio/mp4": true, "audio/aac": true, "audio/webm": true, "audio/wav": true, "audio/x-wav": true, "audio/flac": true, "audio/opus": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
}

// downloadCSP forbids everything a hostile file could do when opened in a browser.
const downloadCSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"

// serveDownload answers GET and HEAD for a slot's file (no signature: the GET
// URL is a capability shared in chats). Only complete files are served.
func (g *Gateway) serveDownload(w http.ResponseWriter, r *http.Request, sp slotPath) {
	ctx := r.Context()
	id, err := g.slotUploadID(ctx, sp.Path)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	if g.hooks.on(hooks.HookPreFinish) {
		// With a pre-finish hook (a virus scan, say) the last byte is stored
		// before the hook has answered: the file is served only once its
		// session is marked complete, which happens after the hook accepted.
		if s, err := g.cfg.Sessions.AuthorizeSlot(ctx, sp.Path); (err == nil || errors.Is(err, auth.ErrSessionExpired)) && !s.Complete {
			g.writeRefusal(w, r, refuse(http.StatusNotFound, "upload not found"))
			return
		}
	}
	up, err := g.cfg.Storage.Upload(ctx, id)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	if info.SizeIsDeferred || info.Offset != info.Size {
		g.writeRefusal(w, r, refuse(http.StatusNotFound, "upload not found"))
		return
	}
	name := sp.Segments[len(sp.Segments)-1]
	ctype, disposition := downloadType(info.MetaData["filetype"], name)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", disposition)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", downloadCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex")
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("ETag", etag(id, info.Size))

	// A flood of small or overlapping ranges is answered with the whole file.
	r = limitRanges(r, info.Size)
	// The conditions on the ETag are decided here for every store.
	r, done := etagConditionals(w, r, h.Get("ETag"))
	if done {
		return
	}
	if g.cfg.Storage.ServesContent() {
		// Object storage answers Range and conditional requests itself and
		// streams the object without the gateway buffering it.
		sw := &storeWriter{ResponseWriter: w, keep: h.Clone()}
		if err := g.cfg.Storage.Composer.ContentServer.AsServableUpload(up).ServeContent(ctx, sw, r); err != nil && !sw.wrote {
			sw.restore()
			g.writeRefusal(w, r, refusalFor(err))
		}
		return
	}
	rc, err := up.GetReader(ctx)
	if err != nil {
		g.writeRefusal(w, r, refusalFor(err))
		return
	}
	defer rc.Close()
	modTime := time.Time{}
	if f, ok := rc.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			modTime = fi.ModTime()
		}
	}
	if rs, ok := rc.(io.ReadSeeker); ok {
		// http.ServeContent does Range, If-Range, If-None-Match (ETag) and
		// If-Modified-Since, and answers HEAD without a body.
		http.ServeContent(w, r, "", modTime, rs)
		return
	}
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, rc)
}

// A file must download the same way from every store. The object store
// answers with its own ETag, Content-Type (binary/octet-stream for an object
// stored without one), Cache-Control, and 204 for an empty object; the
// gateway's own headers and http.ServeContent's statuses (what the disk store
// answers) are what the client gets instead.

// etagConditionals evaluates the conditions on the gateway's ETag as
// http.ServeContent does (RFC 9110 section 13.2.2), for every store: the
// object store would compare them with its own ETag. It answers 304 or 412 itself (done is
// true), or returns the request to forward to the store without the
// conditions it has decided: a time condition that an ETag condition
// overrides, and a Range whose If-Range does not match.
func etagConditionals(w http.ResponseWriter, r *http.Request, tag string) (*http.Request, bool) {
	im, inm, ir := r.Header.Get("If-Match"), r.Header.Get("If-None-Match"), r.Header.Get("If-Range")
	if im == "" && inm == "" && ir == "" {
		return r, false
	}
	if im != "" && !etagListMatches(im, tag, false) {
		w.WriteHeader(http.StatusPreconditionFailed)
		return r, true
	}
	if inm != "" && etagListMatches(inm, tag, true) {
		// As http.ServeContent's 304.
		h := w.Header()
		h.Del("Content-Type")
		h.Del("Content-Length")
		h.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return r, true
	}
	r = r.Clone(r.Context())
	if im != "" {
		r.Header.Del("If-Match")
		r.Header.Del("If-Unmodified-Since")
	}
	if inm != "" {
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Modified-Since")
	}
	if ir != "" {
		// An If-Range that is not our (strong) ETag asks for the whole file.
		if ir != tag {
			r.Header.Del("Range")
		}
		r.Header.Del("If-Range")
	}
	return r, false
}

// etagListMatches reports whether a list of entity tags (If-Match,
// If-None-Match) holds tag or "*"; weak compares W/ tags too.
func etagListMatches(list, tag string, weak bool) bool {
	for _, t := range strings.Split(list, ",") {
		t = textproto.TrimString(t)
		if t == "*" || t == tag || (weak && strings.TrimPrefix(t, "W/") == tag) {
			return true
		}
	}
	return false
}

// storeWriter passes the object store's answer through with the gateway's
// headers: the ones set before the store answered win over the store's, and
// an empty file is 200, not 204.
type storeWriter struct {
	http.ResponseWriter
	keep  http.Header
	wrote bool
}

// storeOwned are the headers the store sets that the gateway sets itself.
var storeOwned = []string{"Content-Type", "Content-Disposition", "Cache-Control", "ETag", "Expires", "Content-Encoding", "Content-Language"}

func (s *storeWriter) restore() {
	h := s.ResponseWriter.Header()
	for _, k := range storeOwned {
		k = http.CanonicalHeaderKey(k)
		if v, ok := s.keep[k]; ok {
			h[k] = v
		} else {
			h.Del(k)
		}
	}
}

func (s *storeWriter) WriteHeader(code int) {
	if s.wrote {
		return
	}
	s.wrote = true
	s.restore()
	if code == http.StatusNoContent {
		code = http.StatusOK
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *storeWriter) Write(p []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *storeWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// maxRanges is the most byte ranges a download may ask for in one request
// (nginx's max_ranges). Each range of a multipart/byteranges answer costs
// about 100 bytes of part headers, so 1,000 one-byte ranges of a small file
// would answer many times the file's size.
const maxRanges = 16

// limitRanges returns r without its Range (and If-Range) header when the
// ranges asked for are more than maxRanges, overlap or are out of order: such
// a request is answered 200 with the whole file, never more than the file
// plus the part headers of at most maxRanges parts. Any other request is
// returned as it is; a malformed Range is left to the server, which refuses
// it as before.
func limitRanges(r *http.Request, size int64) *http.Request {
	rh := r.Header.Get("Range")
	if rh == "" || acceptableRanges(rh, size) {
		return r
	}
	r = r.Clone(r.Context())
	r.Header.Del("Range")
	r.Header.Del("If-Range")
	return r
}

// acceptableRanges reports whether a Range header asks for at most maxRanges
// ranges which, where the file of size bytes holds them, come in ascending
// order without overlapping. A header that does not parse is acceptable here.
func acceptableRanges(header string, size int64) bool {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return true
	}
	specs := strings.Split(spec, ",")
	if len(specs) > maxRanges {
		return false
	}
	prevEnd := int64(-1)
	for _, rs := range specs {
		rs = textproto.TrimString(rs)
		if rs == "" {
			continue
		}
		start, end, ok := resolveRange(rs, size)
		if !ok {
			return true
		}
		if start >= size {
			continue // unsatisfiable: not served
		}
		if start <= prevEnd {
			return false
		}
		prevEnd = end
	}
	return true
}

// resolveRange is the first and last byte of a file of size bytes that one
// range ("a-b", "a-" or "-n") names; ok is false when it does not parse. The
// first byte is size or more when the file does not hold the range.
func resolveRange(rs string, size int64) (start, end int64, ok bool) {
	first, last, found := strings.Cut(rs, "-")
	if !found {
		return 0, 0, false
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		if n == 0 {
			return size, size, true
		}
		return max(size-n, 0), size - 1, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if last == "" {
		return start, size - 1, true
	}
	end, err = strconv.ParseInt(last, 10, 64)
	if err != nil || end < start {
		return 0, 0, false
	}
	return start, min(end, size-1), true
}

// downloadType is the Content-Type and Content-Disposition of a file.
func downloadType(filetype, name string) (string, string) {
	ctype := "application/octet-stream"
	inline := false
	if mt, params, err := mime.ParseMediaType(filetype); err == nil {
		ctype = mime.FormatMediaType(mt, params)
		inline = inlineTypes[mt]
		if ctype == "" {
			ctype = "application/octet-stream"
		}
	}
	disp := "attachment"
	if inline {
		disp = "inline"
	}
	return ctype, disp + "; " + dispositionFilename(name)
}

// dispositionFilename encodes a file name for Content-Disposition (RFC 6266):
// an ASCII fallback and, for other names, the UTF-8 filename* form.
func dispositionFilename(name string) string {
	ascii := true
	var fb strings.Builder
	for _, c := range name {
		switch {
		case c < 0x20 || c == 0x7f:
			ascii = false
			fb.WriteByte('_')
		case c >= 0x80:
			ascii = false
			fb.WriteByte('_')
		case c == '"' || c == '\\':
			fb.WriteByte('\\')
			fb.WriteRune(c)
		default:
			fb.WriteRune(c)
		}
	}
	out := `filename="` + fb.String() + `"`
	if !ascii {
		out += "; filename*=UTF-8''" + strings.ReplaceAll(url.PathEscape(name), "'", "%27")
	}
	return out
}

// etag identifies a complete file's bytes; complete files never change.
func etag(id string, size int64) string {
	sum := sha256.Sum256([]byte("etag\x00" + id))
	return `"` + hex.EncodeToString(sum[:12]) + "-" + strconv.FormatInt(size, 10) + `"`
}

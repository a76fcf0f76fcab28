package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
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

	if g.cfg.Storage.ServesContent() {
		// Object storage answers Range and conditional requests itself and
		// streams the object without the gateway buffering it.
		if err := g.cfg.Storage.Composer.ContentServer.AsServableUpload(up).ServeContent(ctx, w, r); err != nil {
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

package gateway

import (
	"net/http"
	"strings"
)

// The headers browsers may send and read. Locations and offsets must be
// readable by tus-js-client and Uppy.
const (
	corsAllowMethods  = "POST, HEAD, PATCH, PUT, OPTIONS, GET, DELETE"
	corsAllowHeaders  = "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Content-Type, Content-Range, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version, Upload-Resume-From"
	corsExposeHeaders = "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Expires, Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version, Upload-Limit, Range, Content-Range, Content-Length, Content-Disposition, ETag, Retry-After"
	corsMaxAge        = "86400"
)

// cors answers browsers for the configured origins. No cookies are used, so
// credentials are never allowed. A request from an origin that is not allowed
// gets no CORS headers (the browser then hides the response) but is otherwise
// served: CORS protects browser users, not the server.
type cors struct {
	any     bool
	origins map[string]bool
}

func newCORS(origins []string) cors {
	c := cors{origins: map[string]bool{}}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			c.any = true
		} else if o != "" {
			c.origins[strings.ToLower(o)] = true
		}
	}
	return c
}

func (c cors) allowed(origin string) bool {
	return c.any || c.origins[strings.ToLower(origin)]
}

// apply sets the CORS headers of a response; a preflight (OPTIONS) then goes on
// to its route, which answers it.
func (c cors) apply(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	if origin == "" || !c.allowed(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		return
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

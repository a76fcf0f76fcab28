package gateway

import (
	"errors"
	"net/url"
	"strings"
)

// slotPath is the part of a request URL that names a slot.
type slotPath struct {
	// Path is the percent-decoded slot path after the upload base ("dir/name").
	Path string
	// URLPath is the decoded URL path including the base ("/upload/dir/name").
	URLPath string
	// Segments are the decoded segments of Path.
	Segments []string
}

var errBadPath = errors.New("malformed upload path")

// parseSlotPath extracts the slot path from a request URL under base. Only
// plain segments are accepted: no empty, "." or ".." segments (also when
// percent-encoded), no encoded slash, no backslash, no NUL or other control
// characters, at least two segments (a directory and a file name).
func parseSlotPath(u *url.URL, base string) (slotPath, error) {
	raw := u.EscapedPath()
	rest, ok := strings.CutPrefix(raw, base)
	if !ok || rest == "" {
		return slotPath{}, errBadPath
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return slotPath{}, errBadPath
	}
	segs := make([]string, len(parts))
	for i, p := range parts {
		seg, err := url.PathUnescape(p)
		if err != nil || !safeSegment(seg) {
			return slotPath{}, errBadPath
		}
		segs[i] = seg
	}
	path := strings.Join(segs, "/")
	return slotPath{Path: path, URLPath: strings.TrimSuffix(base, "/") + "/" + path, Segments: segs}, nil
}

func safeSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

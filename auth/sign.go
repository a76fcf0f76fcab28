package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/golang-jwt/jwt/v5"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultSlotTTL is how long a minted v3 or JWT slot stays valid when SignRequest.TTL is zero.
const DefaultSlotTTL = 5 * time.Minute

// signSubject is the sub claim of JWT slots minted by SignSlot.
const signSubject = "uploadgate-sign"

// SignRequest describes a slot to mint the way an XMPP server would.
type SignRequest struct {
	// BaseURL is the upload base the slot lives under, e.g.
	// "http://127.0.0.1:8080/upload/" (the trailing slash is optional).
	BaseURL string
	// Dir is the random directory of the slot; a random UUIDv4-style string when
	// empty. It may have several segments ("<user hash>/<random>", as ejabberd
	// signs) except for JWT slots, whose slot claim is exactly one segment.
	Dir string
	// Name is the file name: not empty, no "/".
	Name string
	// Size is the file size in bytes.
	Size int64
	// Type is the content type the client announced; nil when it announced none.
	Type *string
	// Protocol selects the signature scheme.
	Protocol Protocol
	// TTL is how long a v3 or JWT slot stays valid (DefaultSlotTTL when zero).
	TTL time.Duration
	// Now is the signing time (time.Now() when zero).
	Now time.Time
	// FileExpires is when the stored file is to be deleted (the JWT claim
	// expires, Prosody's http_file_share_expires_after); zero for none.
	FileExpires time.Time
}

// SignedSlot is a minted slot: what an XMPP server would hand its client.
type SignedSlot struct {
	// PutURL is the URL to upload to, with the signature in its query (none for JWT).
	PutURL string
	// GetURL is the download URL.
	GetURL string
	// Authorization is the header value to send with the PUT: "Bearer <JWT>" for
	// JWT slots, "" otherwise.
	Authorization string
	// Path is the decoded slot path, Dir + "/" + Name.
	Path string
}

// SignSlot mints a slot signed with secret, percent-encoding the path the way
// Prosody's util.http.urlencode does (every byte outside [A-Za-z0-9.~_-] as
// lower-case %xx).
func SignSlot(secret string, req SignRequest) (SignedSlot, error) {
	if secret == "" {
		return SignedSlot{}, errors.New("sign slot: empty secret")
	}
	if err := checkSegment(req.Name); err != nil {
		return SignedSlot{}, fmt.Errorf("sign slot: file name: %w", err)
	}
	if req.Size < 0 {
		return SignedSlot{}, fmt.Errorf("sign slot: negative size %d", req.Size)
	}
	if req.TTL < 0 {
		return SignedSlot{}, fmt.Errorf("sign slot: negative TTL %s", req.TTL)
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultSlotTTL
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	base, err := parseBaseURL(req.BaseURL)
	if err != nil {
		return SignedSlot{}, fmt.Errorf("sign slot: %w", err)
	}

	dir := req.Dir
	if dir == "" {
		if dir, err = randomUUID(); err != nil {
			return SignedSlot{}, fmt.Errorf("sign slot: %w", err)
		}
	}
	dirSegments := strings.Split(dir, "/")
	if req.Protocol == ProtoJWT && len(dirSegments) != 1 {
		return SignedSlot{}, fmt.Errorf("sign slot: a jwt slot directory is one path segment, got %q", dir)
	}
	var encoded []string
	for _, seg := range append(dirSegments, req.Name) {
		if err := checkSegment(seg); err != nil {
			return SignedSlot{}, fmt.Errorf("sign slot: directory: %w", err)
		}
		encoded = append(encoded, prosodyURLEncode(seg))
	}
	slotPath := dir + "/" + req.Name
	getURL := base.String() + strings.Join(encoded, "/")
	contentType := DefaultContentType
	if req.Type != nil {
		contentType = *req.Type
	}

	out := SignedSlot{PutURL: getURL, GetURL: getURL, Path: slotPath}
	key := []byte(secret)
	switch req.Protocol {
	case ProtoV1:
		out.PutURL += "?" + paramV1 + "=" + hex.EncodeToString(computeMAC(key, v1Message(slotPath, req.Size)))
	case ProtoV2, ProtoToken:
		param := paramV2
		if req.Protocol == ProtoToken {
			param = paramToken
		}
		out.PutURL += "?" + param + "=" + hex.EncodeToString(computeMAC(key, v2Message(slotPath, req.Size, contentType)))
	case ProtoV3:
		expires := strconv.FormatInt(now.Add(ttl).Unix(), 10)
		mac := computeMAC(key, v3Message(expires, base.Path+slotPath))
		out.PutURL += "?" + paramV3 + "=" + hex.EncodeToString(mac) + "&" + paramExpires + "=" + expires
	case ProtoJWT:
		size := req.Size
		var fileExpires *jwt.NumericDate
		if !req.FileExpires.IsZero() {
			fileExpires = numericDate(req.FileExpires)
		}
		token, err := signJWT(secret, fileShareClaims{
			Slot:     dir,
			IssuedAt: numericDate(now),
			Expiry:   numericDate(now.Add(ttl)),
			Subject:  signSubject,
			Filename: req.Name,
			Filesize: &size,
			Filetype: &contentType,
			Expires:  fileExpires,
		})
		if err != nil {
			return SignedSlot{}, fmt.Errorf("sign slot: %w", err)
		}
		out.Authorization = "Bearer " + token
	default:
		return SignedSlot{}, fmt.Errorf("sign slot: unknown protocol %q", req.Protocol)
	}
	return out, nil
}

// parseBaseURL parses an absolute upload base URL and gives its path a trailing slash.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("base URL %q is not absolute", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("base URL %q has a query or fragment", raw)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u, nil
}

// checkSegment rejects path segments that no XMPP server signs and no gateway accepts.
func checkSegment(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a name", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("%q contains '/' or NUL", s)
	}
	return nil
}

// prosodyURLEncode percent-encodes like Prosody's util.http.urlencode: every
// byte outside [A-Za-z0-9.~_-] becomes lower-case %xx.
func prosodyURLEncode(s string) string {
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '~' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

// randomUUID returns a random UUID version 4 in its text form, like Prosody's util.uuid.generate.
func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random slot directory: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

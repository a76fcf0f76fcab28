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
	"unicode/utf8"
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
	// Each segment follows the rules for names (see SignSlot).
	Dir string
	// Name is the file name, one path segment (see SignSlot for the rules).
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
	// Subject is the uploader a JWT slot names (its sub claim, a JID);
	// "uploadgate-sign" when empty.
	Subject string
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
//
// It refuses every slot that the gateway would refuse for the shape of its
// path, with an error naming the file name or directory segment and the
// reason, so that no slot is minted that can never be used. The file name and
// each segment of Dir must be non-empty, not "." or "..", at most 1024 bytes
// long, and free of '/', backslash and control characters (bytes below 0x20
// and 0x7f). For JWT slots Dir is one segment, and Dir and Name must also be
// valid UTF-8: the claims are JSON, which carries an invalid byte as U+FFFD,
// so the signed slot and filename claims would no longer equal the path. The
// other protocols sign the bytes of the path, and the gateway percent-decodes
// the path without requiring UTF-8, so for them any other byte is allowed: a
// name that is not UTF-8 (which no XMPP server hands out, XMPP being UTF-8
// only) still uploads and downloads at its slot.
//
// The length of the whole URL is not bounded here: a directory of many long
// segments can still exceed the HTTP server's limit on the request line and
// headers (64 KiB in uploadgate serve) or a proxy's.
func SignSlot(secret string, req SignRequest) (SignedSlot, error) {
	if secret == "" {
		return SignedSlot{}, errors.New("sign slot: empty secret")
	}
	needUTF8 := req.Protocol == ProtoJWT
	if err := checkSegment(req.Name, needUTF8); err != nil {
		return SignedSlot{}, fmt.Errorf("sign slot: file name %s: %w", quoteSegment(req.Name), err)
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
		return SignedSlot{}, fmt.Errorf("sign slot: directory %s: a jwt slot directory is one path segment", quoteSegment(dir))
	}
	var encoded []string
	for _, seg := range dirSegments {
		if err := checkSegment(seg, needUTF8); err != nil {
			if len(dirSegments) == 1 {
				return SignedSlot{}, fmt.Errorf("sign slot: directory %s: %w", quoteSegment(seg), err)
			}
			return SignedSlot{}, fmt.Errorf("sign slot: directory %s: segment %s: %w", quoteSegment(dir), quoteSegment(seg), err)
		}
		encoded = append(encoded, prosodyURLEncode(seg))
	}
	encoded = append(encoded, prosodyURLEncode(req.Name))
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
		sub := req.Subject
		if sub == "" {
			sub = signSubject
		}
		token, err := signJWT(secret, fileShareClaims{
			Slot:     dir,
			IssuedAt: numericDate(now),
			Expiry:   numericDate(now.Add(ttl)),
			Subject:  sub,
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

// maxSegmentBytes is the longest path segment the gateway accepts.
const maxSegmentBytes = 1024

// checkSegment refuses a path segment the gateway refuses (see SignSlot);
// needUTF8 also refuses invalid UTF-8, for segments that go into JWT claims.
// The error states the reason only; the caller names the segment.
func checkSegment(s string, needUTF8 bool) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case s == "." || s == "..":
		return errors.New("is a dot segment, not a name")
	case len(s) > maxSegmentBytes:
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxSegmentBytes)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/':
			return fmt.Errorf("contains '/' (byte %d)", i)
		case c == '\\':
			return fmt.Errorf("contains '\\' (byte %d)", i)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("contains the control character 0x%02x (byte %d)", c, i)
		}
	}
	if needUTF8 {
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return fmt.Errorf("is not valid UTF-8 (byte %d), which a JWT claim cannot carry unchanged", i)
			}
			i += n
		}
	}
	return nil
}

// quoteSegment quotes a segment for an error message, cut short when long.
func quoteSegment(s string) string {
	const maxQuoted = 64
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
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

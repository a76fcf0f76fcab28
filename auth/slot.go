package auth

import (
	"errors"
	"net/url"
	"time"
)

// Protocol names a slot signature scheme.
type Protocol string

// The slot protocols uploadgate verifies.
const (
	// ProtoV1 is mod_http_upload_external's "v": hex HMAC-SHA256 of "<path> <size>".
	ProtoV1 Protocol = "v1"
	// ProtoV2 is mod_http_upload_external's "v2": hex HMAC-SHA256 of "<path>\0<size>\0<type>".
	ProtoV2 Protocol = "v2"
	// ProtoToken is Metronome's "token": the same bytes as v2 under another query name.
	ProtoToken Protocol = "token"
	// ProtoV3 is the expiring form: hex HMAC-SHA256 of "PUT\n<expires>\n<URL path>", query v3 and expires.
	ProtoV3 Protocol = "v3"
	// ProtoJWT is Prosody mod_http_file_share's external mode: Authorization: Bearer <HS256 JWT>.
	ProtoJWT Protocol = "jwt"
)

// Protocols lists every protocol, for metrics labels and documentation.
var Protocols = []Protocol{ProtoV1, ProtoV2, ProtoToken, ProtoV3, ProtoJWT}

// DefaultContentType is the type that v2 signs when the slot request named none.
const DefaultContentType = "application/octet-stream"

// SlotRequest holds what the gateway read from an HTTP request that claims a slot.
type SlotRequest struct {
	// Path is the slot path: the percent-decoded URL path after the upload base,
	// e.g. "4a8e…/holiday photo.jpg". The gateway has already rejected unsafe paths.
	Path string
	// URLPath is the whole percent-decoded URL path including the upload base,
	// e.g. "/upload/4a8e…/holiday photo.jpg"; v3 signs it.
	URLPath string
	// Query is the request's parsed query string.
	Query url.Values
	// Authorization is the raw Authorization header ("" when absent).
	Authorization string
	// Size is the size the request claims for the whole file (Content-Length of a
	// PUT, Upload-Length of a tus creation); -1 when the request does not say.
	Size int64
	// ContentType is the type the request claims for the file; nil when absent
	// (v2 then verifies DefaultContentType), non-nil even when empty.
	ContentType *string
}

// Slot is a verified slot.
type Slot struct {
	Protocol Protocol
	// Path is the slot path as signed (decoded, without the upload base).
	Path string
	// Size is the signed size: the request's size for v1, v2 and token (it is inside
	// the MAC), the filesize claim for JWT, and -1 for v3, which signs no size.
	Size int64
	// Type is the signed content type for v2, token and JWT; "" otherwise.
	Type string
	// NotAfter is when the slot itself expires (v3 expires, JWT exp); zero if never.
	NotAfter time.Time
	// FileExpires is when the stored file should be deleted (JWT expires claim); zero if unset.
	FileExpires time.Time
	// Subject is the uploader (JWT sub), "" when the protocol does not carry one.
	Subject string
	// SignatureHash is SHA-256 of the signature as received; the signature itself is never kept.
	SignatureHash [32]byte
}

// Slot verification errors. The gateway maps each to an HTTP status in one table.
var (
	// ErrNoSignature: the request carries no slot signature at all.
	ErrNoSignature = errors.New("missing slot signature")
	// ErrMalformedSignature: a signature parameter is present but not well-formed (bad hex, bad expires).
	ErrMalformedSignature = errors.New("malformed slot signature")
	// ErrBadSignature: the signature does not match under any configured secret.
	ErrBadSignature = errors.New("invalid slot signature")
	// ErrBearerRequired: an Authorization header is present but is not a well-formed Bearer JWT.
	ErrBearerRequired = errors.New("missing or malformed bearer token")
	// ErrSlotExpired: the signature is valid but the slot's own expiry has passed.
	// Verify returns the Slot together with this error so that a live session can still accept it.
	ErrSlotExpired = errors.New("slot expired")
	// ErrSlotMismatch: the JWT's slot claim is not the first segment of the path.
	ErrSlotMismatch = errors.New("token is not for this slot")
	// ErrSizeMismatch: the request's size differs from the signed size (JWT filesize).
	ErrSizeMismatch = errors.New("size differs from the slot's size")
)

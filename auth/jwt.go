package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fileShareClaims are the claims of Prosody mod_http_file_share's external
// upload token. The field order is the order SignSlot writes them in.
type fileShareClaims struct {
	Slot     string           `json:"slot"`
	IssuedAt *jwt.NumericDate `json:"iat,omitempty"`
	Expiry   *jwt.NumericDate `json:"exp,omitempty"`
	// NotBefore is read but never written: Prosody sets no nbf.
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Filename  string           `json:"filename,omitempty"`
	Filesize  *int64           `json:"filesize,omitempty"`
	Filetype  *string          `json:"filetype,omitempty"`
	// Expires is when the stored file is to be deleted (not the token's expiry).
	Expires *jwt.NumericDate `json:"expires,omitempty"`
}

// The methods below make fileShareClaims a jwt.Claims.

func (c fileShareClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Expiry, nil }
func (c fileShareClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c fileShareClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c fileShareClaims) GetIssuer() (string, error)                   { return "", nil }
func (c fileShareClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c fileShareClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// jwtNotBeforeLeeway is the clock skew allowed on a JWT's nbf: a fixed two
// seconds, so that a token minted with nbf = now on a server whose clock is a
// little ahead is not refused. It is independent of the (configurable, larger)
// leeway on exp: accepting a token early would widen the window it is valid in.
const jwtNotBeforeLeeway = 2 * time.Second

// verifyJWT checks an Authorization: Bearer <HS256 JWT> slot.
//
// Prosody's mod_http_file_share always sets slot, exp, filename and filesize,
// so a token without any of them is refused, and so is one whose nbf (never set
// by Prosody, but honoured when present) is more than jwtNotBeforeLeeway ahead
// of the verifier's clock. The path must be exactly "<slot>/<filename>".
func (v *Verifier) verifyJWT(req SlotRequest) (Slot, error) {
	fail := Slot{Protocol: ProtoJWT}
	token, err := bearerToken(req.Authorization)
	if err != nil {
		return fail, fmt.Errorf("verify jwt slot: %w", err)
	}
	var claims fileShareClaims
	// The library checks the signature over the received bytes under each
	// secret; only HS256 is accepted (no "none", no other algorithm).
	keys := v.keys.Load().jwtKeys
	_, err = v.jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return keys, nil })
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail, fmt.Errorf("verify jwt slot: token cannot be decoded: %w", ErrMalformedSignature)
	default:
		return fail, fmt.Errorf("verify jwt slot: %w", ErrBadSignature)
	}

	// The signature is good: from here on the claims are the XMPP server's.
	slotID, name, _ := strings.Cut(req.Path, "/")
	if claims.Slot == "" || claims.Slot != slotID {
		return fail, fmt.Errorf("verify jwt slot: %w", ErrSlotMismatch)
	}
	// A required claim that is absent makes the token malformed (like a v3
	// slot without expires): the XMPP server signed something that is not a
	// mod_http_file_share token, and no request can make it valid.
	if claims.Expiry == nil {
		return fail, fmt.Errorf("verify jwt slot: exp claim missing: %w", ErrMalformedSignature)
	}
	// Without a filename claim a token would write any file name under its slot.
	if claims.Filename == "" {
		return fail, fmt.Errorf("verify jwt slot: filename claim missing: %w", ErrMalformedSignature)
	}
	// Prosody builds the URL as <base><slot>/<filename>: binding the name too
	// keeps one token from writing several files under its slot. The name is
	// the path's last segment: a filename with a slash (which Prosody refuses)
	// matches no path, so that no token covers a deeper path under its slot.
	if claims.Filename != name || strings.Contains(name, "/") {
		return fail, fmt.Errorf("verify jwt slot: file name differs from the token's: %w", ErrSlotMismatch)
	}
	if claims.Filesize == nil || *claims.Filesize < 0 {
		return fail, fmt.Errorf("verify jwt slot: filesize claim missing or negative: %w", ErrMalformedSignature)
	}
	// A token that is not valid yet is refused as a bad signature: it is well
	// formed and for this slot, but it does not authorise anything at this
	// time. It is not ErrSlotExpired, which comes with the Slot so that a live
	// session may still accept it: nothing may accept a token before its time.
	if claims.NotBefore != nil && claims.NotBefore.After(v.now().Add(jwtNotBeforeLeeway)) {
		return fail, fmt.Errorf("verify jwt slot: token not valid before %s: %w",
			claims.NotBefore.UTC().Format(time.RFC3339), ErrBadSignature)
	}
	slot := Slot{
		Protocol:      ProtoJWT,
		Path:          req.Path,
		Size:          *claims.Filesize,
		Type:          DefaultContentType,
		Subject:       claims.Subject,
		SignatureHash: sha256.Sum256([]byte(token)),
	}
	if claims.Filetype != nil {
		slot.Type = *claims.Filetype
	}
	slot.NotAfter = claims.Expiry.Time
	if claims.Expires != nil {
		slot.FileExpires = claims.Expires.Time
	}
	if req.Size >= 0 && req.Size != slot.Size {
		return slot, fmt.Errorf("verify jwt slot: request size %d, slot size %d: %w", req.Size, slot.Size, ErrSizeMismatch)
	}
	if err := v.checkNotAfter(slot.NotAfter); err != nil {
		return slot, fmt.Errorf("verify jwt slot: %w", err)
	}
	return slot, nil
}

// bearerToken extracts the JWT from an Authorization header value. Anything but
// "Bearer <three base64url segments>" is ErrBearerRequired.
func bearerToken(authorization string) (string, error) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("authorization scheme is not Bearer: %w", ErrBearerRequired)
	}
	token = strings.TrimLeft(token, " ")
	if !jwtShaped(token) {
		return "", fmt.Errorf("bearer token is not a JWT: %w", ErrBearerRequired)
	}
	return token, nil
}

// jwtShaped reports whether s is three dot-separated base64url segments, the
// first two non-empty (the signature may be empty, as with alg "none", so that
// such a token is refused as a bad signature rather than as no token).
func jwtShaped(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// signJWT mints a mod_http_file_share token. Header: {"alg":"HS256","typ":"JWT"}.
func signJWT(secret string, c fileShareClaims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return s, nil
}

// numericDate is a JWT NumericDate of t in whole seconds.
func numericDate(t time.Time) *jwt.NumericDate {
	return &jwt.NumericDate{Time: time.Unix(t.Unix(), 0)}
}

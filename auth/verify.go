package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew allowed on a slot's own expiry (v3 expires, JWT exp).
const DefaultLeeway = 60 * time.Second

// Query parameter names of the URL-signed slot protocols.
const (
	paramV1      = "v"
	paramV2      = "v2"
	paramToken   = "token"
	paramV3      = "v3"
	paramExpires = "expires"
)

// maxExpires bounds a v3 expires value (the end of year 9999) so that time
// arithmetic on it cannot overflow.
const maxExpires = 253402300799

// Verifier checks slot signatures against one or more shared secrets. The
// first secret is the one SignSlot would use; every secret verifies, so a
// secret can be rotated at the XMPP server without breaking outstanding slots.
// A Verifier is safe for concurrent use.
type Verifier struct {
	keys   atomic.Pointer[secretSet]
	now    func() time.Time
	leeway time.Duration
	jwt    *jwt.Parser
}

// secretSet is the secrets a Verifier checks against, replaced as a whole by
// SetSecrets.
type secretSet struct {
	secrets [][]byte
	jwtKeys jwt.VerificationKeySet
}

func newSecretSet(secrets []string) (*secretSet, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no secret configured")
	}
	set := &secretSet{}
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("secret %d of %d is empty", i+1, len(secrets))
		}
		set.secrets = append(set.secrets, []byte(s))
		set.jwtKeys.Keys = append(set.jwtKeys.Keys, []byte(s))
	}
	return set, nil
}

// SetSecrets replaces the secrets that v verifies against, for a rotation
// without a restart: a request verified after SetSecrets returns uses the new
// secrets only. To rotate with no slot refused, list the new secret and the
// old one, then (once the XMPP server signs with the new one and the old
// slots have expired) the new one alone. It fails, leaving v as it was, when
// there is no secret or a secret is empty.
func (v *Verifier) SetSecrets(secrets []string) error {
	set, err := newSecretSet(secrets)
	if err != nil {
		return fmt.Errorf("set slot secrets: %w", err)
	}
	v.keys.Store(set)
	return nil
}

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// WithClock sets the clock that slot expiry is checked against (default time.Now).
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) { v.now = now }
}

// WithLeeway sets the clock skew allowed on v3 expires and JWT exp (default DefaultLeeway).
func WithLeeway(d time.Duration) VerifierOption {
	return func(v *Verifier) { v.leeway = d }
}

// NewVerifier returns a Verifier for the given secrets. It fails when there is
// no secret, when a secret is empty, or when an option is invalid.
func NewVerifier(secrets []string, opts ...VerifierOption) (*Verifier, error) {
	set, err := newSecretSet(secrets)
	if err != nil {
		return nil, fmt.Errorf("new slot verifier: %w", err)
	}
	v := &Verifier{now: time.Now, leeway: DefaultLeeway}
	v.keys.Store(set)
	for _, opt := range opts {
		opt(v)
	}
	if v.now == nil {
		return nil, errors.New("new slot verifier: clock is nil")
	}
	if v.leeway < 0 {
		return nil, fmt.Errorf("new slot verifier: negative leeway %s", v.leeway)
	}
	// Claims are checked by verifyJWT itself, against the injected clock and
	// only after the signature is known to be good.
	v.jwt = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithoutClaimsValidation())
	return v, nil
}

// Verify checks the slot that req claims.
//
// The protocol is chosen from the request: query parameters first, the
// highest version present (v3, then v2, then token, then v), as the
// mod_http_upload_external README requires; otherwise an Authorization header,
// which must then be "Bearer <JWT>"; otherwise ErrNoSignature. A weaker
// parameter is never tried when a stronger one is present but fails.
//
// On success the Slot is filled. When the signature is good but the slot's own
// expiry has passed, Verify returns the filled Slot together with an error
// matching ErrSlotExpired (a live session may still accept it); likewise a JWT
// whose filesize differs from req.Size yields the filled Slot and
// ErrSizeMismatch. On every other error the Slot carries only its Protocol
// (empty when none could be chosen), for metrics.
func (v *Verifier) Verify(req SlotRequest) (Slot, error) {
	q := req.Query
	switch {
	case q.Has(paramV3):
		return v.verifyV3(req)
	case q.Has(paramV2):
		return v.verifySized(req, ProtoV2, paramV2)
	case q.Has(paramToken):
		return v.verifySized(req, ProtoToken, paramToken)
	case q.Has(paramV1):
		return v.verifySized(req, ProtoV1, paramV1)
	case req.Authorization != "":
		return v.verifyJWT(req)
	default:
		return Slot{}, ErrNoSignature
	}
}

// verifySized checks the protocols that sign the size: v1, v2 and token.
func (v *Verifier) verifySized(req SlotRequest, proto Protocol, param string) (Slot, error) {
	fail := Slot{Protocol: proto}
	raw, err := singleParam(req, param)
	if err != nil {
		return fail, fmt.Errorf("verify %s slot: %w", proto, err)
	}
	mac, err := decodeHexMAC(raw)
	if err != nil {
		return fail, fmt.Errorf("verify %s slot: %w", proto, err)
	}
	if req.Size < 0 {
		// The size is only inside the MAC: without it nothing can match.
		return fail, fmt.Errorf("verify %s slot: request states no size: %w", proto, ErrBadSignature)
	}
	slot := Slot{Protocol: proto, Path: req.Path, Size: req.Size, SignatureHash: sha256.Sum256([]byte(raw))}
	var msg []byte
	if proto == ProtoV1 {
		msg = v1Message(req.Path, req.Size)
	} else {
		slot.Type = DefaultContentType
		if req.ContentType != nil {
			slot.Type = *req.ContentType
		}
		msg = v2Message(req.Path, req.Size, slot.Type)
	}
	if !v.anySecretMatches(msg, mac) {
		return fail, fmt.Errorf("verify %s slot: %w", proto, ErrBadSignature)
	}
	return slot, nil
}

// verifyV3 checks the expiring form: v3=<hex>&expires=<unix seconds>.
func (v *Verifier) verifyV3(req SlotRequest) (Slot, error) {
	fail := Slot{Protocol: ProtoV3}
	raw, err := singleParam(req, paramV3)
	if err != nil {
		return fail, fmt.Errorf("verify v3 slot: %w", err)
	}
	mac, err := decodeHexMAC(raw)
	if err != nil {
		return fail, fmt.Errorf("verify v3 slot: %w", err)
	}
	rawExpires, err := singleParam(req, paramExpires)
	if err != nil {
		return fail, fmt.Errorf("verify v3 slot: expires: %w", err)
	}
	expires, err := parseExpires(rawExpires)
	if err != nil {
		return fail, fmt.Errorf("verify v3 slot: %w", err)
	}
	if !v.anySecretMatches(v3Message(rawExpires, req.URLPath), mac) {
		return fail, fmt.Errorf("verify v3 slot: %w", ErrBadSignature)
	}
	slot := Slot{
		Protocol:      ProtoV3,
		Path:          req.Path,
		Size:          -1,
		NotAfter:      expires,
		SignatureHash: sha256.Sum256([]byte(raw)),
	}
	if err := v.checkNotAfter(expires); err != nil {
		return slot, fmt.Errorf("verify v3 slot: %w", err)
	}
	return slot, nil
}

// checkNotAfter reports ErrSlotExpired when now is beyond notAfter plus the leeway.
func (v *Verifier) checkNotAfter(notAfter time.Time) error {
	if v.now().After(notAfter.Add(v.leeway)) {
		return fmt.Errorf("slot expired at %s: %w", notAfter.UTC().Format(time.RFC3339), ErrSlotExpired)
	}
	return nil
}

// anySecretMatches reports whether mac is HMAC-SHA256 of msg under any secret.
// Every secret is tried, each with a constant-time comparison.
func (v *Verifier) anySecretMatches(msg, mac []byte) bool {
	ok := false
	for _, s := range v.keys.Load().secrets {
		if hmac.Equal(computeMAC(s, msg), mac) {
			ok = true
		}
	}
	return ok
}

// SlotKey identifies a slot in session stores: lower-case hex SHA-256 of the slot path.
func SlotKey(slotPath string) string {
	sum := sha256.Sum256([]byte(slotPath))
	return hex.EncodeToString(sum[:])
}

// singleParam returns the one value of a query parameter; absent, repeated or
// empty values are malformed.
func singleParam(req SlotRequest, name string) (string, error) {
	vals := req.Query[name]
	switch {
	case len(vals) == 0:
		return "", fmt.Errorf("parameter %q missing: %w", name, ErrMalformedSignature)
	case len(vals) > 1:
		return "", fmt.Errorf("parameter %q given %d times: %w", name, len(vals), ErrMalformedSignature)
	case vals[0] == "":
		return "", fmt.Errorf("parameter %q empty: %w", name, ErrMalformedSignature)
	}
	return vals[0], nil
}

// decodeHexMAC decodes a hex HMAC-SHA256 of either case.
func decodeHexMAC(s string) ([]byte, error) {
	if len(s) != 2*sha256.Size {
		return nil, fmt.Errorf("signature is %d characters, want %d hex digits: %w", len(s), 2*sha256.Size, ErrMalformedSignature)
	}
	mac, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("signature is not hex: %w", ErrMalformedSignature)
	}
	return mac, nil
}

// parseExpires parses a v3 expires value: decimal Unix seconds, digits only.
func parseExpires(s string) (time.Time, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, fmt.Errorf("expires is not a decimal number of seconds: %w", ErrMalformedSignature)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxExpires {
		return time.Time{}, fmt.Errorf("expires is out of range: %w", ErrMalformedSignature)
	}
	return time.Unix(n, 0), nil
}

// computeMAC is HMAC-SHA256(key, msg).
func computeMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// v1Message is what mod_http_upload_external v1 signs: "<path> <size>".
func v1Message(path string, size int64) []byte {
	return []byte(path + " " + strconv.FormatInt(size, 10))
}

// v2Message is what v2 and Metronome's token sign: "<path>\x00<size>\x00<type>".
func v2Message(path string, size int64, contentType string) []byte {
	return []byte(path + "\x00" + strconv.FormatInt(size, 10) + "\x00" + contentType)
}

// v3Message is what v3 signs: "PUT\n<expires>\n<URL path>". The method is
// always PUT: a tus POST to the slot URL uses the same slot.
func v3Message(expires, urlPath string) []byte {
	return []byte("PUT\n" + expires + "\n" + urlPath)
}

package auth

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
)

// uploadIDDomain separates the upload-ID derivation from any other use of the ID key.
const uploadIDDomain = "uploadgate/upload-id/v1\x00"

// Upload ID shape: 128 bits as lower-case unpadded base32.
const (
	uploadIDBytes = 16
	uploadIDLen   = 26
)

// DeriveUploadID returns the upload ID of a slot: the first 128 bits of
// HMAC-SHA256(idKey, "uploadgate/upload-id/v1\x00" + slotPath), lower-case
// base32 without padding. The same slot always gets the same ID, and nobody
// without idKey can compute it from the slot's public GET URL.
func DeriveUploadID(idKey []byte, slotPath string) string {
	mac := computeMAC(idKey, []byte(uploadIDDomain+slotPath))
	return encodeUploadID(mac[:uploadIDBytes])
}

// NewRandomUploadID returns a random 128-bit upload ID in the same encoding as
// DeriveUploadID (for the partial uploads of a tus concatenation).
func NewRandomUploadID() (string, error) {
	var b [uploadIDBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random upload id: %w", err)
	}
	return encodeUploadID(b[:]), nil
}

// ValidUploadID reports whether id is an upload ID that uploadgate issues:
// exactly 26 characters of [a-z2-7]. Nothing else: no "/", "%", "+", NUL or
// upper-case base, so an ID is always one safe path segment. (The S3 storage
// keeps s3store's longer object names to itself.)
func ValidUploadID(id string) bool {
	if len(id) != uploadIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// encodeUploadID is lower-case base32 without padding.
func encodeUploadID(b []byte) string {
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

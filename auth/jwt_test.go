package auth

import (
	"errors"
	"testing"
	"time"
)

// TestSignJWTEncoding pins the token encoding: the claims of the reference
// vector, written by signJWT, give exactly the reference token.
func TestSignJWTEncoding(t *testing.T) {
	const want = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzbG90IjoiWGszdlQ5cUxtTjJwUjdzVzR5WjhhQjFjIiwiaWF0IjoxNzk1MDAwMDAwLCJleHAiOjE3OTUwMDAzMDAsInN1YiI6ImFsaWNlQGV4YW1wbGUub3JnIiwiZmlsZW5hbWUiOiJob2xpZGF5IHBob3RvLmpwZyIsImZpbGVzaXplIjoxMjM0NTYsImZpbGV0eXBlIjoiaW1hZ2UvanBlZyIsImV4cGlyZXMiOjE3OTU2MDQ4MDB9.mOhMgUURuV9KZ9dmjVZb5UMGyvOITcT9cKs2tkq2D2o"
	size := int64(123456)
	typ := "image/jpeg"
	got, err := signJWT("test-secret-0363", fileShareClaims{
		Slot:     "Xk3vT9qLmN2pR7sW4yZ8aB1c",
		IssuedAt: numericDate(time.Unix(1795000000, 0)),
		Expiry:   numericDate(time.Unix(1795000300, 999_000_000)), // fractions are dropped
		Subject:  "alice@example.org",
		Filename: "holiday photo.jpg",
		Filesize: &size,
		Filetype: &typ,
		Expires:  numericDate(time.Unix(1795604800, 0)),
	})
	if err != nil {
		t.Fatalf("signJWT: %v", err)
	}
	if got != want {
		t.Errorf("signJWT =\n%s\nwant\n%s", got, want)
	}
}

func TestBearerToken(t *testing.T) {
	const tok = "aGVhZGVy.cGF5bG9hZA.c2ln"
	tests := []struct {
		header string
		want   string
		ok     bool
	}{
		{"Bearer " + tok, tok, true},
		{"bearer " + tok, tok, true},
		{"BEARER   " + tok + "  ", tok, true},
		{"Bearer aGVhZGVy.cGF5bG9hZA.", "aGVhZGVy.cGF5bG9hZA.", true}, // empty signature: refused later as a bad signature
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer\t" + tok, "", false},
		{"Bearer " + tok + " extra", "", false},
		{"Basic " + tok, "", false},
		{"Bearerx " + tok, "", false},
		{tok, "", false},
		{"Bearer a+b.c.d", "", false},
		{"Bearer a/b.c.d", "", false},
		{"Bearer a.b.c=", "", false},
		{"Bearer a..c", "", false},
	}
	for _, tt := range tests {
		got, err := bearerToken(tt.header)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, ok=%v", tt.header, got, err, tt.want, tt.ok)
		}
	}
}

func TestJWTBindsFileName(t *testing.T) {
	now := time.Unix(1795000000, 0)
	s, err := SignSlot("test-secret-0363", SignRequest{BaseURL: "https://up.example/upload/", Dir: "slotid", Name: "a.bin", Size: 3, Protocol: ProtoJWT, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]string{"test-secret-0363"}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]error{"slotid/a.bin": nil, "slotid/b.bin": ErrSlotMismatch, "other/a.bin": ErrSlotMismatch} {
		_, err := v.Verify(SlotRequest{Path: path, URLPath: "/upload/" + path, Authorization: s.Authorization, Size: 3})
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("path %s: %v, want %v", path, err, want)
		}
	}
}

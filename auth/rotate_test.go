package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// SetSecrets rotates a running verifier's secrets: with the new and the old
// secret listed, slots of both verify (query-signed and JWT); with the new one
// alone, slots of the old one are refused; a bad list changes nothing.
func TestVerifierSetSecrets(t *testing.T) {
	const base = "https://upload.example.org/upload/"
	const oldSecret, newSecret = "old-secret-0123456789", "new-secret-0123456789"
	v, err := auth.NewVerifier([]string{oldSecret})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(secret string, p auth.Protocol) auth.SlotRequest {
		s, err := auth.SignSlot(secret, auth.SignRequest{BaseURL: base, Name: "a.txt", Size: 3, Protocol: p, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return requestFor(t, s, "/upload/", 3, nil)
	}
	check := func(when, secret string, want bool) {
		t.Helper()
		for _, p := range []auth.Protocol{auth.ProtoV2, auth.ProtoJWT} {
			_, err := v.Verify(mint(secret, p))
			if (err == nil) != want {
				t.Errorf("%s: %s slot of %s: %v, want verified %v", when, p, secret[:3], err, want)
			}
		}
	}
	check("before", oldSecret, true)
	check("before", newSecret, false)
	if err := v.SetSecrets([]string{newSecret, oldSecret}); err != nil {
		t.Fatal(err)
	}
	check("during", oldSecret, true)
	check("during", newSecret, true)
	if err := v.SetSecrets([]string{newSecret}); err != nil {
		t.Fatal(err)
	}
	check("after", oldSecret, false)
	check("after", newSecret, true)
	for _, bad := range [][]string{nil, {newSecret, ""}} {
		if err := v.SetSecrets(bad); err == nil {
			t.Errorf("SetSecrets(%q) accepted", bad)
		}
	}
	check("after a refused change", newSecret, true)
	if _, err := v.Verify(mint(oldSecret, auth.ProtoV2)); !errors.Is(err, auth.ErrBadSignature) {
		t.Errorf("old secret after a refused change: %v", err)
	}
}

package auth_test

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

func TestDeriveUploadID(t *testing.T) {
	key := []byte("id-key-for-tests-0363")
	// Known answers computed independently (Python hmac + base64.b32encode):
	// the derivation must never change, or in-flight uploads are stranded.
	tests := []struct {
		key  []byte
		path string
		want string
	}{
		{key, pathA, "i7kumsm37fhlyxbv6ezzfnxzae"},
		{key, pathB, "klovdyjbufca327q65tdypizlu"},
	}
	for _, tt := range tests {
		got := auth.DeriveUploadID(tt.key, tt.path)
		if got != tt.want {
			t.Errorf("DeriveUploadID(%q) = %s, want %s", tt.path, got, tt.want)
		}
		if !auth.ValidUploadID(got) {
			t.Errorf("derived ID %q is not valid", got)
		}
		if again := auth.DeriveUploadID(tt.key, tt.path); again != got {
			t.Errorf("DeriveUploadID is not stable: %s, then %s", got, again)
		}
	}

	distinct := map[string]string{}
	for _, c := range []struct {
		name string
		key  []byte
		path string
	}{
		{"reference", key, pathA},
		{"other key", []byte("id-key-for-tests-0364"), pathA},
		{"other path", key, pathA + "x"},
		{"path without its directory", key, "holiday photo.jpg"},
		{"GET URL path", key, "/upload/" + pathA},
	} {
		id := auth.DeriveUploadID(c.key, c.path)
		if prev, dup := distinct[id]; dup {
			t.Errorf("%s and %s derive the same ID %s", prev, c.name, id)
		}
		distinct[id] = c.name
	}
}

func TestNewRandomUploadID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, err := auth.NewRandomUploadID()
		if err != nil {
			t.Fatal(err)
		}
		if !auth.ValidUploadID(id) || len(id) != 26 {
			t.Fatalf("random ID %q is not valid", id)
		}
		if seen[id] {
			t.Fatalf("random ID %q drawn twice", id)
		}
		seen[id] = true
	}
}

func TestValidUploadID(t *testing.T) {
	const id = "i7kumsm37fhlyxbv6ezzfnxzae"
	tests := []struct {
		id   string
		want bool
	}{
		{id, true},
		{"abcdefghijklmnopqrstuvwxyz", true},
		{"22222234567777777777777777", true},
		// The S3 storage keeps s3store's "+<multipart id>" names to itself.
		{id + "+1", false},
		{id + "+ZmJhYjQ1NjctODlhYi4xMjM0NTY3OA", false},

		{"", false},
		{id[:25], false},
		{id + "a", false},
		{strings.ToUpper(id), false},
		{"I7kumsm37fhlyxbv6ezzfnxzae", false},
		{"i7kumsm37fhlyxbv6ezzfnxza1", false},
		{"i7kumsm37fhlyxbv6ezzfnxza8", false},
		{"i7kumsm37fhlyxbv6ezzfnxza=", false},
		{"..", false},
		{"../i7kumsm37fhlyxbv6ezzfnxzae", false},
		{"i7kumsm37fhlyxbv6ezzfnxz/e", false},
		{"i7kumsm37fhlyxbv6ezzfnx%2F", false},
		{"i7kumsm37fhlyxbv6ezzfnxza\x00", false},
		{id + "\x00", false},
		{id + "+", false},
		{id + "+" + strings.Repeat("a", 201), false},
		{id + "+a/b", false},
		{id + "+..", false},
		{id + "+a..b", false},
		{id + "+%2F", false},
		{id + "+a\x00", false},
		{id + "+a+b", false},
		{id + "+a b", false},
		{id + "+é", false},
		{"+" + id, false},
		{id + "/", false},
	}
	for _, tt := range tests {
		if got := auth.ValidUploadID(tt.id); got != tt.want {
			t.Errorf("ValidUploadID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// FuzzValidUploadID checks that every accepted ID is one harmless path segment.
func FuzzValidUploadID(f *testing.F) {
	for _, s := range []string{
		"i7kumsm37fhlyxbv6ezzfnxzae", "i7kumsm37fhlyxbv6ezzfnxzae+abc.DEF_1~-", "i7kumsm37fhlyxbv6ezzfnxzae+..",
		"../../etc/passwd", "i7kumsm37fhlyxbv6ezzfnx%2F", "I7KUMSM37FHLYXBV6EZZFNXZAE", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !auth.ValidUploadID(id) {
			return
		}
		if len(id) != 26 || strings.ToLower(id) != id {
			t.Fatalf("accepted %q", id)
		}
		if strings.ContainsAny(id, "/\\%\x00 ") || strings.Contains(id, "..") {
			t.Fatalf("accepted %q with a path-unsafe character", id)
		}
		if url.PathEscape(id) != id || filepath.Base(id) != id {
			t.Fatalf("accepted %q, which is not one literal path segment", id)
		}
	})
}

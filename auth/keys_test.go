package auth_test

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/uploadgate/uploadgate/auth"
)

func TestLoadOrCreateKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys") // neither directory exists yet
	path := filepath.Join(dir, "slot.key")

	key, created, err := auth.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if !created {
		t.Error("first call: created = false")
	}
	if raw, err := hex.DecodeString(key); err != nil || len(raw) != 32 {
		t.Errorf("key %q is not 32 hex-encoded bytes", key)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("key directory: %v, mode %04o; want 0700", err, info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %d entries (%v), want only the key file", len(entries), err)
	}

	again, created, err := auth.LoadOrCreateKeyFile(path)
	if err != nil || created || again != key {
		t.Errorf("second call = %q, %v, %v; want the same key, not created", again, created, err)
	}

	other, _, err := auth.LoadOrCreateKeyFile(filepath.Join(dir, "id.key"))
	if err != nil || other == key {
		t.Errorf("a second key file: %v; keys equal: %v", err, other == key)
	}
}

func TestLoadOrCreateKeyFileExisting(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
		wantErr string
	}{
		{name: "trimmed", content: "  my-key\n\n", mode: 0o600, want: "my-key"},
		{name: "owner read-only", content: "k", mode: 0o400, want: "k"},
		{name: "world-readable", content: "k", mode: 0o644, wantErr: "group or others"},
		{name: "group-readable", content: "k", mode: 0o640, wantErr: "group or others"},
		{name: "other-writable", content: "k", mode: 0o602, wantErr: "group or others"},
		{name: "empty", content: "", mode: 0o600, wantErr: "empty"},
		{name: "only whitespace", content: " \n\t\n", mode: 0o600, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.key")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // not subject to the umask
				t.Fatal(err)
			}
			key, created, err := auth.LoadOrCreateKeyFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadOrCreateKeyFile = %q, %v; want an error saying %q", key, err, tt.wantErr)
				}
				data, _ := os.ReadFile(path)
				if string(data) != tt.content {
					t.Error("the refused file was changed")
				}
				return
			}
			if err != nil || created || key != tt.want {
				t.Fatalf("LoadOrCreateKeyFile = %q, %v, %v; want %q, not created", key, created, err, tt.want)
			}
		})
	}

	t.Run("directory in the way", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "k.key")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, _, err := auth.LoadOrCreateKeyFile(path); err == nil {
			t.Fatal("want an error for a directory")
		}
	})
}

func TestReadSecretFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr bool
	}{
		{name: "one", content: "s1\n", want: []string{"s1"}},
		{name: "no final newline", content: "s1", want: []string{"s1"}},
		{name: "several with comments", content: "# signing secret first\ns1\n\n  s2  \r\n# retired\ns3\n", want: []string{"s1", "s2", "s3"}},
		{name: "inner spaces kept", content: "secret string\n", want: []string{"secret string"}},
		{name: "empty", content: "", wantErr: true},
		{name: "only comments", content: "# nothing\n\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secrets")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := auth.ReadSecretFile(path)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ReadSecretFile = %q, want an error", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ReadSecretFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := auth.ReadSecretFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: want an error")
	}
}

func TestReadKeyFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
		wantErr string
	}{
		{name: "private", content: "k1\n", mode: 0o600, want: "k1"},
		{name: "group-readable (secret volume with fsGroup)", content: "k2\n", mode: 0o440, want: "k2"},
		{name: "world-readable (secret volume default)", content: "  k3 \n", mode: 0o644, want: "k3"},
		{name: "group-writable", content: "refused-key-0123", mode: 0o660, wantErr: "group or others change"},
		{name: "world-writable", content: "refused-key-0123", mode: 0o646, wantErr: "group or others change"},
		{name: "empty", content: "", mode: 0o644, wantErr: "empty"},
		{name: "only whitespace", content: "\n \n", mode: 0o600, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.key")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // not subject to the umask
				t.Fatal(err)
			}
			key, err := auth.ReadKeyFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadKeyFile = %q, %v; want an error saying %q", key, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), tt.content) && strings.TrimSpace(tt.content) != "" {
					t.Errorf("error %q repeats the key", err)
				}
				return
			}
			if err != nil || key != tt.want {
				t.Fatalf("ReadKeyFile = %q, %v; want %q", key, err, tt.want)
			}
		})
	}

	t.Run("missing file is not created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "id.key")
		if _, err := auth.ReadKeyFile(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadKeyFile of a missing file: %v; want an error wrapping fs.ErrNotExist", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadKeyFile created %s: %v", path, err)
		}
	})

	t.Run("directory in the way", func(t *testing.T) {
		if _, err := auth.ReadKeyFile(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("ReadKeyFile of a directory: %v; want not a regular file", err)
		}
	})

	t.Run("symbolic link, as in a secret volume", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "..data", "id.key")
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, []byte("linked\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "id.key")
		if err := os.Symlink(filepath.Join("..data", "id.key"), link); err != nil {
			t.Fatal(err)
		}
		if key, err := auth.ReadKeyFile(link); err != nil || key != "linked" {
			t.Fatalf("ReadKeyFile through a link = %q, %v", key, err)
		}
	})
}

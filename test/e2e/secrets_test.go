package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The slot secrets rotate without a restart, with the real binary: SIGHUP
// re-reads --secret-file, and so does a change of the file alone (as a
// Kubernetes Secret volume is updated, with no signal). With the new secret
// and the old one in the file, slots of both are accepted; with the new one
// alone, slots of the old one are refused; a file without a valid secret
// changes nothing and the gateway keeps running.
func TestSecretRotationWithoutRestart(t *testing.T) {
	const oldSecret, newSecret = "old-slot-secret-0123456789", "new-slot-secret-0123456789"
	file := filepath.Join(t.TempDir(), "secrets")
	write := func(lines ...string) {
		t.Helper()
		// Written aside and renamed over, as an operator's tool or the kubelet does.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(oldSecret)
	s := startServer(t, "--secret-file", file)
	mint := func(secret, protocol, name string) slot {
		t.Helper()
		s.Secret = secret
		return s.sign(t, protocol, name, 5, "")
	}
	putStatus := func(sl slot) int {
		t.Helper()
		return hosPut(t, sl, []byte("hello")).Status
	}
	waitLog := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(3 * secretPoll)
		for strings.Count(s.log(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("the log does not say %q %d times", what, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if st := putStatus(mint(newSecret, "v2", "before.txt")); st != http.StatusForbidden {
		t.Fatalf("a slot of the new secret before the rotation: %d, want 403", st)
	}
	if st := putStatus(mint(oldSecret, "v2", "before-old.txt")); st != http.StatusCreated {
		t.Fatalf("a slot of the old secret before the rotation: %d, want 201", st)
	}
	oldJWT := mint(oldSecret, "jwt", "old.txt")
	oldV2 := mint(oldSecret, "v2", "old-later.txt")

	// During the change: the new secret signs, both verify.
	write(newSecret, oldSecret)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`msg="slot secrets reloaded" trigger=SIGHUP`, 1)
	for _, sl := range []slot{oldJWT, mint(newSecret, "v2", "new.txt"), mint(newSecret, "jwt", "new-jwt.txt")} {
		if st := putStatus(sl); st != http.StatusCreated {
			t.Fatalf("during the rotation, %s: %d, want 201", sl.PutURL, st)
		}
	}

	// After it, without a signal: the old secret is gone.
	write(newSecret)
	waitLog(`msg="slot secrets reloaded" trigger="file changed"`, 1)
	if st := putStatus(oldV2); st != http.StatusForbidden {
		t.Fatalf("a slot of the old secret after the rotation: %d, want 403", st)
	}
	if st := putStatus(mint(newSecret, "v2", "after.txt")); st != http.StatusCreated {
		t.Fatalf("a slot of the new secret after the rotation: %d, want 201", st)
	}

	// A file without a valid secret is refused; the new secret stays.
	write("# emptied by mistake")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`msg="slot secrets not reloaded; the current ones stay" trigger=SIGHUP`, 1)
	if st := putStatus(mint(newSecret, "v2", "still.txt")); st != http.StatusCreated {
		t.Fatalf("a slot of the new secret after a refused reload: %d, want 201", st)
	}
}

// secretPoll is how often the gateway looks at --secret-file for a change.
const secretPoll = 5 * time.Second

package deploy_test

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const systemdUnit = "deploy/systemd/uploadgate.service"

// unitFile is a systemd unit: section → key → values, in order (a key may be
// given more than once).
type unitFile map[string]map[string][]string

func (u unitFile) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads a unit file as systemd does: comments start with # or ;,
// sections in brackets, Key=Value lines, a trailing backslash continues a
// line.
func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	var cont string
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line = cont + " " + line
			cont = ""
		}
		if strings.HasSuffix(line, "\\") {
			cont = strings.TrimSuffix(line, "\\")
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is neither a section nor Key=Value in a section", systemdUnit, n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// TestSystemdUnit checks deploy/systemd/uploadgate.service: the keys that
// docs/operations.md promises, the ExecStart flags against `uploadgate serve
// -h`, systemd's own verdict (systemd-analyze verify), and then the unit's
// command lines for real: ExecStart starts the gateway, ExecReload rotates
// the slot secret without a restart, KillSignal stops it cleanly.
func TestSystemdUnit(t *testing.T) {
	text := readFile(t, systemdUnit)
	u := parseUnit(t, text)

	want := map[string]string{
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"PrivateDevices":  "yes",
		"KillSignal":      "SIGTERM",
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"Restart":         "on-failure",
	}
	for k, v := range want {
		if got := u.get("Service", k); got != v {
			t.Errorf("[Service] %s=%q; want %q", k, got, v)
		}
	}
	if user := u.get("Service", "User"); user == "" || user == "root" || user == "0" {
		t.Errorf("[Service] User=%q; want a dedicated user", user)
	}
	if n, err := strconv.Atoi(u.get("Service", "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("[Service] LimitNOFILE=%q; want a number of at least 4096", u.get("Service", "LimitNOFILE"))
	}
	// The gateway's shutdown takes up to 30 s; systemd must not kill it first.
	if d, err := time.ParseDuration(u.get("Service", "TimeoutStopSec") + "s"); err != nil || d <= 30*time.Second {
		t.Errorf("[Service] TimeoutStopSec=%q; want more than the gateway's 30 s shutdown", u.get("Service", "TimeoutStopSec"))
	}
	if u.get("Install", "WantedBy") != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q; want multi-user.target", u.get("Install", "WantedBy"))
	}

	exec0 := strings.Fields(u.get("Service", "ExecStart"))
	if len(exec0) < 2 || exec0[0] != "/usr/local/bin/uploadgate" || exec0[1] != "serve" {
		t.Fatalf("ExecStart=%q; want /usr/local/bin/uploadgate serve …", u.get("Service", "ExecStart"))
	}
	flags := checkFlagArgs(t, systemdUnit+" ExecStart", exec0[2:])
	dataDir := flags["data-dir"]
	if dataDir != "/var/lib/"+u.get("Service", "StateDirectory") {
		t.Errorf("ExecStart --data-dir %q; want /var/lib/<StateDirectory> (StateDirectory=%q)", dataDir, u.get("Service", "StateDirectory"))
	}
	if rw := u["Service"]["ReadWritePaths"]; !strings.Contains(" "+strings.Join(rw, " ")+" ", " "+dataDir+" ") {
		t.Errorf("ReadWritePaths=%q does not include the data directory %q", rw, dataDir)
	}
	config := flags["config"]
	if config == "" {
		t.Fatalf("ExecStart has no --config")
	}

	// docs/operations.md points at the file.
	if ops := readFile(t, "docs/operations.md"); !strings.Contains(ops, "../"+systemdUnit) {
		t.Errorf("docs/operations.md does not link to %s", systemdUnit)
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		analyze := needTool(t, "systemd-analyze", "UPLOADGATE_SKIP_SYSTEMD_ANALYZE")
		// The unit as installed, with the binary where this test built it
		// (verify checks that ExecStart's program exists).
		dir := t.TempDir()
		unit := filepath.Join(dir, "uploadgate.service")
		if err := os.WriteFile(unit, []byte(strings.ReplaceAll(text, "/usr/local/bin/uploadgate", binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
		// verify exits 0 on unknown keys, and only prints them.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("systemd-analyze verify %s: %v\n%s", systemdUnit, err, out)
		}
	})

	t.Run("run", func(t *testing.T) {
		dir := t.TempDir()
		secretFile := filepath.Join(dir, "slot-secrets")
		oldSecret, newSecret := strings.Repeat("a1", 16), strings.Repeat("b2", 16)
		if err := os.WriteFile(secretFile, []byte(oldSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		toml := "listen = \"127.0.0.1:0\"\nsecret-file = \"" + secretFile + "\"\n"
		tomlPath := filepath.Join(dir, "uploadgate.toml")
		if err := os.WriteFile(tomlPath, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		args := strings.Fields(strings.NewReplacer(config, tomlPath, dataDir, filepath.Join(dir, "data")).Replace(strings.Join(exec0[1:], " ")))
		g := startGateway(t, binary, args, nil)

		put := func(what string, wantCode int) {
			t.Helper()
			putURL, _ := sign(t, secretFile, g.URL+"/upload/", "--size", "5", what+".txt")
			if code, _, body := do(t, http.MethodPut, putURL, []byte("hello"), nil); code != wantCode {
				t.Fatalf("PUT (%s): %d %q; want %d", what, code, body, wantCode)
			}
		}
		put("before-rotation", http.StatusCreated)
		oldPut, _ := sign(t, secretFile, g.URL+"/upload/", "--size", "5", "old-secret.txt")

		// Rotate: the file holds only the new secret, and ExecReload's
		// command tells the gateway.
		if err := os.WriteFile(secretFile, []byte(newSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		reload := strings.Fields(strings.ReplaceAll(u.get("Service", "ExecReload"), "$MAINPID", strconv.Itoa(g.cmd.Process.Pid)))
		if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("ExecReload %v: %v\n%s", reload, err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(g.logPath)
			if strings.Contains(string(b), "slot secrets reloaded") && strings.Contains(string(b), "SIGHUP") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no \"slot secrets reloaded\" for SIGHUP in the log within 10 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case <-g.exited:
			t.Fatalf("the gateway exited on ExecReload's signal: %v", g.waitErr)
		default:
		}
		put("after-rotation", http.StatusCreated)
		if code, _, body := do(t, http.MethodPut, oldPut, []byte("hello"), nil); code != http.StatusForbidden {
			t.Fatalf("PUT with a slot of the rotated-out secret: %d %q; want 403", code, body)
		}

		// KillSignal: a clean exit well within TimeoutStopSec.
		if sig := u.get("Service", "KillSignal"); sig != "SIGTERM" {
			t.Fatalf("KillSignal=%s", sig)
		}
		start := time.Now()
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
			if g.waitErr != nil {
				t.Fatalf("after SIGTERM: %v; want exit status 0", g.waitErr)
			}
		case <-time.After(35 * time.Second):
			t.Fatalf("no exit within 35 s of SIGTERM")
		}
		t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	})
}

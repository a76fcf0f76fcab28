package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "uploadgate.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadServeConfig parses args and env as `uploadgate serve` does, then the
// config file named by --config.
func loadServeConfig(t *testing.T, args []string, env map[string]string) (serveConfig, error) {
	t.Helper()
	var c serveConfig
	fs := newServeFlags(&c)
	if _, err := parseFlags(fs, args, func(k string) string { return env[k] }); err != nil {
		return c, err
	}
	if c.Config != "" {
		if err := applyConfigFile(fs, c.Config); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Flags beat the environment, the environment beats the file, the file beats
// the defaults; each setting on its own.
func TestConfigFilePrecedence(t *testing.T) {
	file := writeConfig(t, `
listen = "127.0.0.1:9001"        # overridden by the flag and the environment
data-dir = "/srv/file"           # overridden by the environment
max-size = "100MiB"              # from the file only
session-idle-ttl = "2h"          # overridden by the flag
s3-path-style = true
s3-concurrency = 4
s3-sign-payload = true
s3-preferred-part-size = "64MiB"
cors-origins = ["https://a.example", "https://b.example"]
`)
	env := map[string]string{
		"UPLOADGATE_LISTEN":   "127.0.0.1:9002",
		"UPLOADGATE_DATA_DIR": "/srv/env",
	}
	c, err := loadServeConfig(t, []string{"--config", file, "--listen", "127.0.0.1:9003", "--session-idle-ttl", "3h"}, env)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen (flag over env and file)", c.Listen, "127.0.0.1:9003"},
		{"data-dir (env over file)", c.DataDir, "/srv/env"},
		{"max-size (file over default)", int64(c.MaxSize), int64(100 << 20)},
		{"session-idle-ttl (flag over file)", c.SessionIdleTTL, 3 * time.Hour},
		{"session-max-ttl (default)", c.SessionMaxTTL, 72 * time.Hour},
		{"s3-path-style (file bool)", c.S3.PathStyle, true},
		{"s3-concurrency (file integer)", c.S3.Concurrency, 4},
		{"s3-sign-payload (file bool, handed to the storage)", c.storageSettings().S3.SignPayload, true},
		{"s3-preferred-part-size (file size, handed to the storage)", c.storageSettings().S3.PreferredPartSize, int64(64 << 20)},
		{"cors-origins (file array)", strings.Join(c.CORSOrigins.vals, " "), "https://a.example https://b.example"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// The --config path itself may come from the environment.
func TestConfigFileFromEnvironment(t *testing.T) {
	file := writeConfig(t, `retention = "48h"`)
	c, err := loadServeConfig(t, nil, map[string]string{"UPLOADGATE_CONFIG": file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Retention != 48*time.Hour {
		t.Fatalf("retention %v, want 48h from the file named by UPLOADGATE_CONFIG", c.Retention)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"unknown key", `max-size = "1MiB"` + "\nmax_size = 5\n", []string{`unknown key "max_size"`}},
		{"config names another", `config = "other.toml"`, []string{`unknown key "config"`}},
		{"bad value", `session-idle-ttl = "soon"`, []string{`invalid key "session-idle-ttl"`}},
		{"array for a single value", `listen = ["a:1", "b:2"]`, []string{`invalid key "listen"`, "single value"}},
		{"section", "[s3]\nbucket = \"b\"\n", []string{`unknown key "s3"`, "without sections"}},
		{"table for a flag", "[listen]\nport = 1\n", []string{`invalid key "listen"`, "table"}},
		{"syntax", "max-size = \n", []string{"line 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadServeConfig(t, []string{"--config", writeConfig(t, tc.text)}, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, errUsage) {
				t.Errorf("error %q is not a usage error (exit code 2)", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// A syntax error must not echo the line: it may hold a secret.
func TestConfigFileSyntaxErrorHidesValues(t *testing.T) {
	const secret = "s3cr3t-s3cr3t-s3cr3t"
	_, err := loadServeConfig(t, []string{"--config", writeConfig(t, "secret = "+secret+"\n")}, nil)
	if err == nil {
		t.Fatal("an unquoted string was accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q repeats the secret", err)
	}
}

// `uploadgate serve --config` with an unknown key exits with code 2 and names the key.
func TestServeConfigUnknownKeyExitCode(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "UPLOADGATE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	file := writeConfig(t, "data-dir = \""+t.TempDir()+"\"\nlisten-address = \"127.0.0.1:1\"\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "--config", file}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `unknown key "listen-address"`) {
		t.Fatalf("stderr %q does not name the unknown key", stderr.String())
	}
}

// An empty UPLOADGATE_* variable counts as unset: the config file (or the
// default) gives the setting, as if the variable were not there.
func TestEmptyEnvironmentIsUnset(t *testing.T) {
	clearEnv(t)
	file := writeConfig(t, "listen = \"127.0.0.1:9001\"\ndata-dir = \"/srv/file\"\n")
	t.Setenv("UPLOADGATE_LISTEN", "")
	t.Setenv("UPLOADGATE_DATA_DIR", "")
	t.Setenv("UPLOADGATE_MAX_SIZE", "")
	var c serveConfig
	fs := newServeFlags(&c)
	if _, err := parseFlags(fs, []string{"--config", file}, nil); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, c.Config); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.DataDir != "/srv/file" || c.MaxSize != 0 {
		t.Fatalf("listen %q, data-dir %q, max-size %d: want the file's and the default", c.Listen, c.DataDir, c.MaxSize)
	}
}

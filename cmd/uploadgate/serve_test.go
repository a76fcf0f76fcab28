package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/boltstore"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
)

const testSecret = "serve-test-secret-0123456789"

// clearEnv unsets every UPLOADGATE_* variable for the test: serve reads them.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "UPLOADGATE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// syncBuffer is a log that the server writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is `uploadgate serve` running in this process.
type testServer struct {
	URL    string
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

var listeningLog = regexp.MustCompile(`msg="uploadgate listening" addr=(\S+)`)

// startServe runs serve with args on a free loopback port until the test ends.
func startServe(t *testing.T, args ...string) *testServer {
	t.Helper()
	clearEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	args = append([]string{"--listen", "127.0.0.1:0", "--secret", testSecret}, args...)
	go func() { s.done <- serveContext(ctx, args, io.Discard, s.log) }()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("log of serve %s:\n%s", strings.Join(args, " "), s.log)
		}
	})
	deadline := time.After(20 * time.Second)
	for {
		if m := listeningLog.FindStringSubmatch(s.log.String()); m != nil {
			s.URL = "http://" + m[1]
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("serve ended during start-up: %v\n%s", err, s.log)
		case <-deadline:
			t.Fatalf("serve did not listen within 20 s:\n%s", s.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop shuts the server down as SIGTERM does and returns serve's error.
func (s *testServer) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(40 * time.Second):
		return errors.New("serve did not return within 40 s of its context's end")
	}
}

// signSlot mints a slot for a file of size bytes at dir/name and returns its PUT URL.
func signSlot(t *testing.T, baseURL, dir, name string, size int) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args := []string{"sign", "--secret", testSecret, "--base-url", baseURL + "/upload/", "--size", fmt.Sprint(size),
		"--type", "application/octet-stream", "--dir", dir, name}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("uploadgate %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return strings.SplitN(out.String(), "\n", 2)[0]
}

func put(t *testing.T, url string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// uploadIDs lists the uploads that disk storage holds in dataDir.
func uploadIDs(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && !strings.HasSuffix(n, ".info") {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	return ids
}

// uploadOnce runs a gateway with args, uploads one file to the slot
// d1/hello.txt and returns the IDs of the uploads in dataDir.
func uploadOnce(t *testing.T, dataDir string, args ...string) []string {
	t.Helper()
	s := startServe(t, append([]string{"--data-dir", dataDir}, args...)...)
	body := []byte("hello")
	if status := put(t, signSlot(t, s.URL, "d1", "hello.txt", len(body)), body); status != http.StatusCreated {
		t.Fatalf("PUT: %d, want 201", status)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	return uploadIDs(t, dataDir)
}

func writeKey(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
}

// --id-key-file reads the key, which may be group-readable, and never writes
// <data-dir>/id.key; the same key in <data-dir>/id.key derives the same IDs.
func TestIDKeyFile(t *testing.T) {
	keyHex := strings.Repeat("0123456789abcdef", 4)
	key, _ := hex.DecodeString(keyHex)
	want := []string{auth.DeriveUploadID(key, "d1/hello.txt")}

	keyFile := filepath.Join(t.TempDir(), "secrets", "id.key")
	writeKey(t, keyFile, keyHex+"\n", 0o640)
	viaFlag := t.TempDir()
	if got := uploadOnce(t, viaFlag, "--id-key-file", keyFile); !slices.Equal(got, want) {
		t.Errorf("with --id-key-file: uploads %v, want %v (derived from the file's key)", got, want)
	}
	if _, err := os.Stat(filepath.Join(viaFlag, "id.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("with --id-key-file, <data-dir>/id.key exists (%v); it must not be created", err)
	}
	if b, _ := os.ReadFile(keyFile); string(b) != keyHex+"\n" {
		t.Errorf("the key file was changed: %q", b)
	}

	viaDataDir := t.TempDir()
	writeKey(t, filepath.Join(viaDataDir, "id.key"), keyHex+"\n", 0o600)
	if got := uploadOnce(t, viaDataDir); !slices.Equal(got, want) {
		t.Errorf("with the same key in <data-dir>/id.key: uploads %v, want %v", got, want)
	}

	// An id.key of another key left in the data directory is ignored, with a warning.
	leftOver := t.TempDir()
	other := strings.Repeat("fe", 32) + "\n"
	writeKey(t, filepath.Join(leftOver, "id.key"), other, 0o600)
	s := startServe(t, "--data-dir", leftOver, "--id-key-file", keyFile)
	body := []byte("hello")
	if status := put(t, signSlot(t, s.URL, "d1", "hello.txt", len(body)), body); status != http.StatusCreated {
		t.Fatalf("PUT: %d, want 201", status)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if got := uploadIDs(t, leftOver); !slices.Equal(got, want) {
		t.Errorf("with --id-key-file and another id.key in the data directory: uploads %v, want %v", got, want)
	}
	if !strings.Contains(s.log.String(), "level=WARN") || !strings.Contains(s.log.String(), "differs from --id-key-file") {
		t.Errorf("no warning about the data directory's other id.key:\n%s", s.log)
	}
	if strings.Contains(s.log.String(), keyHex) || strings.Contains(s.log.String(), strings.TrimSpace(other)) {
		t.Errorf("the log shows a key:\n%s", s.log)
	}
	if b, _ := os.ReadFile(filepath.Join(leftOver, "id.key")); string(b) != other {
		t.Errorf("the data directory's id.key was changed")
	}
}

// A bad --id-key-file stops serve with a usage error (exit code 2) naming the
// flag, and creates no <data-dir>/id.key.
func TestIDKeyFileErrors(t *testing.T) {
	clearEnv(t)
	const placeholder = "change-me-64-hex-digits-from-urandom"
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"missing", "", 0, "no such file"},
		{"empty", "\n", 0o600, "empty"},
		{"not hex", placeholder + "\n", 0o644, "not 32 bytes of hex"},
		{"too short", "00112233445566778899aabbccddee\n", 0o600, "not 32 bytes of hex"},
		{"writable by others", strings.Repeat("ab", 32), 0o666, "change the key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "id.key")
			if tc.mode != 0 {
				writeKey(t, keyFile, tc.content, tc.mode)
			}
			dataDir := filepath.Join(dir, "data")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stderr syncBuffer
			err := serveContext(ctx, []string{"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--secret", testSecret,
				"--id-key-file", keyFile}, io.Discard, &stderr)
			if ctx.Err() != nil {
				t.Fatalf("serve ran until the test's deadline; it should have refused to start:\n%s", stderr.String())
			}
			if !errors.Is(err, errUsage) {
				t.Errorf("error %v is not a usage error (exit code 2)", err)
			}
			msg := fmt.Sprint(err)
			if !strings.HasPrefix(msg, "invalid --id-key-file: ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming --id-key-file and saying %q", msg, tc.want)
			}
			if c := strings.TrimSpace(tc.content); c != "" && strings.Contains(msg, c) {
				t.Errorf("error %q repeats the file's content", msg)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "id.key")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("<data-dir>/id.key was created (%v)", err)
			}
		})
	}
}

// --id-key-file, --network-timeout and --lock-timeout come from flags, the
// environment or the config file like the others, and reach the gateway's
// and the storage's configuration.
func TestServeSettingsReachGatewayConfig(t *testing.T) {
	c, err := loadServeConfig(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := c.gatewaySettings(); g.NetworkTimeout != 60*time.Second || g.LockTimeout != 20*time.Second || c.IDKeyFile != "" {
		t.Errorf("defaults: network timeout %v, lock timeout %v, id key file %q; want 60s, 20s, none", g.NetworkTimeout, g.LockTimeout, c.IDKeyFile)
	}

	file := writeConfig(t, `
id-key-file = "/run/secrets/id.key"
network-timeout = "90s"
lock-timeout = "5s"
`)
	c, err = loadServeConfig(t, []string{"--config", file, "--network-timeout", "2m"}, map[string]string{"UPLOADGATE_LOCK_TIMEOUT": "7s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	g, s := c.gatewaySettings(), c.storageSettings()
	if c.IDKeyFile != "/run/secrets/id.key" {
		t.Errorf("id-key-file from the config file: %q", c.IDKeyFile)
	}
	if g.NetworkTimeout != 2*time.Minute {
		t.Errorf("gateway network timeout %v, want 2m from the flag", g.NetworkTimeout)
	}
	if g.LockTimeout != 7*time.Second || s.CreateLockTimeout != 7*time.Second {
		t.Errorf("lock timeout: gateway %v, storage %v; want 7s from the environment", g.LockTimeout, s.CreateLockTimeout)
	}

	c, err = loadServeConfig(t, nil, map[string]string{"UPLOADGATE_ID_KEY_FILE": "/etc/uploadgate/id.key"})
	if err != nil || c.IDKeyFile != "/etc/uploadgate/id.key" {
		t.Errorf("UPLOADGATE_ID_KEY_FILE: %q, %v", c.IDKeyFile, err)
	}
}

// With a short --network-timeout, a PUT whose body stalls ends within a few
// seconds, and the bytes that arrived are kept (a HEAD on the slot shows them).
func TestNetworkTimeoutEndsStalledBody(t *testing.T) {
	s := startServe(t, "--data-dir", t.TempDir(), "--network-timeout", "1s")
	const size, sent = 1000, 300
	putURL := signSlot(t, s.URL, "d1", "stall.bin", size)
	req, err := http.NewRequest(http.MethodPut, putURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		req.URL.RequestURI(), req.URL.Host, size)
	if _, err := conn.Write(bytes.Repeat([]byte("x"), sent)); err != nil {
		t.Fatal(err)
	}
	// Send nothing more and wait for the gateway to give up on the body.
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	elapsed := time.Since(start)
	switch {
	case err == nil:
		resp.Body.Close()
		t.Logf("stalled PUT answered %d after %v", resp.StatusCode, elapsed.Round(time.Millisecond))
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled PUT answered %d, want 408 Request Timeout", resp.StatusCode)
		}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		t.Logf("stalled PUT: connection closed after %v", elapsed.Round(time.Millisecond))
	default:
		t.Fatalf("stalled PUT: no answer and no close after %v: %v", elapsed.Round(time.Millisecond), err)
	}
	if elapsed < 900*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("the stalled body ended after %v; want about --network-timeout (1s), far below the default 60s", elapsed)
	}

	head, err := http.NewRequest(http.MethodHead, putURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.DefaultClient.Do(head)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		off := resp.Header.Get("Upload-Offset")
		if resp.StatusCode == http.StatusOK && off == fmt.Sprint(sent) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD on the slot: %d, Upload-Offset %q; want 200 and %d (the bytes that arrived)", resp.StatusCode, off, sent)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --session-db puts the session store elsewhere than the data directory:
// a session written there is found by the next start with the same flag.
func TestSessionDBPath(t *testing.T) {
	data := t.TempDir()
	db := filepath.Join(t.TempDir(), "fast", "sessions.db")
	s := startServe(t, "--data-dir", data, "--session-db", db)
	if code := put(t, signSlot(t, s.URL, "d", "a.bin", 5), []byte("hello")); code != http.StatusCreated {
		t.Fatalf("PUT: %d", code)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "sessions.db")); !os.IsNotExist(err) {
		t.Errorf("sessions.db in the data directory: %v; want none", err)
	}
	st, err := pebblestore.Open(db, nil)
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	defer st.Close()
	// The slot leads to its own upload by the ID it derives (no mapping stored).
	id := auth.DeriveUploadID(readIDKey(t, data), "d/a.bin")
	if _, err := st.LookupSlot(context.Background(), auth.SlotKey("d/a.bin")); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Errorf("the slot's own upload has a stored mapping: %v", err)
	}
	if sess, err := st.Get(context.Background(), id); err != nil || !sess.Complete {
		t.Fatalf("session in %s: %+v, %v; want the complete upload's", db, sess, err)
	}
}

// One rule for every slot secret: at least 16 characters, whether it comes
// from --secret or from --secret-file (any line of it); the error names the
// option and never repeats the secret.
func TestSecretMinimumLength(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	const short = "short-secret"
	file := filepath.Join(dir, "secrets")
	for _, tc := range []struct {
		name, option string
		args         []string
		content      string
	}{
		{"flag", "--secret", []string{"--secret", short}, ""},
		{"flag, second", "--secret", []string{"--secret", testSecret + "," + short}, ""},
		{"file", "--secret-file", []string{"--secret-file", file}, short + "\n"},
		{"file, second line", "--secret-file", []string{"--secret-file", file}, testSecret + "\n" + short + "\n"},
	} {
		if tc.content != "" {
			writeKey(t, file, tc.content, 0o600)
		}
		var stdout, stderr bytes.Buffer
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}, tc.args...)
		code := run(args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "invalid "+tc.option+":") || !strings.Contains(stderr.String(), "shorter than 16") {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming %s", tc.name, code, stderr.String(), tc.option)
		}
		if strings.Contains(stderr.String(), short) {
			t.Errorf("%s: the error repeats the secret", tc.name)
		}
	}
}

// A data directory of an earlier release holds its sessions in a bbolt file
// at sessions.db: the first start imports it into the Pebble database that
// takes its place, keeps the file as sessions.db.bbolt-imported, and says so
// in its log.
func TestServeImportsEarlierSessionFile(t *testing.T) {
	data := t.TempDir()
	s := startServe(t, "--data-dir", data) // creates id.key
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	key := readIDKey(t, data)
	// The earlier release's file: a complete upload's session, its slot mapped.
	db := filepath.Join(data, "sessions.db")
	if err := os.RemoveAll(db); err != nil {
		t.Fatal(err)
	}
	old, err := boltstore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := auth.NewSessions(old, auth.DefaultPolicy(), nil)
	const path = "d/old.bin"
	id := auth.DeriveUploadID(key, path)
	if _, created, err := m.Open(ctx, auth.Slot{Path: path, Size: 5, Protocol: auth.ProtoV2}, id, auth.KindWhole, ""); err != nil || !created {
		t.Fatalf("Open in the bbolt file: %v, %v", created, err)
	}
	if _, err := m.Complete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s = startServe(t, "--data-dir", data)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.log.String(), "imported the session file of an earlier release") {
		t.Errorf("no log line about the import:\n%s", s.log)
	}
	if fi, err := os.Stat(db); err != nil || !fi.IsDir() {
		t.Fatalf("sessions.db after the import: %v, %v; want the database directory", fi, err)
	}
	if _, err := os.Stat(db + ".bbolt-imported"); err != nil {
		t.Errorf("the imported file is not kept: %v", err)
	}
	st, err := pebblestore.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if sess, err := st.Get(ctx, id); err != nil || !sess.Complete {
		t.Errorf("the imported session: %+v, %v; want the complete upload's", sess, err)
	}
	if got, err := st.LookupSlot(ctx, auth.SlotKey(path)); err != nil || got != id {
		t.Errorf("the imported slot mapping: %q, %v; want %q", got, err, id)
	}
}

// readIDKey reads the upload ID key that serve created in a data directory.
func readIDKey(t *testing.T, data string) []byte {
	t.Helper()
	keyHex, err := os.ReadFile(filepath.Join(data, "id.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, ok := decodeIDKey(strings.TrimSpace(string(keyHex)))
	if !ok {
		t.Fatalf("id.key holds %q", keyHex)
	}
	return key
}

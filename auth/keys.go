package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// keyFileBytes is the amount of randomness in a generated key (hex-encoded in the file).
const keyFileBytes = 32

// maxKeyFileSize bounds what LoadOrCreateKeyFile, ReadKeyFile,
// ReadSecretFile and ReadSmallFile read.
const maxKeyFileSize = 64 << 10

// ErrFileTooLarge is returned (wrapped) for a file larger than those bound.
var ErrFileTooLarge = fmt.Errorf("larger than %d bytes", maxKeyFileSize)

// LoadOrCreateKeyFile returns the key stored at path, creating it first if
// the file does not exist: 32 random bytes, hex-encoded, written atomically
// with mode 0600 (the directory is created with mode 0700 if missing). created
// reports whether this call wrote the file. An existing file must be private
// to its owner and non-empty; surrounding whitespace is trimmed.
func LoadOrCreateKeyFile(path string) (key string, created bool, err error) {
	key, err = readKeyFile(path, privateKey)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("create key file directory: %w", err)
	}
	var raw [keyFileBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate key for %s: %w", path, err)
	}
	key = hex.EncodeToString(raw[:])

	tmp, err := writeTempFile(dir, "."+filepath.Base(path)+".tmp-*", []byte(key+"\n"))
	if err != nil {
		return "", false, fmt.Errorf("write key file %s: %w", path, err)
	}
	defer os.Remove(tmp) // a no-op once renamed

	// Publish with a hard link, which fails rather than replace a key that
	// another process created in the meantime; fall back to rename where the
	// file system has no hard links.
	switch err := os.Link(tmp, path); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		key, err = readKeyFile(path, privateKey)
		return key, false, err
	default:
		if err := os.Rename(tmp, path); err != nil {
			return "", false, fmt.Errorf("write key file %s: %w", path, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return "", false, fmt.Errorf("write key file %s: %w", path, err)
	}
	return key, true, nil
}

// ReadKeyFile returns the key stored at path, a file provisioned from outside
// (a mounted Kubernetes or Docker secret); it never creates one. Surrounding
// whitespace is trimmed and an empty file is an error. Like ReadSecretFile, and
// unlike LoadOrCreateKeyFile, it accepts a file that group and others can read,
// as secret volumes are (0644, or 0440 with fsGroup): keeping such a file
// private is the job of its mount. It refuses a file that group or others can
// write, because whoever can write the key chooses it.
func ReadKeyFile(path string) (string, error) {
	return readKeyFile(path, ownerWritable)
}

// ReadSecretFile reads slot secrets, one per line; blank lines and lines
// starting with "#" are skipped, surrounding whitespace is trimmed. It is an
// error if the file holds no secret.
func ReadSecretFile(path string) ([]string, error) {
	data, err := ReadSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	var secrets []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxKeyFileSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		secrets = append(secrets, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("read secret file %s: no secret in it", path)
	}
	return secrets, nil
}

// keyFileRule is which permission bits of a key file readKeyFile refuses.
type keyFileRule int

const (
	// privateKey: group and others may neither read nor write the file.
	privateKey keyFileRule = iota
	// ownerWritable: group and others may read the file but not write it.
	ownerWritable
)

// check returns an error if perm breaks the rule.
func (r keyFileRule) check(path string, perm fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil // no Unix permission bits there
	}
	switch {
	case r == privateKey && perm&0o077 != 0:
		return fmt.Errorf("read key file %s: mode %04o lets group or others access the key; it must be readable by its owner only (chmod 600 %s)", path, perm, path)
	case r == ownerWritable && perm&0o022 != 0:
		return fmt.Errorf("read key file %s: mode %04o lets group or others change the key; it must be writable by its owner only (chmod go-w %s)", path, perm, path)
	}
	return nil
}

// readKeyFile reads an existing key file whose mode follows rule.
func readKeyFile(path string, rule keyFileRule) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("read key file %s: not a regular file", path)
	}
	if err := rule.check(path, info.Mode().Perm()); err != nil {
		return "", err
	}
	data, err := readSmall(f)
	if err != nil {
		return "", fmt.Errorf("read key file %s: %w", path, err)
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return "", fmt.Errorf("read key file %s: file is empty", path)
	}
	return key, nil
}

// ReadSmallFile reads a whole file of at most 64 KiB; a larger one fails
// with an error wrapping ErrFileTooLarge.
func ReadSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readSmall(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// readSmall reads r to the end, failing beyond maxKeyFileSize bytes.
func readSmall(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, ErrFileTooLarge
	}
	return data, nil
}

// writeTempFile writes data to a new mode-0600 file in dir, synced to disk, and returns its name.
func writeTempFile(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern) // CreateTemp creates with mode 0600
	if err != nil {
		return "", fmt.Errorf("create temporary file: %w", err)
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write temporary file: %w", err)
	}
	return name, nil
}

// syncDir flushes a directory entry change (a new or renamed file) to disk.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

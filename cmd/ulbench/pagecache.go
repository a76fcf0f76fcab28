package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A server's RSS counts the pages of its binary that it maps, and how many
// it maps depends on how the file came into the page cache: the same
// uploadgate binary measured 42.8 MiB of file pages at one upload right
// after `go build` and 26.0 MiB once its pages had been dropped, with the
// same code running (most likely because a file just written sits in large
// folios, and a page fault maps a whole folio; the effect was measured, the
// cause not traced in the kernel). A server in production
// starts from an image read from disk, so the driver drops the servers'
// binaries from the page cache before it starts them: they are read back in
// the kernel's readahead pieces, the same way for every target.

// evictPageCache writes back and drops the page cache of the file at path
// (the pages that a running process maps stay).
func evictPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("evict %s from the page cache: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("evict %s from the page cache: sync: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evict %s from the page cache: %w", path, err)
	}
	return nil
}

// coldCopy copies the executable at src into dir and drops the copy from the
// page cache: the driver's own binary, which serves stock tusd and the copy
// server, is mapped by the driver, whose pages would stay.
func coldCopy(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	dst := filepath.Join(dir, "ulbench-server")
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o700)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	return dst, evictPageCache(dst)
}

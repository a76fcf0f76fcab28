package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The fault suite in its short form (what `make test` runs): smaller files
// and the in-process gateway with a 2 s per-read timeout for the slow bodies.
// `make faults` (ulbench faults) runs the full form against the binary.

var ugBinary string

func TestMain(m *testing.M) {
	// The servers this package starts are the test binary itself.
	if os.Getenv("ULBENCH_SERVE") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ulbench-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ugBinary = filepath.Join(dir, "uploadgate")
	if err := goBuild(ugBinary, "./cmd/uploadgate"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func TestFaults(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range faultCases {
		t.Run(c.Name, func(t *testing.T) {
			e := &faultEnv{Short: true, UG: ugBinary, Self: self, SelfEnv: []string{"ULBENCH_SERVE=1"},
				Dir: t.TempDir(), Logf: t.Logf}
			err := c.Run(e)
			var sk errSkip
			if errors.As(err, &sk) {
				if (c.Name == "kill-resume-s3" && os.Getenv("UPLOADGATE_SKIP_S3") == "1") || c.Name == "disk-full" {
					t.Skip(sk.reason)
				}
				t.Fatal(sk.reason)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

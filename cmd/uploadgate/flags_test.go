package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestFlagsOverrideEnvironment(t *testing.T) {
	var c serveConfig
	fs := newServeFlags(&c)
	env := map[string]string{
		"UPLOADGATE_LISTEN":       "127.0.0.1:9000",
		"UPLOADGATE_MAX_SIZE":     "2MiB",
		"UPLOADGATE_SECRET":       "env-secret-0123456789,second-secret-0123456789",
		"UPLOADGATE_CORS_ORIGINS": "https://a.example",
	}
	rest, err := parseFlags(fs, []string{"--listen", "127.0.0.1:9001"}, func(k string) string { return env[k] })
	if err != nil || len(rest) != 0 {
		t.Fatal(err, rest)
	}
	if c.Listen != "127.0.0.1:9001" {
		t.Errorf("flag did not override env: %s", c.Listen)
	}
	if c.MaxSize != 2<<20 {
		t.Errorf("max size %d from env", c.MaxSize)
	}
	if len(c.Secrets.vals) != 2 || c.Secrets.vals[1] != "second-secret-0123456789" {
		t.Errorf("secrets %v", c.Secrets.vals)
	}
	if len(c.CORSOrigins.vals) != 1 || c.CORSOrigins.vals[0] != "https://a.example" {
		t.Errorf("cors origins %v: the env value must replace the default", c.CORSOrigins.vals)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfigIsOneLineAndExitCode2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--max-size", "lots"}, "max-size"},
		{[]string{"serve", "--listen", "nowhere"}, "--listen"},
		{[]string{"serve", "--upload-base", "upload"}, "--upload-base"},
		{[]string{"serve", "--tus-base", "/upload/x/"}, "--tus-base"},
		{[]string{"serve", "--public-url", "ftp://x"}, "--public-url"},
		{[]string{"serve", "--session-idle-ttl", "0s"}, "--session-idle-ttl"},
		{[]string{"serve", "--secret", "short"}, "--secret"},
		{[]string{"serve", "--trusted-proxies", "not-an-ip"}, "--trusted-proxies"},
		{[]string{"serve", "--log-format", "xml"}, "--log-format"},
		{[]string{"serve", "--network-timeout", "0s"}, "--network-timeout"},
		{[]string{"serve", "--network-timeout", "soon"}, "network-timeout"},
		{[]string{"serve", "--lock-timeout", "-1s"}, "--lock-timeout"},
		{[]string{"serve", "--redis-url", "http://x"}, "--redis-url"},
		{[]string{"serve", "--session-db", "s.db", "--redis-url", "redis://127.0.0.1:1"}, "--session-db"},
		{[]string{"serve", "--storage", "s3"}, "--s3-bucket"},
		{[]string{"serve", "--storage", "s3", "--s3-bucket", "b", "--s3-endpoint", "nowhere"}, "--s3-endpoint"},
		{[]string{"serve", "--storage", "s3", "--s3-bucket", "b", "--s3-preferred-part-size", "6GiB"}, "--s3-preferred-part-size"},
		{[]string{"serve", "--storage", "tape"}, "--storage"},
		{[]string{"serve", "--no-such-flag"}, "no-such-flag"},
		{[]string{"sign", "--size", "5"}, "NAME"},
		{[]string{"sign", "--secret", "0123456789abcdef", "x.txt"}, "--size"},
		{[]string{"sign", "--secret", "0123456789abcdef", "--size", "1", "--protocol", "v9", "x"}, "--protocol"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(c.args, &out, &errOut)
		msg := errOut.String()
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", c.args, code, msg)
		}
		if strings.Count(strings.TrimSpace(msg), "\n") != 0 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: message %q should be one line naming %s", c.args, msg, c.want)
		}
	}
}

func TestEnvErrorNamesVariable(t *testing.T) {
	var c serveConfig
	fs := newServeFlags(&c)
	_, err := parseFlags(fs, nil, func(k string) string {
		if k == "UPLOADGATE_SESSION_MAX_TTL" {
			return "forever"
		}
		return ""
	})
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "UPLOADGATE_SESSION_MAX_TTL") {
		t.Fatalf("got %v", err)
	}
}

func TestSignPrintsPutThenGet(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"sign", "--secret", "test-secret-0363", "--base-url", "http://127.0.0.1:1/upload/", "--size", "5", "--protocol", "v1", "--dir", "d1", "a b.txt"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != lines[1]+"?v="+lines[0][len(lines[1])+3:] || !strings.HasPrefix(lines[1], "http://127.0.0.1:1/upload/d1/a%20b.txt") {
		t.Fatalf("output %q", out.String())
	}
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "100": 100, "1KiB": 1024, "100MiB": 100 << 20, "2GB": 2e9, "512k": 512 << 10} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "MiB", "99999999999999TiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// Every subcommand's -h (and --help) prints its usage with its flags on
// standard output and exits 0; -h never reaches the error path.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"sign", "-h"}, []string{"usage: uploadgate sign", "-secret-file", "-protocol", "-size"}},
		{[]string{"sign", "--help"}, []string{"usage: uploadgate sign", "-ttl"}},
		{[]string{"sign", "--size", "5", "-h"}, []string{"usage: uploadgate sign"}},
		{[]string{"serve", "-h"}, []string{"usage: uploadgate serve", "-listen", "-secret-file"}},
		{[]string{"serve", "--help"}, []string{"usage: uploadgate serve", "-data-dir"}},
		{[]string{"version", "-h"}, []string{"usage: uploadgate version"}},
		{[]string{"-h"}, []string{"uploadgate serve", "uploadgate sign"}},
		{[]string{"help"}, []string{"uploadgate serve", "uploadgate sign"}},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != 0 || errOut.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut.String())
			continue
		}
		for _, want := range tc.flags {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: usage lacks %q:\n%s", tc.args, want, out.String())
			}
		}
	}
}

// A flag error keeps flag.ErrHelp for -h, and errUsage for every error.
func TestParseFlagsKeepsErrHelp(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	_, err := parseFlags(fs, []string{"-h"}, func(string) string { return "" })
	if !errors.Is(err, flag.ErrHelp) || !errors.Is(err, errUsage) {
		t.Fatalf("got %v", err)
	}
	_, err = parseFlags(fs, []string{"-nope"}, func(string) string { return "" })
	if errors.Is(err, flag.ErrHelp) || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-nope") {
		t.Fatalf("got %v", err)
	}
}

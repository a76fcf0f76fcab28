package testproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFreePortListens(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listening on the free port %d: %v", port, err)
	}
	l.Close()
}

func TestStartLoggedAppends(t *testing.T) {
	log := filepath.Join(t.TempDir(), "out.log")
	for _, word := range []string{"first", "second"} {
		p, err := Start(exec.Command("sh", "-c", "echo "+word+"; echo "+word+" >&2"), log)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WaitReady(10*time.Second, 10*time.Millisecond, func() error { return errors.New("never") }); !errors.Is(err, ErrExited) {
			t.Fatalf("WaitReady on a process that ends: %v; want ErrExited", err)
		}
	}
	if b := readFile(t, log); b != "first\nfirst\nsecond\nsecond\n" {
		t.Fatalf("log %q; want the output of both runs", b)
	}
}

func TestWaitReady(t *testing.T) {
	calls := 0
	if err := WaitReady(nil, 10*time.Second, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("WaitReady: %v after %d calls; want nil after 3", err, calls)
	}
	err := WaitReady(nil, 30*time.Millisecond, 5*time.Millisecond, func() error { return errors.New("refused") })
	if err == nil || errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("WaitReady past its timeout: %v; want a timeout naming the last error", err)
	}
	p, err := Start(exec.Command("sh", "-c", "exit 3"), "")
	if err != nil {
		t.Fatal(err)
	}
	err = p.WaitReady(10*time.Second, 10*time.Millisecond, func() error { return errors.New("refused") })
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("WaitReady on a process that exited: %v; want ErrExited with its exit status", err)
	}
}

func TestStop(t *testing.T) {
	p, err := Start(exec.Command("sleep", "60"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Stop(10 * time.Second) {
		t.Fatal("sleep needed SIGKILL")
	}
	if p.Stop(10*time.Millisecond) || (*Proc)(nil).Stop(time.Second) {
		t.Fatal("stopping a stopped process, or none, reported a kill")
	}

	// A process that ignores SIGTERM is killed after the grace period.
	log := filepath.Join(t.TempDir(), "log")
	p, err = Start(exec.Command("sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.1; done`), log)
	if err != nil {
		t.Fatal(err)
	}
	trapped := func() error {
		if readFile(t, log) != "ready\n" {
			return errors.New("no trap yet")
		}
		return nil
	}
	if err := p.WaitReady(10*time.Second, 10*time.Millisecond, trapped); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !p.Stop(200 * time.Millisecond) {
		t.Fatal("a process that ignores SIGTERM was not killed")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("killed after %v; want the grace period of 200ms first", d)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServerRestart(t *testing.T) {
	var pids []int
	var s *Server
	s = &Server{
		Name:    "sleep",
		Command: func() *exec.Cmd { return exec.Command("sleep", "60") },
		LogPath: filepath.Join(t.TempDir(), "log"),
		Ready: func() error {
			pids = append(pids, s.proc.cmd.Process.Pid)
			return nil
		},
		Within: 10 * time.Second,
		Poll:   10 * time.Millisecond,
		Grace:  10 * time.Second,
	}
	s.Start(t)
	first := s.proc
	s.Restart()
	if len(pids) != 2 || pids[0] == pids[1] {
		t.Fatalf("ready was asked for processes %v; want two", pids)
	}
	select {
	case <-first.exited:
	default:
		t.Fatal("Restart left the first process running")
	}
	s.Stop()
	s.Stop()
}

// fakeT records what a Server does with its test.
type fakeT struct {
	failed   string
	cleanups []func()
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Skip(args ...any)  { panic("skip") }
func (f *fakeT) Fatal(args ...any) { panic("fatal") }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func TestServerNotReady(t *testing.T) {
	ft := &fakeT{}
	s := &Server{
		Name:    "sh",
		Command: func() *exec.Cmd { return exec.Command("sh", "-c", "echo no config; exit 1") },
		LogPath: filepath.Join(t.TempDir(), "log"),
		Ready:   func() error { return errors.New("refused") },
		Within:  10 * time.Second,
		Poll:    10 * time.Millisecond,
		Grace:   time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Start(ft)
	}()
	<-done
	if !strings.Contains(ft.failed, "sh did not get ready") || !strings.Contains(ft.failed, "exit status 1") ||
		!strings.Contains(ft.failed, "no config") {
		t.Fatalf("failure %q; want the exit status and the log", ft.failed)
	}
	if len(ft.cleanups) != 1 {
		t.Fatalf("%d cleanups registered; want the Stop", len(ft.cleanups))
	}
	ft.cleanups[0]()
}

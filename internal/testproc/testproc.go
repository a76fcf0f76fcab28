// Package testproc starts and stops the server processes tests run against
// (redis-server, versitygw, uploadgate itself): it picks a free loopback
// port, sends a process's output to a log file for the failure message, waits
// until the process is ready and stops it by its own PID, SIGTERM first and
// SIGKILL after a grace period.
//
// It does not import "testing", so that a program may use it as well; Require
// and Server take the few methods of testing.TB they need.
package testproc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// T is the part of testing.TB that Require and Server use.
type T interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Require makes sure tool is in PATH. When it is not, the test fails with the
// message missing, unless the environment variable skipVar is "1": then the
// test is skipped.
func Require(t T, tool, skipVar, missing string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv(skipVar) == "1" {
			t.Skip(tool + " not installed and " + skipVar + "=1")
		}
		t.Fatal(missing)
	}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// may take it before it is used; a caller that can tell retries.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is FreePort for a test: it fails t when there is no free port.
func Port(t T) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// StartLogged starts cmd with its standard output and error appended to the
// file logPath, which is created when missing.
func StartLogged(cmd *exec.Cmd, logPath string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close() // the child has a descriptor of its own
	cmd.Stdout, cmd.Stderr = f, f
	return cmd.Start()
}

// Stop ends process p, whose exit closes exited: SIGTERM, then SIGKILL when
// it has not exited after grace; it returns once exited is closed and reports
// whether the SIGKILL was needed. Only p's own PID is signalled, and a
// process that has exited already is not signalled at all.
func Stop(p *os.Process, exited <-chan struct{}, grace time.Duration) (killed bool) {
	select {
	case <-exited:
		return false
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return false
	case <-time.After(grace):
		_ = p.Kill()
		<-exited
		return true
	}
}

// ErrExited is what WaitReady returns when the process exited before it was
// ready.
var ErrExited = errors.New("exited before it was ready")

// WaitReady calls ready every interval until it returns nil, and then returns
// nil. It returns ErrExited as soon as exited is closed (a nil exited never
// is), and an error naming ready's last error once timeout has passed.
func WaitReady(exited <-chan struct{}, timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return ErrExited
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// HTTPStatus GETs url with a timeout of 2s, reads and discards the body and
// returns the status code.
func HTTPStatus(url string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Proc is a started process whose exit is watched in the background.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Start starts cmd, with its output appended to logPath unless that is empty
// (then cmd's Stdout and Stderr are left as they are).
func Start(cmd *exec.Cmd, logPath string) (*Proc, error) {
	var err error
	if logPath != "" {
		err = StartLogged(cmd, logPath)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// WaitReady is WaitReady for the process; when it exited, the error tells
// how.
func (p *Proc) WaitReady(timeout, interval time.Duration, ready func() error) error {
	err := WaitReady(p.exited, timeout, interval, ready)
	if errors.Is(err, ErrExited) {
		return fmt.Errorf("%w (%v)", err, p.err)
	}
	return err
}

// Stop stops the process as Stop does, waiting at most grace after SIGTERM.
// It does nothing on a nil Proc.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	if p == nil {
		return false
	}
	return Stop(p.cmd.Process, p.exited, grace)
}

// Server is a server process a test runs against, such as redis-server: Start
// starts it and waits until it is ready, and it is stopped when the test ends.
// It can be stopped and started again with the same command line, so on the
// same port and data directory.
type Server struct {
	// Name is the program's name in messages.
	Name string
	// Command makes the command line; it is called at every start.
	Command func() *exec.Cmd
	// LogPath is the file the process's output is appended to; it is shown
	// when the process does not get ready.
	LogPath string
	// Ready returns nil once the server serves; it is called every Poll
	// until Within has passed.
	Ready        func() error
	Within, Poll time.Duration
	// Grace is how long Stop waits after SIGTERM before it sends SIGKILL.
	Grace time.Duration

	t    T
	proc *Proc
}

// Start starts the server and returns once it is ready; it fails t when the
// server does not start or does not get ready. The server is stopped when t
// ends, also after a failed start.
func (s *Server) Start(t T) {
	t.Helper()
	s.t = t
	t.Cleanup(s.Stop)
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	p, err := Start(s.Command(), s.LogPath)
	if err != nil {
		s.t.Fatalf("start %s: %v", s.Name, err)
	}
	s.proc = p
	if err := p.WaitReady(s.Within, s.Poll, s.Ready); err != nil {
		log, _ := os.ReadFile(s.LogPath)
		s.t.Fatalf("%s did not get ready (%v); its log:\n%s", s.Name, err, log)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after Grace) and waits for
// it. It does nothing when the server is not running.
func (s *Server) Stop() {
	s.proc.Stop(s.Grace)
	s.proc = nil
}

// Restart stops the server and starts it again with the same command line.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

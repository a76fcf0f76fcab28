// Package testredis starts a real redis-server for tests: on a free loopback
// port, with its data in a temporary directory, stopped by PID when the test
// ends. `make test` installs redis-server; a missing one fails the test unless
// UPLOADGATE_SKIP_REDIS=1 asks for a skip (for a developer box).
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	dir  string
	port int
	cmd  *exec.Cmd
	t    testing.TB
}

// Start starts a redis-server with AOF persistence (appendfsync everysec, as
// recommended for uploadgate) and returns it once it answers PING.
func Start(t testing.TB) *Server {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("UPLOADGATE_SKIP_REDIS") == "1" {
			t.Skip("redis-server not installed and UPLOADGATE_SKIP_REDIS=1")
		}
		t.Fatal("redis-server not found: run `make deps` (scripts/install-test-deps.sh installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir(), port: port, t: t}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--maxmemory-policy", "noeviction", "--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr) == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer PING in time:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port and data
// directory (the AOF is replayed).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// ping sends a PING in the Redis protocol.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected answer %q", line)
	}
	return nil
}

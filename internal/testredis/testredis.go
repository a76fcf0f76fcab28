// Package testredis starts a real redis-server for tests: on a free loopback
// port, with its data in a temporary directory, stopped by PID when the test
// ends. `make test` installs redis-server; a missing one fails the test unless
// UPLOADGATE_SKIP_REDIS=1 asks for a skip (for a developer box).
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/internal/testproc"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	srv  testproc.Server
	t    testing.TB
}

// Start starts a redis-server with AOF persistence (appendfsync everysec, as
// recommended for uploadgate) and returns it once it answers PING.
func Start(t testing.TB) *Server {
	t.Helper()
	testproc.Require(t, "redis-server", "UPLOADGATE_SKIP_REDIS",
		"redis-server not found: run `make deps` (scripts/install-test-deps.sh installs it)")
	s := newServer(t, "redis-server", testproc.Port(t), t.TempDir())
	s.srv.Start(t)
	return s
}

// newServer prepares (does not start) a redis-server on port with its data
// in dir, with the arguments extra added to the usual ones.
func newServer(t testing.TB, name string, port int, dir string, extra ...string) *Server {
	logPath := filepath.Join(dir, "redis.log")
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), t: t}
	s.srv = testproc.Server{
		Name: name,
		Command: func() *exec.Cmd {
			return exec.Command("redis-server", append([]string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
				"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
				"--maxmemory-policy", "noeviction", "--daemonize", "no",
				"--logfile", logPath}, extra...)...)
		},
		LogPath: logPath,
		Ready:   func() error { return ping(s.Addr) },
		Within:  10 * time.Second,
		Poll:    20 * time.Millisecond,
		Grace:   5 * time.Second,
	}
	return s
}

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *Server) Stop() { s.srv.Stop() }

// Restart stops the server and starts it again on the same port and data
// directory (the AOF is replayed).
func (s *Server) Restart() {
	s.t.Helper()
	s.srv.Restart()
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

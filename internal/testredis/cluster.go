package testredis

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/internal/testproc"
)

// Cluster is a running Redis Cluster of masters without replicas, each a
// redis-server on loopback with its own data directory (AOF and nodes.conf).
type Cluster struct {
	// Masters are the nodes, in the order of their hash slot ranges.
	Masters []*Server
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		addrs[i] = m.Addr
	}
	return addrs
}

// StartCluster starts n masters with cluster mode on and joins them with
// `redis-cli --cluster create` (no replicas): it returns once every node
// reports cluster_state:ok. A master that is stopped makes the cluster refuse
// commands (CLUSTERDOWN) after about a second, the node timeout, until it is
// back; Restart starts it again on its port with its nodes.conf and AOF.
// A missing redis-server or redis-cli fails the test unless
// UPLOADGATE_SKIP_REDIS=1.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	testproc.Require(t, "redis-server", "UPLOADGATE_SKIP_REDIS",
		"redis-server not found: run `make deps` (scripts/install-test-deps.sh installs it)")
	testproc.Require(t, "redis-cli", "UPLOADGATE_SKIP_REDIS",
		"redis-cli not found: run `make deps` (scripts/install-test-deps.sh installs redis-tools)")
	c := &Cluster{}
	for range n {
		c.Masters = append(c.Masters, startNode(t))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(t, 20*time.Second)
	return c
}

// startNode starts one redis-server in cluster mode, with a bus port of its own.
func startNode(t testing.TB) *Server {
	t.Helper()
	port, bus := testproc.Port(t), testproc.Port(t)
	for bus == port {
		bus = testproc.Port(t)
	}
	s := newServer(t, "redis-server (cluster node)", port, t.TempDir(),
		"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
		"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000")
	s.srv.Start(t)
	return s
}

// WaitOK waits until every running master reports cluster_state:ok and
// knows all the masters, failing t after timeout.
func (c *Cluster) WaitOK(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := c.check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis cluster not ready within %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check returns nil when every master says cluster_state:ok and counts all masters.
func (c *Cluster) check() error {
	for _, m := range c.Masters {
		info, err := command(m.Addr, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster state not ok", m.Addr)
		}
		if !strings.Contains(info, "cluster_size:"+strconv.Itoa(len(c.Masters))+"\r\n") {
			return fmt.Errorf("%s: not all masters serve slots yet", m.Addr)
		}
	}
	return nil
}

// command sends one command in the Redis protocol and returns its reply as
// text: a simple string, an integer or a bulk string (not arrays).
func command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis error: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// StopMaster stops master i by its PID (SIGTERM, as a crash would not; its
// AOF has every write of the last second at most) and waits until every
// other master reports cluster_state:fail, the node timeout after which the
// cluster refuses commands.
func (c *Cluster) StopMaster(t testing.TB, i int) {
	t.Helper()
	c.Masters[i].Stop()
	deadline := time.Now().Add(20 * time.Second)
	for j, m := range c.Masters {
		if j == i {
			continue
		}
		for {
			info, err := command(m.Addr, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:fail") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("master %s does not see the cluster down: %v", m.Addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// RestartMaster starts master i again on its port and data directory (its
// nodes.conf and AOF) and waits until the cluster is ok.
func (c *Cluster) RestartMaster(t testing.TB, i int) {
	t.Helper()
	c.Masters[i].Restart()
	c.WaitOK(t, 20*time.Second)
}

// Calls returns the number of commands that the masters have run since
// they started (INFO commandstats), by command name, summed over masters.
func (c *Cluster) Calls(t testing.TB) map[string]int {
	t.Helper()
	calls := map[string]int{}
	for _, m := range c.Masters {
		info, err := command(m.Addr, "INFO", "commandstats")
		if err != nil {
			t.Fatalf("INFO commandstats on %s: %v", m.Addr, err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
			if !ok || !strings.HasPrefix(line, "cmdstat_") {
				continue
			}
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
			if err != nil {
				t.Fatalf("INFO commandstats on %s: %q: %v", m.Addr, line, err)
			}
			calls[name] += n
		}
	}
	return calls
}

// DBSize returns the number of keys that master i holds.
func (c *Cluster) DBSize(t testing.TB, i int) int {
	t.Helper()
	v, err := command(c.Masters[i].Addr, "DBSIZE")
	if err != nil {
		t.Fatalf("DBSIZE on master %d: %v", i, err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("DBSIZE on master %d: %v", i, err)
	}
	return n
}

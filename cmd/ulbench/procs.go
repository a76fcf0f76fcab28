package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server process started by the driver. It is stopped by its own
// PID only.
type proc struct {
	Name    string
	URL     string // http://127.0.0.1:PORT
	Addr    string // 127.0.0.1:PORT
	DataDir string
	LogPath string
	args    []string
	env     []string
	bin     string
	cmd     *exec.Cmd
	exited  chan struct{}
	// health is the path that answers 2xx once the server is up.
	health string
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts bin with args (the placeholder {addr} is replaced by a
// free loopback address) and waits until health answers.
func startProc(name, bin string, args, env []string, dataDir, logPath, health string) (*proc, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p := &proc{Name: name, URL: "http://" + addr, Addr: addr, DataDir: dataDir, LogPath: logPath,
			bin: bin, env: env, health: health}
		for _, a := range args {
			p.args = append(p.args, strings.ReplaceAll(a, "{addr}", addr))
		}
		if err := p.start(); err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "address already in use") {
				continue
			}
			return nil, err
		}
		return p, nil
	}
	return nil, lastErr
}

func (p *proc) start() error {
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(p.LogPath)
			return fmt.Errorf("%s exited during start-up: %s", p.Name, tail(string(log), 2000))
		default:
		}
		if res, err := client.Get(p.URL + p.health); err == nil {
			res.Body.Close()
			if res.StatusCode < 500 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("%s did not come up within 30s", p.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts the process again with the same arguments and address.
func (p *proc) Restart() error {
	p.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if err = p.start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// PID is the process ID (0 when not running).
func (p *proc) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL to this process and waits for it.
func (p *proc) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// Stop sends SIGTERM, then SIGKILL after 10 s, and waits.
func (p *proc) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	p.cmd = nil
}

// Alive reports whether the process still runs.
func (p *proc) Alive() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// PeakRSS is the process's peak resident set size in KiB (VmHWM).
func (p *proc) PeakRSS() int64 {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	return procField(pid, "status", "VmHWM:")
}

// ReadCalls is the number of read system calls the process has made so far
// (syscr of /proc/<pid>/io): per MiB received, it tells how much each read
// returned.
func (p *proc) ReadCalls() int64 {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	return procField(pid, "io", "syscr:")
}

// procField is the number after key in /proc/<pid>/<file> (a " kB" unit dropped).
func procField(pid int, file, key string) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), file))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// CPUTime is the user+system CPU time the process has used so far.
func (p *proc) CPUTime() time.Duration {
	pid := p.PID()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// Log returns the end of the process's log.
func (p *proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return tail(string(b), 4000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// redisServer is a redis-server on a free loopback port, configured like the
// one the project's tests use (AOF, fsync every second).
func startRedis(dir string) (*proc, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server not found in PATH (scripts/install-test-deps.sh installs it)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &proc{Name: "redis-server", URL: "redis://" + addr, Addr: addr, DataDir: dir,
		LogPath: filepath.Join(dir, "redis.log"), bin: "redis-server",
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
			"--maxmemory-policy", "noeviction", "--daemonize", "no"}}
	logf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, errors.New("redis-server did not answer PING within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// s3Server is a versitygw (posix backend) with its credentials.
type s3Server struct {
	*proc
	AccessKey, SecretKey string
}

// Env is the AWS environment a client of the server needs.
func (s *s3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(s.DataDir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(s.DataDir, "no-aws-credentials")}
}

func startVersityGW(dir string) (*s3Server, error) {
	if _, err := exec.LookPath("versitygw"); err != nil {
		return nil, errors.New("versitygw not found in PATH (make deps installs it into GOPATH/bin)")
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	s := &s3Server{AccessKey: "bench-access-" + randHex(4), SecretKey: randHex(16)}
	p, err := startProc("versitygw", "versitygw", []string{"--port", "{addr}", "--quiet", "posix", root},
		[]string{"ROOT_ACCESS_KEY_ID=" + s.AccessKey, "ROOT_SECRET_ACCESS_KEY=" + s.SecretKey},
		dir, filepath.Join(dir, "versitygw.log"), "/")
	if err != nil {
		return nil, err
	}
	s.proc = p
	return s, nil
}

// CreateBucket creates a bucket on the server.
func (s *s3Server) CreateBucket(ctx context.Context, name string) error {
	return s3CreateBucket(ctx, s, name)
}

// opSeconds is the total time an uploadgate server has spent so far in each
// storage and session store operation (the _sum series of
// uploadgate_storage_operation_duration_seconds, by op), from its /metrics.
// Any other server answers an empty map.
func (p *proc) opSeconds(ctx context.Context) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/metrics", nil)
	if err != nil {
		return nil
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil
	}
	return parseOpSeconds(res.Body)
}

// parseOpSeconds reads the op sums out of a Prometheus text exposition.
func parseOpSeconds(r io.Reader) map[string]float64 {
	const prefix = `uploadgate_storage_operation_duration_seconds_sum{op="`
	ops := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		op, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			ops[op] = v
		}
	}
	return ops
}

// Package tests3 starts a real S3-compatible server for tests: versitygw with
// its posix backend on a temporary directory, on a free loopback port, stopped
// by PID when the test ends. `make test` installs versitygw; a missing one
// fails the test unless UPLOADGATE_SKIP_S3=1 asks for a skip.
package tests3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's URL (path-style addressing).
	Endpoint string
	// Bucket exists when Start returns.
	Bucket               string
	AccessKey, SecretKey string
	dir                  string
	port                 int
	cmd                  *exec.Cmd
	t                    testing.TB
}

// Start starts versitygw and creates a bucket.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("versitygw"); err != nil {
		if os.Getenv("UPLOADGATE_SKIP_S3") == "1" {
			t.Skip("versitygw not installed and UPLOADGATE_SKIP_S3=1")
		}
		t.Fatal("versitygw not found in PATH: run `make deps` (it is installed with go install into GOPATH/bin)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{
		Endpoint:  "http://127.0.0.1:" + strconv.Itoa(port),
		Bucket:    "uploads",
		AccessKey: "test-access-" + random(4),
		SecretKey: random(16),
		dir:       t.TempDir(),
		port:      port,
		t:         t,
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "versitygw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command("versitygw", "--port", "127.0.0.1:"+strconv.Itoa(s.port), "--quiet",
		"posix", filepath.Join(s.dir, "root"))
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start versitygw: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(s.Endpoint + "/")
		if err == nil {
			res.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "versitygw.log"))
			s.t.Fatalf("versitygw did not come up:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server and waits for it.
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

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Env is the environment a gateway needs to reach the server.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey, "AWS_REGION=us-east-1"}
}

// Setenv sets the AWS credentials of the server for the test's process.
func (s *Server) Setenv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(s.dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(s.dir, "no-aws-credentials"))
}

// Client is an S3 client for the server.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

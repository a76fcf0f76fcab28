// Package tests3 starts a real S3-compatible server for tests: versitygw with
// its posix backend on a temporary directory, on a free loopback port, stopped
// by PID when the test ends. `make test` installs versitygw; a missing one
// fails the test unless UPLOADGATE_SKIP_S3=1 asks for a skip.
package tests3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/uploadgate/uploadgate/internal/testproc"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is the server's URL (path-style addressing).
	Endpoint string
	// Bucket exists when Start returns.
	Bucket               string
	AccessKey, SecretKey string
	dir                  string
	srv                  testproc.Server
	t                    testing.TB
}

// Start starts versitygw and creates a bucket.
func Start(t testing.TB) *Server {
	t.Helper()
	testproc.Require(t, "versitygw", "UPLOADGATE_SKIP_S3",
		"versitygw not found in PATH: run `make deps` (it is installed with go install into GOPATH/bin)")
	port := testproc.Port(t)
	s := &Server{
		Endpoint:  "http://127.0.0.1:" + strconv.Itoa(port),
		Bucket:    "uploads",
		AccessKey: "test-access-" + random(4),
		SecretKey: random(16),
		dir:       t.TempDir(),
		t:         t,
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.srv = testproc.Server{
		Name: "versitygw",
		Command: func() *exec.Cmd {
			cmd := exec.Command("versitygw", "--port", "127.0.0.1:"+strconv.Itoa(port), "--quiet",
				"posix", filepath.Join(s.dir, "root"))
			cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
			return cmd
		},
		LogPath: filepath.Join(s.dir, "versitygw.log"),
		// Any HTTP answer will do: the server is up.
		Ready:  func() error { _, err := testproc.HTTPStatus(s.Endpoint + "/"); return err },
		Within: 15 * time.Second,
		Poll:   50 * time.Millisecond,
		Grace:  5 * time.Second,
	}
	s.srv.Start(t)
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

// Stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *Server) Stop() { s.srv.Stop() }

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.srv.Restart()
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

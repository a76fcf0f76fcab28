package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	stdslog "log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"github.com/tus/tusd/v2/pkg/s3store"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/auth/redisstore"
	"github.com/uploadgate/uploadgate/gateway"
	"github.com/uploadgate/uploadgate/storage"
	"github.com/uploadgate/uploadgate/storage/redislock"
	"golang.org/x/exp/slog"
)

// The servers below run as child processes of the driver (`ulbench serve-…`),
// so that each has its own peak RSS and CPU time.

// serveUntilSignal serves h on addr until SIGTERM or SIGINT, with pprof on
// pprofAddr when set.
func serveUntilSignal(addr, pprofAddr string, srv *http.Server) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		pl, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(pl, mux) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// serveTusd runs stock tusd: tusd's routed handler on filestore (or s3store)
// with memorylocker, configured as tusd's own command does by default.
func serveTusd(args []string) error {
	fs := flag.NewFlagSet("serve-tusd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:1080", "address")
	dir := fs.String("dir", "", "upload directory (filestore)")
	bucket := fs.String("s3-bucket", "", "S3 bucket (s3store instead of filestore)")
	endpoint := fs.String("s3-endpoint", "", "S3 endpoint")
	noHashes := fs.Bool("s3-disable-content-hashes", false, "s3store's DisableContentHashes (tusd's -s3-disable-content-hashes)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	composer := handler.NewStoreComposer()
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if *bucket != "" {
		cfg, err := config.LoadDefaultConfig(context.Background())
		if err != nil {
			return err
		}
		client := s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = aws.String(*endpoint)
			o.UsePathStyle = true
		})
		store := s3store.New(*bucket, client) // tusd's defaults: 5 MiB min, 50 MiB preferred parts
		store.TemporaryDirectory = *dir
		store.DisableContentHashes = *noHashes
		store.UseIn(composer)
	} else {
		filestore.New(*dir).UseIn(composer)
	}
	memorylocker.New().UseIn(composer)
	h, err := handler.NewHandler(handler.Config{
		BasePath:       "/files/",
		StoreComposer:  composer,
		NetworkTimeout: gateway.DefaultNetworkTimeout, // as uploadgate's
		Logger:         tusdCommandLogger(os.Stdout),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", h))
	mux.Handle("/files", http.StripPrefix("/files", h))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return serveUntilSignal(*listen, *pprofAddr, &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 60 * time.Second,
		IdleTimeout:       60 * time.Second,
	})
}

// tusdCommandLogger logs as tusd's command does by default (its
// SetupStructuredLogger): every event at level info, as text through a
// log.Logger that prefixes the time, "msg" renamed "event". The gateway
// likewise logs a line per request at its default level.
func tusdCommandLogger(w io.Writer) *slog.Logger {
	l := log.New(w, "", log.LstdFlags|log.Lmicroseconds)
	return slog.New(slog.NewTextHandler(logWriter{l}, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{}
			case slog.MessageKey:
				a.Key = "event"
			}
			return a
		},
	}))
}

// logWriter hands each record to a log.Logger, which adds the time.
type logWriter struct{ l *log.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Print(string(p))
	return len(p), nil
}

// serveCopy is the limit: PUT /<name> is io.Copy'd into a file, nothing else.
func serveCopy(args []string) error {
	fs := flag.NewFlagSet("serve-copy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:1081", "address")
	dir := fs.String("dir", "", "directory")
	bufSize := fs.Int("buffer", 0, "copy in pieces of this many bytes (0: io.Copy, which copies into a file in 32 KiB pieces)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		name := filepath.Base(r.URL.Path)
		f, err := os.OpenFile(filepath.Join(*dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if *bufSize > 0 {
			// Hide the file's ReadFrom, which would copy in 32 KiB pieces.
			_, err = io.CopyBuffer(struct{ io.Writer }{f}, r.Body, make([]byte, *bufSize))
		} else {
			_, err = io.Copy(f, r.Body)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	return serveUntilSignal(*listen, "", &http.Server{Handler: h, ReadHeaderTimeout: 60 * time.Second})
}

// serveGateway runs the gateway in this process, wired as `uploadgate serve`
// wires it (embedded or Redis sessions, disk storage), with pprof and a
// configurable per-read network timeout. It is for profiles and for the
// fault cases that need a short timeout; the benchmark runs the real binary.
func serveGateway(args []string) error {
	fs := flag.NewFlagSet("serve-gateway", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address")
	dataDir := fs.String("data-dir", "", "data directory")
	secret := fs.String("secret", "", "slot secret")
	redisURL := fs.String("redis-url", "", "Redis for sessions and locks")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address")
	sessionDB := fs.String("session-db", "", "directory of the session database (default: sessions.db in the data directory)")
	netTimeout := fs.Duration("network-timeout", gateway.DefaultNetworkTimeout, "per-read timeout of request bodies")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	verifier, err := auth.NewVerifier([]string{*secret})
	if err != nil {
		return err
	}
	idKeyHex, _, err := auth.LoadOrCreateKeyFile(filepath.Join(*dataDir, "id.key"))
	if err != nil {
		return err
	}
	idKey, err := hex.DecodeString(idKeyHex)
	if err != nil {
		return err
	}
	var store auth.Store
	var locker handler.Locker
	if *redisURL != "" {
		opt, err := redis.ParseURL(*redisURL)
		if err != nil {
			return err
		}
		client := redis.NewClient(opt)
		defer client.Close()
		rs := redisstore.New(client, redisstore.Options{})
		defer rs.Close()
		store = rs
		rl, err := redislock.New(client, redislock.Options{})
		if err != nil {
			return err
		}
		defer rl.Close()
		locker = rl
	} else {
		bs, err := pebblestore.Open(cmp.Or(*sessionDB, filepath.Join(*dataDir, "sessions.db")), nil)
		if err != nil {
			return err
		}
		defer bs.Close()
		store = bs
	}
	// Timed as uploadgate serve times them: one histogram, both stores.
	reg := prometheus.NewRegistry()
	observe, err := gateway.StorageTimer(reg)
	if err != nil {
		return err
	}
	policy := auth.DefaultPolicy()
	policy.IDKey = idKey
	sessions := auth.NewSessions(auth.Timed(store, observe), policy, time.Now)
	backend, err := storage.New(context.Background(), storage.Config{DataDir: *dataDir, Locker: locker, Observe: observe})
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Config{
		Registry: reg,
		Verifier: verifier, Sessions: sessions, Storage: backend, IDKey: idKey,
		NetworkTimeout: *netTimeout, CORSOrigins: []string{"*"},
		// As `uploadgate serve` logs by default: a text line per request.
		Logger: stdslog.New(stdslog.NewTextHandler(os.Stderr, &stdslog.HandlerOptions{Level: stdslog.LevelInfo})),
	})
	if err != nil {
		return err
	}
	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	srv := &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	srv.RegisterOnShutdown(func() { cancelBase(handler.ErrServerShutdown) })
	return serveUntilSignal(*listen, *pprofAddr, srv)
}

// s3CreateBucket creates a bucket with the server's credentials.
func s3CreateBucket(ctx context.Context, s *s3Server, name string) error {
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  aws.NewCredentialsCache(staticCreds{s.AccessKey, s.SecretKey}),
	})
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	if err != nil && !strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

type staticCreds struct{ id, secret string }

func (c staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	if c.id == "" {
		return aws.Credentials{}, errors.New("no credentials")
	}
	return aws.Credentials{AccessKeyID: c.id, SecretAccessKey: c.secret, Source: "ulbench"}, nil
}

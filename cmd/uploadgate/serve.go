package main

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/auth/redisstore"
	"github.com/uploadgate/uploadgate/gateway"
	"github.com/uploadgate/uploadgate/storage"
	"github.com/uploadgate/uploadgate/storage/redislock"
	"github.com/uploadgate/uploadgate/web"
)

// serveConfig is everything `uploadgate serve` is configured with.
type serveConfig struct {
	Config         string
	Listen         string
	MetricsListen  string
	DataDir        string
	Secrets        listFlag
	SecretFile     string
	IDKeyFile      string
	UploadBase     string
	TusBase        string
	PublicURL      string
	MaxSize        byteSize
	CORSOrigins    listFlag
	TrustedProxies listFlag
	Storage        string
	RedisURL       string
	SessionDB      string
	S3             storage.S3Config
	S3PartSize     byteSize
	S3PrefPartSize byteSize
	SessionIdleTTL time.Duration
	SessionMaxTTL  time.Duration
	Retention      time.Duration
	FileRetention  time.Duration
	History        time.Duration
	NetworkTimeout time.Duration
	LockTimeout    time.Duration
	LogFormat      string
	LogLevel       string
	DemoUI         bool
	Hooks          hookFlags
}

func newServeFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.CORSOrigins = listFlag{vals: []string{"*"}}
	fs.StringVar(&c.Config, "config", "", "TOML file with settings, keys named like the flags (flags and environment override it)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address to listen on (host:port)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics only on this address (host:port), not on --listen")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for uploads, sessions and generated keys")
	fs.Var(&c.Secrets, "secret", "slot secret shared with the XMPP server; comma-separated for several (the first signs, all verify)")
	fs.StringVar(&c.SecretFile, "secret-file", "", "file with slot secrets, one per line (alternative to --secret)")
	fs.StringVar(&c.IDKeyFile, "id-key-file", "", "file with the key that derives upload IDs (hex), e.g. a mounted secret; read, never created, and may be readable by group and others (default: <data-dir>/id.key, created on first start)")
	fs.StringVar(&c.UploadBase, "upload-base", gateway.DefaultUploadBase, "URL path the XMPP server signs slots for")
	fs.StringVar(&c.TusBase, "tus-base", gateway.DefaultTusBase, "URL path of tus upload URLs")
	fs.StringVar(&c.PublicURL, "public-url", "", "external URL of the gateway (scheme://host[:port][/prefix]) for Location headers behind a proxy")
	fs.Var(&c.MaxSize, "max-size", "largest upload accepted, in bytes or with a unit (100MiB); 0 = no limit beyond the slot's size")
	fs.Var(&c.CORSOrigins, "cors-origins", "browser origins allowed to upload, comma-separated; * for any")
	fs.Var(&c.TrustedProxies, "trusted-proxies", "comma-separated addresses or CIDR prefixes of proxies whose X-Forwarded-For is believed")
	fs.StringVar(&c.Storage, "storage", storage.BackendDisk, "storage backend: disk or s3")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis for sessions and upload locks shared by several instances: redis://host:port/db, rediss://, ?master_name= for Sentinel, redis+cluster:// for Cluster")
	fs.StringVar(&c.SessionDB, "session-db", "", "directory of the embedded session store (without --redis-url); default <data-dir>/sessions.db. An earlier release's session file there is imported at start. Its syncs need not share a file system with the uploads")
	fs.StringVar(&c.S3.Bucket, "s3-bucket", "", "S3 bucket (storage s3)")
	fs.StringVar(&c.S3.Endpoint, "s3-endpoint", "", "URL of an S3-compatible server; empty for AWS")
	fs.StringVar(&c.S3.Region, "s3-region", storage.DefaultS3Region, "S3 region")
	fs.BoolVar(&c.S3.PathStyle, "s3-path-style", false, "address buckets as /bucket/key (most S3-compatible servers need this)")
	fs.StringVar(&c.S3.Prefix, "s3-prefix", "", "prefix of every object key")
	c.S3PartSize = storage.DefaultS3MinPartSize
	fs.Var(&c.S3PartSize, "s3-part-size", "smallest part uploaded to S3 (5MiB on AWS)")
	c.S3PrefPartSize = storage.DefaultS3PreferredPartSize
	fs.Var(&c.S3PrefPartSize, "s3-preferred-part-size", "size of the parts an upload is cut into for S3 (raised to --s3-part-size when smaller); each upload in transfer keeps up to this much in <data-dir>/s3-parts")
	fs.IntVar(&c.S3.Concurrency, "s3-concurrency", storage.DefaultS3Concurrency, "part uploads to S3 in flight at once, across all uploads")
	fs.BoolVar(&c.S3.SignPayload, "s3-sign-payload", false, "sign the SHA-256 of every part sent to S3 (costs CPU on both sides; TLS protects the bytes to an https endpoint either way)")
	fs.DurationVar(&c.SessionIdleTTL, "session-idle-ttl", auth.DefaultIdleTTL, "an upload session expires this long after its last accepted request")
	fs.DurationVar(&c.SessionMaxTTL, "session-max-ttl", auth.DefaultMaxTTL, "an upload session expires at the latest this long after it opened")
	fs.DurationVar(&c.Retention, "retention", auth.DefaultRetention, "partial data of an expired session is kept this long for a re-bind, then removed")
	fs.DurationVar(&c.FileRetention, "file-retention", 0, "complete files whose slot sets no expiry are removed after this long; 0 keeps them")
	fs.DurationVar(&c.History, "history", 0, "the session record of a complete file kept for ever is forgotten this long after completion, not before its session ends (the file stays downloadable); 0 keeps the records")
	fs.DurationVar(&c.NetworkTimeout, "network-timeout", gateway.DefaultNetworkTimeout, "an upload body that sends nothing for this long is no longer read; the bytes that arrived are kept")
	fs.DurationVar(&c.LockTimeout, "lock-timeout", gateway.DefaultLockTimeout, "how long a request waits for an upload that another request holds before it is answered busy (423 Locked)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&c.DemoUI, "demo-ui", false, "serve the demo upload pages under /demo/; on a loopback --listen they also mint slots for a browser on this machine that opened them at the listen address")
	addHookFlags(fs, &c.Hooks)
	return fs
}

// validate checks the configuration; each error names its option.
func (c *serveConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return usageError(fmt.Sprintf("invalid --listen %q: want host:port", c.Listen))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return usageError(fmt.Sprintf("invalid --metrics-listen %q: want host:port", c.MetricsListen))
		}
		if c.MetricsListen == c.Listen {
			return usageError("invalid --metrics-listen: must differ from --listen")
		}
	}
	if c.DataDir == "" {
		return usageError("invalid --data-dir: must not be empty")
	}
	for name, p := range map[string]string{"--upload-base": c.UploadBase, "--tus-base": c.TusBase} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#%\\") || strings.Contains(p, "..") {
			return usageError(fmt.Sprintf("invalid %s %q: want an absolute URL path such as /upload/", name, p))
		}
	}
	ub, tb := strings.TrimRight(c.UploadBase, "/")+"/", strings.TrimRight(c.TusBase, "/")+"/"
	if strings.HasPrefix(ub, tb) || strings.HasPrefix(tb, ub) {
		return usageError("invalid --tus-base: must not overlap --upload-base")
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return usageError(fmt.Sprintf("invalid --public-url %q: want http(s)://host[:port][/prefix]", c.PublicURL))
		}
	}
	switch c.Storage {
	case storage.BackendDisk:
	case storage.BackendS3:
		if c.S3.Bucket == "" {
			return usageError("invalid --s3-bucket: required with --storage s3")
		}
		if c.S3.Endpoint != "" {
			if u, err := url.Parse(c.S3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError(fmt.Sprintf("invalid --s3-endpoint %q: want http(s)://host[:port]", c.S3.Endpoint))
			}
		}
		if c.S3PartSize < 1<<20 {
			return usageError("invalid --s3-part-size: at least 1MiB (S3 itself needs 5MiB)")
		}
		if c.S3PrefPartSize < 1<<20 || c.S3PrefPartSize > 5<<30 {
			return usageError("invalid --s3-preferred-part-size: from 1MiB to 5GiB")
		}
		if c.S3.Concurrency < 1 {
			return usageError("invalid --s3-concurrency: at least 1")
		}
	default:
		return usageError(fmt.Sprintf("invalid --storage %q: want disk or s3", c.Storage))
	}
	if c.RedisURL != "" {
		if _, err := parseRedisURL(c.RedisURL); err != nil {
			return usageError(fmt.Sprintf("invalid --redis-url: %v", err))
		}
	}
	if c.SessionDB != "" && c.RedisURL != "" {
		return usageError("invalid --session-db: sessions are in Redis with --redis-url")
	}
	if c.SessionIdleTTL <= 0 {
		return usageError("invalid --session-idle-ttl: must be positive")
	}
	if c.SessionMaxTTL < c.SessionIdleTTL {
		return usageError("invalid --session-max-ttl: must not be shorter than --session-idle-ttl")
	}
	if c.Retention < 0 || c.FileRetention < 0 {
		return usageError("invalid --retention/--file-retention: must not be negative")
	}
	if c.History < 0 {
		return usageError("invalid --history: must not be negative")
	}
	if c.NetworkTimeout <= 0 {
		return usageError("invalid --network-timeout: must be positive")
	}
	if c.LockTimeout <= 0 {
		return usageError("invalid --lock-timeout: must be positive")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return usageError(fmt.Sprintf("invalid --log-format %q: want text or json", c.LogFormat))
	}
	if _, err := c.level(); err != nil {
		return err
	}
	if _, err := c.proxies(); err != nil {
		return err
	}
	if err := c.Hooks.validate(); err != nil {
		return err
	}
	if err := checkSecrets(c.Secrets.vals, "--secret"); err != nil {
		return err
	}
	if len(c.Secrets.vals) > 0 && c.SecretFile != "" {
		return usageError("invalid --secret-file: give either --secret or --secret-file, not both")
	}
	return nil
}

func (c *serveConfig) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, usageError(fmt.Sprintf("invalid --log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return l, nil
}

func (c *serveConfig) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range c.TrustedProxies.vals {
		if pr, err := netip.ParsePrefix(p); err == nil {
			out = append(out, pr.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, usageError(fmt.Sprintf("invalid --trusted-proxies entry %q: want an address or CIDR prefix", p))
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func serve(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveContext(ctx, args, stdout, stderr)
}

// serveContext runs the gateway until ctx ends (SIGTERM or SIGINT for serve),
// then shuts it down gracefully.
func serveContext(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c serveConfig
	fs := newServeFlags(&c)
	rest, err := parseFlags(fs, args, nil)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, "usage: uploadgate serve [flags]  (every flag is also an environment variable UPLOADGATE_<NAME>)")
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError(fmt.Sprintf("serve takes no arguments, got %q", rest[0]))
	}
	if c.Config != "" {
		if err := applyConfigFile(fs, c.Config); err != nil {
			return err
		}
	}
	if err := c.validate(); err != nil {
		return err
	}
	level, _ := c.level()
	var h slog.Handler
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	} else {
		h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)

	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	secrets, err := loadSecrets(&c, stdout, log)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(secrets)
	if err != nil {
		return usageError(fmt.Sprintf("invalid --secret: %v", err))
	}
	// SIGHUP, or a change of --secret-file, rotates the secrets.
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	go reloadSecrets(reloadCtx, &c, verifier, log)
	idKey, err := loadIDKey(&c, log)
	if err != nil {
		return err
	}

	var sessStore auth.Store
	var locker handler.Locker
	if c.RedisURL != "" {
		client, _ := newRedisClient(c.RedisURL)
		defer client.Close()
		// A Cluster gets the sharded key layout, which spreads sessions
		// over its masters; one server and Sentinel keep the single-node
		// layout (docs/scaling.md#redis-cluster).
		_, sharded := client.(*redis.ClusterClient)
		rs := redisstore.New(client, redisstore.Options{Sharded: sharded})
		defer rs.Close()
		if sharded {
			// Sessions that an older version kept in the single-node layout
			// on this Cluster move to the sharded one (once; a no-op after).
			moved, err := rs.Migrate(ctx)
			if err != nil {
				return fmt.Errorf("redis sessions: %w", err)
			}
			if moved > 0 {
				log.Info("moved Redis sessions to the sharded layout", "sessions", moved)
			}
		}
		sessStore = rs
		rl, err := redislock.New(client, redislock.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("redis locker: %w", err)
		}
		defer rl.Close()
		locker = rl
	} else {
		path := c.SessionDB
		if path == "" {
			path = filepath.Join(c.DataDir, "sessions.db")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("session store: %w", err)
		}
		bs, err := pebblestore.Open(path, log)
		if err != nil {
			return fmt.Errorf("session store: %w", err)
		}
		defer bs.Close()
		sessStore = bs
	}
	reg := prometheus.NewRegistry()
	// One histogram times the session store and the upload storage; each is
	// timed by a decorator beside it.
	observe, err := gateway.StorageTimer(reg)
	if err != nil {
		return fmt.Errorf("storage metrics: %w", err)
	}
	sessStore = auth.Timed(sessStore, observe)
	policy := auth.DefaultPolicy()
	policy.IdleTTL = c.SessionIdleTTL
	policy.MaxTTL = c.SessionMaxTTL
	policy.Retention = c.Retention
	policy.FileRetention = c.FileRetention
	policy.History = c.History
	policy.IDKey = idKey
	sessions := auth.NewSessions(sessStore, policy, time.Now)

	scfg := c.storageSettings()
	scfg.Locker, scfg.Logger, scfg.Observe = locker, log, observe
	backend, err := storage.New(ctx, scfg)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	backend.RegisterMetrics(reg)
	gcfg := c.gatewaySettings()
	gcfg.Verifier = verifier
	gcfg.Sessions = sessions
	gcfg.Storage = backend
	gcfg.IDKey = idKey
	gcfg.Logger = log
	gcfg.Registry = reg
	// Listen before the gateway is made: the demo UI checks requests
	// against the address listened on, its port resolved.
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	gcfg.Demo = demoConfig(c, secrets, ln.Addr().String())
	hookCfg, hookKind := c.Hooks.config(c.LogFormat == "json")
	if hookCfg != nil {
		gcfg.Hooks = hookCfg
		defer stopHookPlugins(hookKind)
		log.Info("hooks enabled", "kind", hookKind, "events", hookEventNames(hookCfg))
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		ln.Close()
		return err
	}

	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	srv := &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// ReadTimeout bounds reading a request from its start. tusd moves the
		// read deadline --network-timeout ahead at the start of each request
		// it handles and after every read of a body, so an upload that keeps
		// sending is not cut; a request that stalls (or a body nobody reads,
		// which net/http would wait for to reuse the connection) is.
		ReadTimeout: c.NetworkTimeout,
		// No WriteTimeout: a download of a large file may take hours.
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return base },
		ErrorLog:       slog.NewLogLogger(h, slog.LevelWarn),
	}
	// On shutdown, running PATCH and PUT bodies are closed: tusd saves what
	// arrived and answers 503, so clients resume instead of hanging.
	srv.RegisterOnShutdown(func() { cancelBase(handler.ErrServerShutdown) })

	var metricsSrv *http.Server
	var metricsLn net.Listener
	if c.MetricsListen != "" {
		metricsLn, err = net.Listen("tcp", c.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s: %w", c.MetricsListen, err)
		}
		metricsSrv = &http.Server{
			Handler:           gw.MetricsHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(h, slog.LevelWarn),
		}
		log.Info("metrics listening", "addr", metricsLn.Addr().String())
	}
	attrs := []any{"addr", ln.Addr().String(), "version", version,
		"upload_base", c.UploadBase, "tus_base", c.TusBase, "storage", c.Storage, "data_dir", c.DataDir}
	if c.IDKeyFile != "" {
		attrs = append(attrs, "id_key_file", c.IDKeyFile)
	}
	log.Info("uploadgate listening", attrs...)

	bgCtx, stopBg := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		_ = gw.Run(bgCtx)
	}()
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	if metricsSrv != nil {
		go func() { serveErr <- metricsSrv.Serve(metricsLn) }()
	}

	select {
	case err := <-serveErr:
		stopBg()
		<-bgDone
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if metricsSrv != nil {
		// Scrapes during the shutdown still see the final counts.
		if merr := metricsSrv.Shutdown(shutCtx); err == nil {
			err = merr
		}
	}
	// post-* hook events of the requests that ended are delivered before exit.
	if herr := gw.WaitHooks(shutCtx); herr != nil {
		log.Warn("hook events still undelivered at exit", "error", herr)
	}
	stopBg()
	<-bgDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// gatewaySettings is the part of the gateway's configuration that comes from
// the flags alone; serve adds the keys, stores and logger.
func (c *serveConfig) gatewaySettings() gateway.Config {
	proxies, _ := c.proxies()
	return gateway.Config{
		UploadBase:     c.UploadBase,
		TusBase:        c.TusBase,
		PublicURL:      c.PublicURL,
		MaxSize:        int64(c.MaxSize),
		CORSOrigins:    c.CORSOrigins.vals,
		TrustedProxies: proxies,
		NetworkTimeout: c.NetworkTimeout,
		LockTimeout:    c.LockTimeout,
		// With --metrics-listen, /metrics is served there only.
		SeparateMetrics: c.MetricsListen != "",
		Version:         version,
	}
}

// storageSettings is the part of the storage configuration that comes from
// the flags alone; serve adds the locker and logger.
func (c *serveConfig) storageSettings() storage.Config {
	s3cfg := c.S3
	s3cfg.MinPartSize = int64(c.S3PartSize)
	s3cfg.PreferredPartSize = int64(c.S3PrefPartSize)
	return storage.Config{
		Backend: c.Storage,
		DataDir: c.DataDir,
		S3:      s3cfg,
		// A creation waits for the upload's lock as long as any other request.
		CreateLockTimeout: c.LockTimeout,
	}
}

// loadIDKey returns the key that derives upload IDs: read from --id-key-file,
// or else from <data-dir>/id.key, which is generated on first start.
func loadIDKey(c *serveConfig, log *slog.Logger) ([]byte, error) {
	dataDirKey := filepath.Join(c.DataDir, "id.key")
	if c.IDKeyFile == "" {
		keyHex, _, err := auth.LoadOrCreateKeyFile(dataDirKey)
		if err != nil {
			return nil, fmt.Errorf("upload ID key: %w", err)
		}
		key, ok := decodeIDKey(keyHex)
		if !ok {
			return nil, fmt.Errorf("upload ID key in %s is not 32 bytes of hex", dataDirKey)
		}
		return key, nil
	}
	keyHex, err := auth.ReadKeyFile(c.IDKeyFile)
	if err != nil {
		return nil, usageError(fmt.Sprintf("invalid --id-key-file: %v", err))
	}
	key, ok := decodeIDKey(keyHex)
	if !ok {
		return nil, usageError(fmt.Sprintf("invalid --id-key-file: the upload ID key in %s is not 32 bytes of hex", c.IDKeyFile))
	}
	// An id.key left in the data directory from before is not used. If it
	// differs, uploads whose IDs it derived are not found again: say so. A
	// file too large to hold a key differs too.
	if other, err := auth.ReadSmallFile(dataDirKey); err == nil || errors.Is(err, auth.ErrFileTooLarge) {
		if err != nil || !sameIDKey(key, other) {
			log.Warn("the data directory's id.key differs from --id-key-file and is not used: uploads begun with it will start over",
				"ignored", dataDirKey, "id_key_file", c.IDKeyFile)
		}
	}
	return key, nil
}

// decodeIDKey decodes a hex-encoded upload ID key of at least 16 bytes.
func decodeIDKey(keyHex string) ([]byte, bool) {
	key, err := hex.DecodeString(keyHex)
	return key, err == nil && len(key) >= 16
}

// sameIDKey reports whether the file content other holds key, comparing in
// constant time.
func sameIDKey(key, other []byte) bool {
	o, ok := decodeIDKey(strings.TrimSpace(string(other)))
	return ok && subtle.ConstantTimeCompare(key, o) == 1
}

// loadSecrets returns the configured slot secrets, or the one kept in the data
// directory, generating it on first start.
func loadSecrets(c *serveConfig, stdout io.Writer, log *slog.Logger) ([]string, error) {
	if len(c.Secrets.vals) > 0 {
		return c.Secrets.vals, nil
	}
	if c.SecretFile != "" {
		return readSecretFile(c.SecretFile)
	}
	path := filepath.Join(c.DataDir, "secret.key")
	secret, created, err := auth.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("slot secret: %w", err)
	}
	if created {
		log.Info("generated a slot secret; configure your XMPP server with it", "file", path)
	}
	host := c.Listen
	if h, p, err := net.SplitHostPort(c.Listen); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		host = net.JoinHostPort("127.0.0.1", p)
	}
	base := "http://" + host + strings.TrimRight(c.UploadBase, "/") + "/"
	if c.PublicURL != "" {
		base = strings.TrimRight(c.PublicURL, "/") + strings.TrimRight(c.UploadBase, "/") + "/"
	}
	fmt.Fprintf(stdout, "Slot secret: %s (no --secret given)\nMint a test slot and upload with curl:\n"+
		"  bin/uploadgate sign --secret-file %s --base-url %s --size 5 hello.txt\n"+
		"  curl -T hello.txt '<PUT URL>'    (a file of 5 bytes; the second line is the GET URL)\n", path, path, base)
	return []string{secret}, nil
}

// demoConfig is the demo UI's configuration: nil without --demo-ui; minting
// slots (with the first secret) only when the gateway listens on loopback,
// for requests addressed to listenAddr (the address listened on).
func demoConfig(c serveConfig, secrets []string, listenAddr string) *gateway.DemoConfig {
	if !c.DemoUI {
		return nil
	}
	d := &gateway.DemoConfig{Files: web.Files()}
	if gateway.LoopbackListen(c.Listen) {
		d.MintSecret = secrets[0]
		d.ListenAddr = listenAddr
	}
	return d
}

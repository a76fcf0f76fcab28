package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/memstore"
	"github.com/uploadgate/uploadgate/storage"
)

const testSecret = "test-secret-0363-gateway"

// testGateway is a gateway on a temporary data directory with in-memory sessions.
type testGateway struct {
	t       *testing.T
	gw      *Gateway
	srv     *httptest.Server
	dir     string
	store   auth.Store
	backend *storage.Backend
	clock   *testClock
}

type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time          { return c.t }
func (c *testClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

type gwOption func(*Config)

func newTestGateway(t *testing.T, opts ...gwOption) *testGateway {
	t.Helper()
	dir := t.TempDir()
	// The storage is timed in the gateway's registry, as uploadgate serve does.
	reg := prometheus.NewRegistry()
	observe, err := StorageTimer(reg)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := storage.New(context.Background(), storage.Config{DataDir: dir, Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	return newTestGatewayOn(t, dir, backend, append([]gwOption{func(c *Config) { c.Registry = reg }}, opts...)...)
}

// newTestGatewayOn is a test gateway on a given storage backend.
func newTestGatewayOn(t *testing.T, dir string, backend *storage.Backend, opts ...gwOption) *testGateway {
	t.Helper()
	clock := &testClock{t: time.Now()}
	verifier, err := auth.NewVerifier([]string{testSecret}, auth.WithClock(func() time.Time { return clock.Now() }))
	if err != nil {
		t.Fatal(err)
	}
	var store auth.Store = memstore.New()
	policy := auth.DefaultPolicy()
	for _, o := range opts {
		var probe Config
		o(&probe)
		if probe.Sessions != nil {
			// An option that sets Sessions only carries a policy for the
			// test, and perhaps a store (withStore).
			policy = probe.Sessions.Policy()
			if st, ok := optionStores.Load(probe.Sessions); ok {
				store = st.(auth.Store)
			}
		}
	}
	idKey := []byte("0123456789abcdef0123456789abcdef")
	policy.IDKey = idKey // slots lead to their own uploads without a stored mapping, as in serve
	sessions := auth.NewSessions(store, policy, func() time.Time { return clock.Now() })
	cfg := Config{
		Verifier:    verifier,
		Sessions:    sessions,
		Storage:     backend,
		IDKey:       idKey,
		CORSOrigins: []string{"*"},
		LockTimeout: 300 * time.Millisecond,
		Now:         func() time.Time { return clock.Now() },
	}
	for _, o := range opts {
		keep := cfg.Sessions
		o(&cfg)
		cfg.Sessions = keep
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &testGateway{t: t, gw: gw, srv: srv, dir: dir, store: store, backend: backend, clock: clock}
}

// sign mints a slot for this gateway.
func (tg *testGateway) sign(proto auth.Protocol, name string, size int64, ctype *string) auth.SignedSlot {
	tg.t.Helper()
	s, err := auth.SignSlot(testSecret, auth.SignRequest{
		BaseURL: tg.srv.URL + "/upload/", Name: name, Size: size, Type: ctype, Protocol: proto, TTL: 5 * time.Minute, Now: tg.clock.Now(),
	})
	if err != nil {
		tg.t.Fatal(err)
	}
	return s
}

func strp(s string) *string { return &s }

// withPolicy runs the test gateway's sessions under p.
func withPolicy(p auth.Policy) gwOption {
	return func(c *Config) { c.Sessions = auth.NewSessions(memstore.New(), p, nil) }
}

// optionStores holds the stores that withStore options carry, by the
// Sessions they set.
var optionStores sync.Map

// withStore runs the test gateway's sessions in st under p.
func withStore(st auth.Store, p auth.Policy) gwOption {
	carrier := auth.NewSessions(st, p, nil)
	optionStores.Store(carrier, st)
	return func(c *Config) { c.Sessions = carrier }
}

// do sends a request and returns the response with its body read.
func (tg *testGateway) do(method, url string, header map[string]string, body io.Reader) (*http.Response, string) {
	tg.t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tg.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if b, ok := body.(*strings.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tg.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res, string(data)
}

// tusCreate creates an upload at a slot URL and returns its Location.
func (tg *testGateway) tusCreate(slot auth.SignedSlot, size int64, extra map[string]string) *http.Response {
	tg.t.Helper()
	h := map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": strconv.FormatInt(size, 10)}
	for k, v := range extra {
		h[k] = v
	}
	if slot.Authorization != "" {
		h["Authorization"] = slot.Authorization
	}
	res, _ := tg.do(http.MethodPost, slot.PutURL, h, nil)
	return res
}

func (tg *testGateway) patch(location string, offset int64, data string) *http.Response {
	tg.t.Helper()
	res, _ := tg.do(http.MethodPatch, location, map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Offset": strconv.FormatInt(offset, 10), "Content-Type": "application/offset+octet-stream",
	}, strings.NewReader(data))
	return res
}

func (tg *testGateway) head(location string) *http.Response {
	tg.t.Helper()
	res, _ := tg.do(http.MethodHead, location, map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	return res
}

// stored returns the bytes stored for an upload ID so far ("" and false if none).
func (tg *testGateway) stored(id string) (string, bool) {
	if tg.backend.ServesContent() {
		up, err := tg.backend.Upload(context.Background(), id)
		if err != nil {
			return "", false
		}
		rc, err := up.GetReader(context.Background())
		if err != nil {
			return "", true // incomplete multipart uploads cannot be read back
		}
		defer rc.Close()
		data, _ := io.ReadAll(rc)
		return string(data), true
	}
	data, err := os.ReadFile(filepath.Join(tg.dir, "uploads", id))
	if err != nil {
		return "", false
	}
	return string(data), true
}

// uploadFiles lists the upload IDs in the disk store.
func (tg *testGateway) uploadFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(tg.dir, "uploads"))
	var ids []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".info") {
			ids = append(ids, strings.TrimSuffix(e.Name(), ".info"))
		}
	}
	return ids
}

func idOf(location string) string { return location[strings.LastIndex(location, "/")+1:] }

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func wantStatus(t *testing.T, res *http.Response, want int) {
	t.Helper()
	if res.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", res.Request.Method, res.Request.URL.Path, res.StatusCode, want)
	}
}

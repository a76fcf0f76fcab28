package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uploadgate/uploadgate/auth"
	"github.com/uploadgate/uploadgate/auth/pebblestore"
	"github.com/uploadgate/uploadgate/storage"
)

// BenchmarkTusCreation measures what a tus creation costs the gateway,
// handler to disk: the slot check, the session durably committed in the embedded store (Pebble),
// the upload's files created by tusd, the request logged at info level (to
// io.Discard) and counted. 16 concurrent creators on two cores, each with a
// slot of its own, as `ulbench run -scenarios create` sends them but
// without the network. Besides wall time it reports the CPU time of the
// process per creation.
func BenchmarkTusCreation(b *testing.B) {
	dir := b.TempDir()
	reg := prometheus.NewRegistry()
	observe, err := StorageTimer(reg)
	if err != nil {
		b.Fatal(err)
	}
	backend, err := storage.New(context.Background(), storage.Config{DataDir: filepath.Join(dir, "data"), Observe: observe})
	if err != nil {
		b.Fatal(err)
	}
	st, err := pebblestore.Open(filepath.Join(dir, "sessions.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	verifier, err := auth.NewVerifier([]string{testSecret})
	if err != nil {
		b.Fatal(err)
	}
	// Wired as serve wires it: the policy knows the ID key, so that a
	// slot's own upload needs no stored mapping.
	idKey := []byte("0123456789abcdef0123456789abcdef")
	var warnings atomic.Int64
	policy := auth.DefaultPolicy()
	policy.IDKey = idKey
	gw, err := New(Config{
		Verifier:    verifier,
		Sessions:    auth.NewSessions(auth.Timed(st, observe), policy, nil),
		Storage:     backend,
		IDKey:       idKey,
		LockTimeout: time.Second,
		Registry:    reg,
		Logger:      slog.New(warnCounter{Handler: slog.NewJSONHandler(io.Discard, nil), n: &warnings}),
	})
	if err != nil {
		b.Fatal(err)
	}
	h := gw.Handler()
	// The slots are signed before the clock starts.
	slots := make([]string, b.N)
	for i := range slots {
		s, err := auth.SignSlot(testSecret, auth.SignRequest{
			BaseURL: "http://127.0.0.1:8080/upload/", Name: fmt.Sprintf("photo-%d.jpg", i), Size: 1024,
			Protocol: auth.ProtoV2, TTL: time.Hour, Now: time.Now(),
		})
		if err != nil {
			b.Fatal(err)
		}
		slots[i] = s.PutURL
	}
	var next atomic.Int64
	b.SetParallelism(8) // 16 creators on two cores
	before := benchCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := slots[next.Add(1)-1]
			r := httptest.NewRequest(http.MethodPost, u, nil)
			r.RemoteAddr = "192.0.2.7:40000"
			r.Header.Set("Tus-Resumable", "1.0.0")
			r.Header.Set("Upload-Length", "1024")
			w := deadlineRecorder{httptest.NewRecorder()}
			h.ServeHTTP(w, r)
			if w.Code != http.StatusCreated {
				b.Errorf("creation: %d %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	if n := warnings.Load(); n > 0 {
		b.Errorf("%d warnings logged: the benchmark measures work that a served creation does not do", n)
	}
	b.ReportMetric(float64((benchCPU(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
}

// deadlineRecorder is a ResponseRecorder that takes deadlines as a server's
// connection does. tusd sets a read and a write deadline on every request,
// and logs a warning for each when the writer cannot take them: without
// this the benchmark would measure two warnings per creation that a served
// request does not log.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetReadDeadline(time.Time) error  { return nil }
func (deadlineRecorder) SetWriteDeadline(time.Time) error { return nil }

// warnCounter counts the records at warn and above that reach its handler.
type warnCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h warnCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return warnCounter{Handler: h.Handler.WithAttrs(as), n: h.n}
}

func (h warnCounter) WithGroup(name string) slog.Handler {
	return warnCounter{Handler: h.Handler.WithGroup(name), n: h.n}
}

// benchCPU is the user and system CPU time this process has used.
func benchCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

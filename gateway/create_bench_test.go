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
	policy := auth.DefaultPolicy()
	policy.IDKey = idKey
	gw, err := New(Config{
		Verifier:    verifier,
		Sessions:    auth.NewSessions(auth.Timed(st, observe), policy, nil),
		Storage:     backend,
		IDKey:       idKey,
		LockTimeout: time.Second,
		Registry:    reg,
		Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil)),
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
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusCreated {
				b.Errorf("creation: %d %s", w.Code, w.Body)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((benchCPU(b)-before).Microseconds())/float64(b.N), "cpu-µs/op")
}

// benchCPU is the user and system CPU time this process has used.
func benchCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

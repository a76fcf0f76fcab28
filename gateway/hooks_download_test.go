package gateway

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/hooks"
	"github.com/uploadgate/uploadgate/auth"
)

// blockingHook holds every pre-finish call until release is closed.
type blockingHook struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (h *blockingHook) Setup() error { return nil }

func (h *blockingHook) InvokeHook(req hooks.HookRequest) (hooks.HookResponse, error) {
	if req.Type == hooks.HookPreFinish {
		h.once.Do(func() { close(h.entered) })
		<-h.release
	}
	return hooks.HookResponse{}, nil
}

// A file whose pre-finish hook (a virus scan) has not answered yet is not
// served, although all its bytes are stored; once the hook accepts, it is.
func TestDownloadWaitsForPreFinishHook(t *testing.T) {
	h := &blockingHook{entered: make(chan struct{}), release: make(chan struct{})}
	tg := newTestGateway(t, func(c *Config) {
		c.Hooks = &HookConfig{Handler: h, Events: []hooks.HookType{hooks.HookPreFinish}, Timeout: 10 * time.Second}
	})
	slot := tg.sign(auth.ProtoV2, "scanned.txt", 5, nil)
	done := make(chan int, 1)
	go func() {
		res, _ := tg.put(slot.PutURL, "hello", nil)
		done <- res.StatusCode
	}()
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the pre-finish hook was not called")
	}
	if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusNotFound {
		t.Fatalf("GET while the pre-finish hook runs: %d %q, want 404", get.StatusCode, body)
	}
	close(h.release)
	if status := <-done; status != http.StatusCreated {
		t.Fatalf("PUT: %d", status)
	}
	if get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil); get.StatusCode != http.StatusOK || body != "hello" {
		t.Fatalf("GET after the hook accepted: %d %q", get.StatusCode, body)
	}
}

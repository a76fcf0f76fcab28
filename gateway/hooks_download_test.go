package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/hooks"
	hookhttp "github.com/tus/tusd/v2/pkg/hooks/http"
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

// recordingHook records the events it receives.
type recordingHook struct {
	mu     sync.Mutex
	events []hooks.HookRequest
}

func (h *recordingHook) Setup() error { return nil }

func (h *recordingHook) InvokeHook(req hooks.HookRequest) (hooks.HookResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, req)
	return hooks.HookResponse{}, nil
}

func (h *recordingHook) find(event hooks.HookType) (hooks.HookRequest, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Type == event {
			return e, true
		}
	}
	return hooks.HookRequest{}, false
}

// After a re-bind, hooks see the upload's new slot: its path and GET URL,
// not the ones stored when the upload was created.
func TestHooksSeeTheSlotAfterARebind(t *testing.T) {
	h := &recordingHook{}
	tg := newTestGateway(t, func(c *Config) {
		c.Hooks = &HookConfig{Handler: h, Events: []hooks.HookType{hooks.HookPreFinish, hooks.HookPostFinish}}
	})
	old := tg.sign(auth.ProtoV3, "photo.jpg", 10, nil)
	res := tg.tusCreate(old, 10, nil)
	wantStatus(t, res, http.StatusCreated)
	loc := res.Header.Get("Location")
	wantStatus(t, tg.patch(loc, 0, "01234"), http.StatusNoContent)
	tg.clock.Advance(25 * time.Hour)
	fresh := tg.sign(auth.ProtoV2, "photo.jpg", 10, nil)
	wantStatus(t, tg.tusCreate(fresh, 10, map[string]string{resumeFromHeader: loc}), http.StatusCreated)
	wantStatus(t, tg.patch(loc, 5, "56789"), http.StatusNoContent)
	var ev hooks.HookRequest
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		if ev, ok = h.find(hooks.HookPostFinish); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pre, _ := h.find(hooks.HookPreFinish)
	for _, e := range []hooks.HookRequest{pre, ev} {
		m := e.Event.Upload.MetaData
		if m[MetaGetURL] != fresh.GetURL || m[MetaProtocol] != string(auth.ProtoV2) {
			t.Errorf("%s: get URL %q protocol %q; want the new slot's %q, v2", e.Type, m[MetaGetURL], m[MetaProtocol], fresh.GetURL)
		}
	}
}

// A client that goes away while the pre-finish hook (a virus scan over
// tusd's HTTP hook client) still runs does not cost the upload: the hook's
// request outlives the client's for the write grace, the file is accepted
// and served. tusd's own grace period is short (tusdGrace): without the
// gateway's, the hook's request was cancelled with the client's, the hook
// counted as failed and the complete file was removed.
func TestPreFinishHookOutlivesTheClient(t *testing.T) {
	entered := make(chan struct{}, 1)
	scanner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req hooks.HookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Type == hooks.HookPreFinish {
			entered <- struct{}{}
			select { // the scan takes longer than tusd's grace period
			case <-time.After(20 * tusdGrace):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	defer scanner.Close()
	hook := &hookhttp.HttpHook{Endpoint: scanner.URL, Timeout: 10 * time.Second, SizeLimit: 1 << 20}
	if err := hook.Setup(); err != nil {
		t.Fatal(err)
	}
	tg := newTestGateway(t, func(c *Config) {
		c.Hooks = &HookConfig{Handler: hook, Events: []hooks.HookType{hooks.HookPreFinish}, Timeout: 10 * time.Second}
	})
	file := strings.Repeat("scanned ", 1024)
	slot := tg.sign(auth.ProtoV2, "scanned.bin", int64(len(file)), nil)
	u, err := url.Parse(slot.PutURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", u.RequestURI(), u.Host, len(file), file)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the pre-finish hook was not called")
	}
	conn.Close() // the client goes away while the scan runs
	deadline := time.Now().Add(5 * time.Second)
	for {
		get, body := tg.do(http.MethodGet, slot.GetURL, nil, nil)
		if get.StatusCode == http.StatusOK {
			if sha(body) != sha(file) {
				t.Fatalf("download: %d bytes, not the file", len(body))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %d 5 s after the client went away during the pre-finish hook; want the accepted file", get.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

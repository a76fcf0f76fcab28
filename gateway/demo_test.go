package gateway

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/uploadgate/uploadgate/web"
)

func withDemo(secret string) gwOption {
	return func(c *Config) { c.Demo = &DemoConfig{Files: web.Files(), MintSecret: secret} }
}

// newDemoGateway is a test gateway with the demo pages that mints slots with
// secret, served on a loopback address it knows as its listen address.
func newDemoGateway(t *testing.T, secret string, opts ...gwOption) *testGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, func(c *Config) {
		c.Demo = &DemoConfig{Files: web.Files(), MintSecret: secret, ListenAddr: ln.Addr().String()}
	})
	tg := newTestGateway(t, opts...)
	srv := httptest.NewUnstartedServer(tg.gw.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	tg.srv = srv
	return tg
}

func demoGet(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func mintDemoSlot(t *testing.T, tg *testGateway, origin, body string) (*http.Response, demoSlotResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tg.srv.URL+"/demo/slot", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s demoSlotResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
	}
	return resp, s
}

func TestDemoOffByDefault(t *testing.T) {
	tg := newTestGateway(t)
	for _, p := range []string{"/demo/", "/demo/demo.js", "/demo"} {
		if resp, _ := demoGet(t, tg.srv.URL+p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s without a demo: %d; want 404", p, resp.StatusCode)
		}
	}
	resp, _ := mintDemoSlot(t, tg, "", `{"name":"a.txt","size":1}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /demo/slot without a demo: %d; want 404", resp.StatusCode)
	}
}

var inlineScript = regexp.MustCompile(`<script(\s[^>]*)?>`)

func TestDemoPages(t *testing.T) {
	tg := newTestGateway(t, withDemo(""))
	for _, p := range []string{"/demo/", "/demo/uppy.html"} {
		resp, body := demoGet(t, tg.srv.URL+p)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q; want scripts from the gateway only", p, csp)
		}
		scripts := inlineScript.FindAllString(body, -1)
		if len(scripts) == 0 {
			t.Errorf("GET %s: no script element", p)
		}
		for _, s := range scripts {
			if !strings.Contains(s, " src=") {
				t.Errorf("GET %s: inline script %q", p, s)
			}
			if strings.Contains(s, "//") {
				t.Errorf("GET %s: script from another origin %q", p, s)
			}
		}
		if strings.Contains(body, testSecret) {
			t.Errorf("GET %s: the page contains the secret", p)
		}
	}
	for _, p := range []string{
		"/demo/demo.js", "/demo/uppy.js", "/demo/demo.css",
		"/demo/vendor/tus-js-client/tus.min.js", "/demo/vendor/tus-js-client/LICENSE",
		"/demo/vendor/uppy/uppy.min.js", "/demo/vendor/uppy/uppy.min.css", "/demo/vendor/uppy/LICENSE",
	} {
		resp, body := demoGet(t, tg.srv.URL+p)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
		if strings.HasSuffix(p, ".js") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("GET %s: Content-Type %q", p, resp.Header.Get("Content-Type"))
		}
	}
	resp, _ := demoGet(t, tg.srv.URL+"/demo/nothing.js")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /demo/nothing.js: %d; want 404", resp.StatusCode)
	}
	// Minting is off without a secret.
	resp, _ = mintDemoSlot(t, tg, "", `{"name":"a.txt","size":1}`)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /demo/slot without a mint secret: %d; want 403", resp.StatusCode)
	}
}

func TestDemoMintSlot(t *testing.T) {
	tg := newDemoGateway(t, testSecret)
	resp, s := mintDemoSlot(t, tg, tg.srv.URL, `{"name":"hello.txt","size":5}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /demo/slot: %d", resp.StatusCode)
	}
	if !strings.HasPrefix(s.PutURL, tg.srv.URL+"/upload/") || !strings.HasSuffix(s.GetURL, "/hello.txt") {
		t.Fatalf("minted %+v; want URLs under %s/upload/", s, tg.srv.URL)
	}
	// The minted slot is a tus endpoint of this gateway.
	req, _ := http.NewRequest(http.MethodPost, s.PutURL, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(5))
	cresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cresp.Body.Close()
	if cresp.StatusCode != http.StatusCreated {
		t.Errorf("tus creation at the minted slot: %d; want 201", cresp.StatusCode)
	}

	if resp, _ := mintDemoSlot(t, tg, "http://evil.example", `{"name":"a.txt","size":1}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /demo/slot from another origin: %d; want 403", resp.StatusCode)
	}
	if resp, _ := mintDemoSlot(t, tg, tg.srv.URL, `{"name":"a/b","size":1}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /demo/slot with a bad name: %d; want 400", resp.StatusCode)
	}
	if resp, _ := demoGet(t, tg.srv.URL+"/demo/slot"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /demo/slot: %d; want 405", resp.StatusCode)
	}
	// A client that is not on loopback gets nothing.
	r := httptest.NewRequest(http.MethodPost, "/demo/slot", strings.NewReader(`{"name":"a.txt","size":1}`))
	r.RemoteAddr = "192.0.2.7:40000"
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	tg.gw.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Errorf("POST /demo/slot from 192.0.2.7: %d; want 403", w.Code)
	}
}

// Slots are minted only for a browser on this machine that loaded the demo
// from the gateway's own address: not through a proxy (even a trusted one on
// loopback), not for another name of the address (DNS rebinding), not without
// an Origin.
func TestDemoMintRefusals(t *testing.T) {
	tg := newDemoGateway(t, testSecret, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	u, err := url.Parse(tg.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	body := `{"name":"a.txt","size":1}`
	for _, c := range []struct {
		name   string
		host   string // empty: the listen address
		header map[string]string
		want   int
		reason string
	}{
		{name: "same origin", header: map[string]string{"Origin": tg.srv.URL}, want: http.StatusOK},
		{name: "localhost", host: "localhost:" + port, header: map[string]string{"Origin": "http://localhost:" + port}, want: http.StatusOK},
		{name: "page from localhost", header: map[string]string{"Origin": "http://localhost:" + port}, want: http.StatusOK},
		{name: "X-Forwarded-For", header: map[string]string{"Origin": tg.srv.URL, "X-Forwarded-For": "203.0.113.9"}, want: http.StatusForbidden, reason: "X-Forwarded-For"},
		{name: "X-Real-IP", header: map[string]string{"Origin": tg.srv.URL, "X-Real-IP": "203.0.113.9"}, want: http.StatusForbidden, reason: "X-Real-IP"},
		{name: "Forwarded", header: map[string]string{"Origin": tg.srv.URL, "Forwarded": "for=203.0.113.9"}, want: http.StatusForbidden, reason: "Forwarded"},
		{name: "X-Forwarded-Host", header: map[string]string{"Origin": tg.srv.URL, "X-Forwarded-Host": "evil.example"}, want: http.StatusForbidden, reason: "X-Forwarded-Host"},
		{name: "empty X-Forwarded-For", header: map[string]string{"Origin": tg.srv.URL, "X-Forwarded-For": ""}, want: http.StatusForbidden, reason: "X-Forwarded-For"},
		{name: "DNS rebinding", host: "evil.example:" + port, header: map[string]string{"Origin": "http://evil.example:" + port}, want: http.StatusForbidden, reason: "Host"},
		{name: "other port", host: "127.0.0.1:1", header: map[string]string{"Origin": "http://127.0.0.1:1"}, want: http.StatusForbidden, reason: "Host"},
		{name: "other origin", header: map[string]string{"Origin": "http://evil.example:" + port}, want: http.StatusForbidden, reason: "cross-origin"},
		{name: "https origin", header: map[string]string{"Origin": "https://127.0.0.1:" + port}, want: http.StatusForbidden, reason: "cross-origin"},
		{name: "null origin", header: map[string]string{"Origin": "null"}, want: http.StatusForbidden, reason: "cross-origin"},
		{name: "no origin", want: http.StatusForbidden, reason: "Origin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, tg.srv.URL+"/demo/slot", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for k, v := range c.header {
				req.Header[http.CanonicalHeaderKey(k)] = []string{v}
			}
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want {
				t.Fatalf("POST /demo/slot: %d %s; want %d", resp.StatusCode, msg, c.want)
			}
			if c.want == http.StatusOK && !strings.Contains(string(msg), `"putURL"`) {
				t.Fatalf("POST /demo/slot: %s; want a slot", msg)
			}
			if c.reason != "" && !strings.Contains(string(msg), c.reason) {
				t.Errorf("refusal %q does not say %q", msg, c.reason)
			}
		})
	}
}

// Without a known listen address nothing is minted.
func TestDemoMintNeedsListenAddr(t *testing.T) {
	tg := newTestGateway(t, withDemo(testSecret))
	if resp, _ := mintDemoSlot(t, tg, tg.srv.URL, `{"name":"a.txt","size":1}`); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /demo/slot without a listen address: %d; want 403", resp.StatusCode)
	}
}

func TestDemoHosts(t *testing.T) {
	for addr, want := range map[string][]string{
		"127.0.0.1:8080": {"127.0.0.1:8080", "localhost:8080"},
		"[::1]:8080":     {"[::1]:8080", "localhost:8080"},
		"localhost:8080": {"localhost:8080", "127.0.0.1:8080", "[::1]:8080"},
		"127.0.0.1:80":   {"127.0.0.1:80", "127.0.0.1", "localhost:80", "localhost"},
		"192.0.2.1:8080": {"192.0.2.1:8080"},
		"127.0.0.1:0":    nil,
		":8080":          nil,
		"bad":            nil,
	} {
		if got := demoHosts(addr); !slices.Equal(got, want) {
			t.Errorf("demoHosts(%q) = %q; want %q", addr, got, want)
		}
	}
}

func TestLoopbackListen(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:80": true, "127.0.0.2:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "192.0.2.1:8080": false, "example.org:80": false, "bad": false,
	} {
		if got := LoopbackListen(addr); got != want {
			t.Errorf("LoopbackListen(%q) = %v; want %v", addr, got, want)
		}
	}
}

package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uploadgate/uploadgate/internal/drafttest"
	"github.com/uploadgate/uploadgate/internal/testproc"
)

// The gateway behind the nginx and Caddy configurations of docs/proxy.md,
// taken from the page with only the addresses filled in: a PUT upload, a tus
// upload cut off and resumed, a draft PUT (whose 104 Caddy passes on and the
// nginx example keeps from being sent), and the client's address through
// X-Forwarded-For with --trusted-proxies.
//
// The tests need nginx and caddy (Debian's nginx-light and caddy packages,
// which `make deps` installs); UPLOADGATE_E2E_SKIP_PROXY=1 skips them when
// they are missing.

const proxySkipVar = "UPLOADGATE_E2E_SKIP_PROXY"

// proxyDocSnippet is the first fenced block of language lang in docs/proxy.md.
func proxyDocSnippet(t *testing.T, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "proxy.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```" + regexp.QuoteMeta(lang) + "\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatalf("docs/proxy.md has no ```%s block", lang)
	}
	return string(m[1])
}

// mustReplace replaces old in s, which must contain it: the page and the test
// must not drift apart unnoticed.
func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("the example in docs/proxy.md no longer contains %q:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}

// behindProxy is a gateway behind a running proxy.
type behindProxy struct {
	gw     *server
	URL    string // the proxy's http://127.0.0.1:PORT
	server string // the Server header the proxy adds
}

// startBehindProxy starts the gateway with the flags the page gives
// (--public-url the proxy, --trusted-proxies 127.0.0.1), then the proxy from
// config(proxyPort, gatewayHostPort, dir), and waits until /healthz answers
// through the proxy.
func startBehindProxy(t *testing.T, tool string, config func(port int, gw, dir string) *exec.Cmd, serverHeader string) *behindProxy {
	t.Helper()
	testproc.Require(t, tool, proxySkipVar, tool+" not found in PATH: run `make deps` (scripts/install-test-deps.sh), or set "+proxySkipVar+"=1 to skip the proxy tests")
	port := testproc.Port(t)
	p := &behindProxy{URL: "http://127.0.0.1:" + strconv.Itoa(port), server: serverHeader}
	p.gw = startServer(t, "--public-url", p.URL, "--trusted-proxies", "127.0.0.1")
	dir := t.TempDir()
	// nginx's workers run as another user when the tests run as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := config(port, strings.TrimPrefix(p.gw.URL, "http://"), dir)
	cmd.Env = append(childEnv(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logPath := filepath.Join(dir, tool+".log")
	proc, err := testproc.Start(cmd, logPath)
	if err != nil {
		t.Fatalf("starting %s: %v", tool, err)
	}
	t.Cleanup(func() {
		if proc.Stop(10 * time.Second) {
			t.Errorf("%s did not exit within 10s of SIGTERM; killed", tool)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", tool, b)
		}
	})
	err = proc.WaitReady(20*time.Second, 50*time.Millisecond, func() error {
		code, err := testproc.HTTPStatus(p.URL + "/healthz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/healthz through %s answered %d", tool, code)
		}
		return err
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("%s: %v\n%s", tool, err, b)
	}
	return p
}

// sign mints a slot whose URLs point at the proxy.
func (p *behindProxy) sign(t *testing.T, protocol, name string, size int64, ctype string) slot {
	t.Helper()
	sl := p.gw.sign(t, protocol, name, size, ctype)
	sl.PutURL = p.URL + strings.TrimPrefix(sl.PutURL, p.gw.URL)
	sl.GetURL = p.URL + strings.TrimPrefix(sl.GetURL, p.gw.URL)
	return sl
}

func TestProxyNginx(t *testing.T) {
	t.Parallel()
	p := startBehindProxy(t, "nginx", func(port int, gw, dir string) *exec.Cmd {
		site := proxyDocSnippet(t, "nginx")
		site = mustReplace(t, site, "server 127.0.0.1:8080;", "server "+gw+";")
		site = mustReplace(t, site, "listen 443 ssl;", "listen 127.0.0.1:"+strconv.Itoa(port)+";")
		var kept []string
		for _, line := range strings.Split(site, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "ssl_certificate") {
				kept = append(kept, line)
			}
		}
		conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, strings.Join(kept, "\n"))
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command("nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	}, "nginx")
	proxyChecks(t, p, false)
}

func TestProxyCaddy(t *testing.T) {
	t.Parallel()
	p := startBehindProxy(t, "caddy", func(port int, gw, dir string) *exec.Cmd {
		site := proxyDocSnippet(t, "caddyfile")
		site = mustReplace(t, site, "upload.example.org {", "http://127.0.0.1:"+strconv.Itoa(port)+" {")
		site = mustReplace(t, site, "reverse_proxy 127.0.0.1:8080", "reverse_proxy "+gw)
		conf := "{\n\tadmin off\n\tauto_https off\n}\n\n" + site
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command("caddy", "run", "--config", path, "--adapter", "caddyfile")
	}, "Caddy")
	proxyChecks(t, p, true)
}

// proxyChecks runs the uploads through p; forwards104 is what docs/proxy.md
// says about the proxy and the draft's 104.
func proxyChecks(t *testing.T, p *behindProxy, forwards104 bool) {
	t.Run("put", func(t *testing.T) {
		const size = 3*MiB + 17
		data, sum := sessRandomBytes(t, size)
		sl := p.sign(t, "v2", "put.bin", size, "application/octet-stream")
		req, err := http.NewRequest(http.MethodPut, sl.PutURL, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("PUT through %s: %v", p.server, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || !strings.Contains(resp.Header.Get("Server"), p.server) {
			t.Fatalf("PUT through %s: %d, Server %q; want 201 from %s", p.server, resp.StatusCode, resp.Header.Get("Server"), p.server)
		}
		if resp, got, n := download(t, sl.GetURL); resp.StatusCode != http.StatusOK || got != sum || n != size {
			t.Fatalf("GET %s: %d, %d bytes, SHA-256 %s; want 200, %d, %s", sl.GetURL, resp.StatusCode, n, got, size, sum)
		}
	})

	t.Run("tus-resume", func(t *testing.T) {
		const size = 4*MiB + 99
		const part = MiB + 5
		data, sum := sessRandomBytes(t, size)
		sl := p.sign(t, "v1", "tus.bin", size, "")
		post := ietfClient.Send(t, http.MethodPost, sl.PutURL,
			drafttest.Header("Tus-Resumable", "1.0.0", "Upload-Length", strconv.Itoa(size)), nil, 0, nil)
		loc := post.Header.Get("Location")
		if post.Err != nil || post.Status != http.StatusCreated || !strings.HasPrefix(loc, p.URL+"/files/") {
			t.Fatalf("POST through %s: %v %d %q, Location %q; want 201 and an upload URL at the proxy (--public-url)", p.server, post.Err, post.Status, post.Body, loc)
		}
		// The first PATCH carries the whole file but the network goes away
		// after part bytes.
		h := drafttest.Header("Tus-Resumable", "1.0.0", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
		cut := ietfClient.SendCut(t, http.MethodPatch, loc, h, data, part)
		ietfClient.WaitOffset(t, sl.PutURL, "", part, 20*time.Second)
		if a := cut.Cut(); a.Err == nil {
			t.Fatalf("the cut-off PATCH was answered: %d %q", a.Status, a.Body)
		}
		if off := settledOffset(t, loc); off != part {
			t.Fatalf("HEAD after the cut through %s: Upload-Offset %d; want %d", p.server, off, part)
		}
		h.Set("Upload-Offset", strconv.Itoa(part))
		rest := ietfClient.Send(t, http.MethodPatch, loc, h, bytes.NewReader(data[part:]), size-part, nil)
		if rest.Err != nil || rest.Status != http.StatusNoContent || rest.Header.Get("Upload-Offset") != strconv.Itoa(size) {
			t.Fatalf("PATCH of the rest through %s: %v %d %q, Upload-Offset %q; want 204, %d", p.server, rest.Err, rest.Status, rest.Body, rest.Header.Get("Upload-Offset"), size)
		}
		if resp, got, n := download(t, sl.GetURL); resp.StatusCode != http.StatusOK || got != sum || n != size {
			t.Fatalf("GET %s: %d, %d bytes, SHA-256 %s; want 200, %d, %s", sl.GetURL, resp.StatusCode, n, got, size, sum)
		}
	})

	t.Run("draft-put", func(t *testing.T) {
		const size = 2*MiB + 3
		data, sum := sessRandomBytes(t, size)
		sl := p.sign(t, "v2", "draft.mov", size, "video/quicktime")
		h := draftFlow{6}.creation("video/quicktime", size, true)
		a := ietfClient.Send(t, http.MethodPut, sl.PutURL, h, bytes.NewReader(data), size, nil)
		if a.Err != nil || a.Status != http.StatusCreated {
			t.Fatalf("draft PUT (interop 6, Upload-Complete: ?1) through %s: %v %d %q, informational %+v; want 201", p.server, a.Err, a.Status, a.Body, a.Infos)
		}
		var got104 []drafttest.Info
		for _, in := range a.Infos {
			if in.Code == drafttest.StatusResumptionSupported {
				got104 = append(got104, in)
			}
		}
		if forwards104 {
			if len(got104) != 1 || !strings.HasPrefix(got104[0].Header.Get("Location"), p.URL+"/files/") {
				t.Fatalf("draft PUT through %s: 104s %+v; want one, with Location under %s/files/ (docs/proxy.md: %s passes the 104 on)", p.server, got104, p.URL, p.server)
			}
		} else if len(a.Infos) != 0 || a.Header.Get("Upload-Complete") != "" {
			// The example keeps the draft's header from the gateway, which
			// then answers a plain PUT: no 104, no draft fields.
			t.Fatalf("draft PUT through %s: informational %+v, Upload-Complete %q; want none (docs/proxy.md: the example keeps the 104 from being sent)", p.server, a.Infos, a.Header.Get("Upload-Complete"))
		}
		if resp, got, n := download(t, sl.GetURL); resp.StatusCode != http.StatusOK || got != sum || n != size {
			t.Fatalf("GET %s: %d, %d bytes, SHA-256 %s; want 200, %d, %s", sl.GetURL, resp.StatusCode, n, got, size, sum)
		}
	})

	// The gateway tells clients apart behind the proxy: failed slot checks
	// from 127.0.0.2 use up that address's allowance (even with a different
	// X-Forwarded-For of the client's own on each request, which is not
	// believed), while 127.0.0.3 still gets its plain 403.
	t.Run("client-address", func(t *testing.T) {
		sl := p.sign(t, "v2", "addr.bin", 10, "")
		bad := sl.PutURL[:len(sl.PutURL)-1] + map[bool]string{true: "0", false: "1"}[strings.HasSuffix(sl.PutURL, "1")]
		put := func(c *http.Client, spoof string) int {
			t.Helper()
			req, err := http.NewRequest(http.MethodPut, bad, bytes.NewReader(make([]byte, 10)))
			if err != nil {
				t.Fatal(err)
			}
			if spoof != "" {
				req.Header.Set("X-Forwarded-For", spoof)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("PUT with a bad signature through %s: %v", p.server, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		from2 := sessClientFrom(t, "127.0.0.2")
		var codes []int
		for i := 1; i <= xmppFailedCheckLimit+2; i++ {
			codes = append(codes, put(from2, "198.51.100."+strconv.Itoa(i)))
		}
		for i, c := range codes[:xmppFailedCheckLimit] {
			if c != http.StatusForbidden {
				t.Fatalf("bad PUTs from 127.0.0.2 through %s: %v; want 403 for the first %d (request %d)", p.server, codes, xmppFailedCheckLimit, i+1)
			}
		}
		if codes[len(codes)-1] != http.StatusTooManyRequests {
			t.Fatalf("bad PUTs from 127.0.0.2 through %s: %v; want 429 once its %d failed checks are used up: the gateway does not see the client's address", p.server, codes, xmppFailedCheckLimit)
		}
		if c := put(sessClientFrom(t, "127.0.0.3"), ""); c != http.StatusForbidden {
			t.Fatalf("a bad PUT from 127.0.0.3 through %s: %d; want 403: the gateway takes all clients for the proxy", p.server, c)
		}
	})
}

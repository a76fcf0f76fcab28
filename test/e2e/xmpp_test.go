package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// The XEP-0363 door with real XMPP software: Debian's Prosody hands out the
// slots (prosody-modules' mod_http_upload_external v1 and v2, and Prosody's
// own mod_http_file_share with JWT slots), and a slixmpp client discovers the
// upload service, requests slots and PUTs files to one running uploadgate.

const (
	xmppDomain    = "localhost"
	xmppUser      = "tester"
	xmppSizeLimit = 16 * MiB
)

// TestXMPPUploadProsody first sends bad requests with Prosody's slots of
// every component (altered, missing, expired and other slots' signatures,
// oversize bodies), enough to use up the gateway's allowance of failed slot
// checks for the loopback address, then uploads the same set of files through
// each component from that same address and downloads them again from the
// GET URLs: a slot whose signature verifies must still be accepted.
func TestXMPPUploadProsody(t *testing.T) {
	t.Parallel()
	python := requireXMPP(t)
	// tusd's hooks are on: a hook server sees every genuine upload, and none
	// of the bad requests.
	hookSrv, hookLog := httpHookServer(t, func(hookEvent) map[string]any { return map[string]any{} })
	s := startServer(t, "--hooks-http", hookSrv.URL, "--hooks-enabled-events", "pre-create,post-finish")
	p := startProsody(t, s.URL+"/upload/", s.Secret)
	if strings.Contains(p.log(), "Activated service 'http") {
		t.Errorf("Prosody started an HTTP server; the upload components with an external service should not need one")
	}
	password := randomHex(t, 12)
	p.register(t, xmppUser, password)

	components := []xmppComponent{
		{"http_upload_external_v1", "upload-v1." + xmppDomain, "v", func(t *testing.T, up xmppUpload) {
			xmppRequireSignature(t, up, "v")
		}},
		{"http_upload_external_v2", "upload-v2." + xmppDomain, "v2", func(t *testing.T, up xmppUpload) {
			xmppRequireSignature(t, up, "v2")
		}},
		{"http_file_share_jwt", "share." + xmppDomain, "", func(t *testing.T, up xmppUpload) {
			u := xmppParseURL(t, up.PutURL)
			if u.RawQuery != "" {
				t.Errorf("%s: PUT URL %s carries a query; mod_http_file_share signs with a header", up.Name, up.PutURL)
			}
			if !strings.HasPrefix(up.PutHeaders["Authorization"], "Bearer ey") {
				t.Errorf("%s: slot headers %v; want Authorization: Bearer <JWT>", up.Name, up.PutHeaders)
			}
			if up.GetURL != up.PutURL {
				t.Errorf("%s: GET URL %s differs from PUT URL %s; mod_http_file_share hands out one URL", up.Name, up.GetURL, up.PutURL)
			}
		}},
	}

	// The bad requests run to the end before any genuine upload starts: the
	// parallel subtests below wait until this function has returned.
	t.Run("bad_requests_first", func(t *testing.T) {
		xmppBadRequestsFirst(t, python, p, password, s, components)
		if n := hookLog.len(); n != 0 {
			t.Errorf("the hook server got %d events from the bad requests; want none", n)
		}
	})

	files := xmppTestFiles(t)
	for _, c := range components {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := runXEP0363Client(t, python, p, xmppUser+"@"+xmppDomain, password, c.service, files)
			if res.Service.JID != c.service || res.Service.MaxFileSize == nil || *res.Service.MaxFileSize != xmppSizeLimit {
				t.Errorf("disco found %+v; want %s with max-file-size %d", res.Service, c.service, xmppSizeLimit)
			}
			if len(res.Uploads) != len(files) {
				t.Fatalf("the client reported %d uploads; want %d", len(res.Uploads), len(files))
			}
			for i, up := range res.Uploads {
				f := files[i]
				if up.Name != filepath.Base(f.Path) || up.Size != f.Size {
					t.Fatalf("upload %d is %q (%d B); want %q (%d B)", i, up.Name, up.Size, filepath.Base(f.Path), f.Size)
				}
				t.Logf("%s (%d B, type %s, via %s): PUT %s %v → %d; GET %s", up.Name, up.Size, xmppTypeName(up.Type), up.Via, up.PutURL, xmppHeaderNames(up.PutHeaders), up.Status, up.GetURL)
				if up.Status != 201 {
					t.Errorf("%s (%d B, via %s): PUT %s answered %d %q; want exactly 201", up.Name, up.Size, up.Via, up.PutURL, up.Status, up.Body)
					continue
				}
				for _, u := range []string{up.PutURL, up.GetURL} {
					if !strings.HasPrefix(u, s.URL+"/upload/") {
						t.Errorf("%s: slot URL %s is not under the gateway's upload base %s/upload/", up.Name, u, s.URL)
					}
				}
				if path := xmppParseURL(t, up.GetURL).Path; !strings.HasSuffix(path, "/"+up.Name) {
					t.Errorf("%s: GET URL %s decodes to path %q; want it to end with the file name", up.Name, up.GetURL, path)
				}
				c.check(t, up)
				// The upload's post-finish event names its GET URL's file.
				slotPath := strings.TrimPrefix(xmppParseURL(t, up.GetURL).Path, "/upload/")
				fin := hookLog.waitFor(t, "post-finish", func(e hookEvent) bool {
					return e.Event.Upload.MetaData["uploadgate_slot_path"] == slotPath
				})
				if fin.Event.Upload.Size != f.Size || fin.Event.Upload.MetaData["uploadgate_get_url"] == "" {
					t.Errorf("%s: post-finish event: size %d, metadata %v", up.Name, fin.Event.Upload.Size, fin.Event.Upload.MetaData)
				}

				resp, sum, n := download(t, up.GetURL)
				if resp.StatusCode != 200 || sum != f.SHA256 || n != f.Size {
					t.Errorf("%s: GET %s = %d, %d B, sha256 %s; want 200, %d B, sha256 %s", up.Name, up.GetURL, resp.StatusCode, n, sum, f.Size, f.SHA256)
				}
				wantType := "application/octet-stream"
				if f.Type != nil {
					wantType = *f.Type
				}
				if got := resp.Header.Get("Content-Type"); got != wantType {
					t.Errorf("%s: GET Content-Type %q; want %q", up.Name, got, wantType)
				}
				if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("%s: GET X-Content-Type-Options %q; want nosniff", up.Name, got)
				}
			}
		})
	}
}

// xmppComponent is one of Prosody's upload components.
type xmppComponent struct {
	name, service string
	sig           string // the signature's query parameter; "" for a bearer JWT
	check         func(t *testing.T, up xmppUpload)
}

// xmppFailedCheckLimit is the gateway's default allowance of failed slot
// checks per client address (--failed-checks-per-minute).
const xmppFailedCheckLimit = 10

// xmppBadRequest is a PUT that the gateway must refuse.
type xmppBadRequest struct {
	what   string
	url    string
	header map[string]string
	size   int64 // the body's length
	want   int   // the status while the address has failed checks left
}

// xmppBadRequestsFirst gets two small slots (a and b, 10 bytes, no type) from
// every component and sends bad PUTs with them from the loopback address the
// XMPP client uploads from, more than the gateway's allowance of failed slot
// checks. While fewer than xmppFailedCheckLimit bad requests have been sent,
// each must get its own status exactly; after that 429 (with Retry-After),
// or 403 again for the forged signatures that come last, should the
// allowance have refilled meanwhile; and 429 must have been seen. None of
// them may store anything at its slot.
func xmppBadRequestsFirst(t *testing.T, python string, p *prosody, password string, s *server, components []xmppComponent) {
	var small []xmppFile
	for _, name := range []string{"bad-a.bin", "bad-b.bin"} {
		path, sum := randomFile(t, name, 10)
		small = append(small, xmppFile{Path: path, Via: "slot", Size: 10, SHA256: sum})
	}
	slots := make(map[string][]xmppUpload)
	var mu sync.Mutex
	t.Run("slots", func(t *testing.T) {
		for _, c := range components {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				res := runXEP0363Client(t, python, p, xmppUser+"@"+xmppDomain, password, c.service, small)
				if len(res.Uploads) != len(small) {
					t.Fatalf("the client reported %d slots; want %d", len(res.Uploads), len(small))
				}
				mu.Lock()
				slots[c.name] = res.Uploads
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	var bad, forged []xmppBadRequest
	// The JWT door first: its refusals other than a forged signature (an
	// expired token, no bearer token, an oversize body, another slot's token)
	// come while the address still has failed checks left, so that each gets
	// its own status.
	ordered := slices.Clone(components)
	slices.SortStableFunc(ordered, func(a, b xmppComponent) int {
		return strings.Compare(a.sig, b.sig) // "" (JWT), then v, then v2
	})
	for _, c := range ordered {
		a, b := slots[c.name][0], slots[c.name][1]
		if c.sig == "" {
			auth := a.PutHeaders["Authorization"]
			token := strings.TrimPrefix(auth, "Bearer ")
			if token == auth {
				t.Fatalf("%s: slot headers %v; want Authorization: Bearer <JWT>", a.Name, xmppHeaderNames(a.PutHeaders))
			}
			bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
			// Prosody's tokens live 5 minutes: this is the token it handed
			// out, with its expiry moved back as if those had passed, signed
			// again with the shared secret.
			expired := xmppResignJWT(t, token, s.Secret, func(claims map[string]any) {
				now := time.Now().Unix()
				claims["iat"], claims["exp"] = now-900, now-600
			})
			bad = append(bad,
				xmppBadRequest{"jwt: expired token", a.PutURL, bearer(expired), a.Size, 403},
				xmppBadRequest{"jwt: no Authorization header", a.PutURL, nil, a.Size, 401},
				xmppBadRequest{"jwt: Authorization: Bearer without a token", a.PutURL, map[string]string{"Authorization": "Bearer"}, a.Size, 401},
				xmppBadRequest{"jwt: body larger than the token's filesize", a.PutURL, bearer(token), a.Size + 1, 413},
				xmppBadRequest{"jwt: another slot's token", b.PutURL, bearer(token), b.Size, 403},
				xmppBadRequest{"jwt: altered signature", a.PutURL, bearer(xmppAlterJWT(t, token)), a.Size, 403},
			)
			forged = append(forged, xmppBadRequest{"jwt: altered signature", a.PutURL, bearer(xmppAlterJWT(t, token)), a.Size, 403})
			continue
		}
		ua, ub := xmppParseURL(t, a.PutURL), xmppParseURL(t, b.PutURL)
		altered := xmppWithQuery(ua, c.sig, xmppAlterHex(t, ua.Query().Get(c.sig)))
		other := *ub
		other.RawQuery = ua.RawQuery
		unsigned := *ua
		unsigned.RawQuery = ""
		bad = append(bad,
			xmppBadRequest{c.sig + ": altered signature", altered, nil, a.Size, 403},
			xmppBadRequest{c.sig + ": no signature", unsigned.String(), nil, a.Size, 401},
			xmppBadRequest{c.sig + ": another slot's signature", other.String(), nil, b.Size, 403},
			// v1 and v2 sign the size: at a slot without an upload a longer
			// body cannot be told from a forged signature.
			xmppBadRequest{c.sig + ": body larger than the signed size", a.PutURL, nil, a.Size + 1, 403},
		)
		forged = append(forged, xmppBadRequest{c.sig + ": altered signature", altered, nil, a.Size, 403})
	}
	bad = append(append(bad, forged...), forged...)

	limited := 0
	for i, r := range bad {
		status, header, body := xmppPut(t, r.url, r.header, r.size)
		t.Logf("bad request %d (%s): PUT %d B → %d %s", i+1, r.what, r.size, status, body)
		switch {
		case status == r.want && (i < xmppFailedCheckLimit || r.want == 403):
			if status == 401 && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("bad request %d (%s): 401 without WWW-Authenticate: Bearer", i+1, r.what)
			}
		case status == 429 && i >= xmppFailedCheckLimit:
			limited++
			if header.Get("Retry-After") == "" {
				t.Errorf("bad request %d (%s): 429 without Retry-After", i+1, r.what)
			}
		case i < xmppFailedCheckLimit:
			t.Errorf("bad request %d (%s): PUT %s answered %d %q; want %d", i+1, r.what, r.url, status, body, r.want)
		default:
			t.Errorf("bad request %d (%s), after %d bad ones: PUT %s answered %d %q; want 429 (or %d)", i+1, r.what, i, r.url, status, body, r.want)
		}
	}
	if limited == 0 {
		t.Errorf("none of %d bad requests from one address got 429; the gateway allows %d failed slot checks a minute", len(bad), xmppFailedCheckLimit)
	}
	for _, c := range components {
		for _, up := range slots[c.name] {
			if resp, _, n := download(t, up.GetURL); resp.StatusCode != 404 {
				t.Errorf("%s: after the bad requests GET %s = %d (%d B); want 404", c.name, up.GetURL, resp.StatusCode, n)
			}
		}
	}
}

// xmppPut sends a PUT of size zero bytes to u with header and returns the
// status, the headers and the start of the body.
func xmppPut(t *testing.T, u string, header map[string]string, size int64) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(make([]byte, size)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(body))
}

// xmppWithQuery is u with query parameter name set to value.
func xmppWithQuery(u *url.URL, name, value string) string {
	c := *u
	q := c.Query()
	q.Set(name, value)
	c.RawQuery = q.Encode()
	return c.String()
}

// xmppAlterHex changes the first digit of a hex MAC.
func xmppAlterHex(t *testing.T, mac string) string {
	t.Helper()
	if mac == "" {
		t.Fatal("no signature to alter")
	}
	d := "1"
	if mac[0] == '1' {
		d = "2"
	}
	return d + mac[1:]
}

// xmppAlterJWT changes the first character of a JWT's signature (the last
// character may only carry padding bits).
func xmppAlterJWT(t *testing.T, token string) string {
	t.Helper()
	i := strings.LastIndexByte(token, '.')
	if i < 0 || i+1 >= len(token) {
		t.Fatalf("token %.12s… has no signature to alter", token)
	}
	c := "A"
	if token[i+1] == 'A' {
		c = "B"
	}
	return token[:i+1] + c + token[i+2:]
}

// xmppResignJWT decodes token's claims, lets edit change them and signs them
// again (HS256) with secret under the token's own header.
func xmppResignJWT(t *testing.T, token, secret string, edit func(claims map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %.12s… is not a JWT", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	edit(claims)
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func xmppRequireSignature(t *testing.T, up xmppUpload, param string) {
	t.Helper()
	q := xmppParseURL(t, up.PutURL).Query()
	if len(q) != 1 || len(q.Get(param)) != 64 {
		t.Errorf("%s: PUT URL %s; want exactly one query parameter %s=<64 hex>", up.Name, up.PutURL, param)
	}
	if len(up.PutHeaders) != 0 {
		t.Errorf("%s: slot headers %v; want none", up.Name, up.PutHeaders)
	}
}

func xmppTypeName(t *string) string {
	if t == nil {
		return "(none)"
	}
	return strconv.Quote(*t)
}

// xmppHeaderNames lists the names of the slot's headers (their values are secret).
func xmppHeaderNames(h map[string]string) []string {
	names := []string{}
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func xmppParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("URL %q: %v", s, err)
	}
	return u
}

// xmppFile is one file the XMPP client uploads; the slot's file name is the
// base name of Path.
type xmppFile struct {
	Path   string  `json:"path"`
	Type   *string `json:"type"` // the slot request's content-type; nil: none
	Via    string  `json:"via"`  // "helper" (slixmpp's upload_file) or "http" (own slot request and PUT)
	Size   int64   `json:"-"`
	SHA256 string  `json:"-"`
}

// xmppTestFiles writes the files every component gets: empty, one byte, 5 MiB,
// a name outside ASCII, an image type, no type at all.
func xmppTestFiles(t *testing.T) []xmppFile {
	t.Helper()
	typ := func(s string) *string { return &s }
	specs := []struct {
		name string
		size int64
		typ  *string
		via  string
	}{
		{"empty.txt", 0, typ("text/plain"), "helper"},
		{"one byte.bin", 1, nil, "http"},
		{"big.bin", 5 * MiB, typ("application/octet-stream"), "helper"},
		{"Grüße 😀.txt", 3000, typ("text/plain; charset=utf-8"), "http"},
		{"photo.jpg", 96 * KiB, typ("image/jpeg"), "helper"},
		{"no-type.dat", 70 * KiB, nil, "http"},
	}
	dir := t.TempDir()
	var files []xmppFile
	for _, sp := range specs {
		p, sum := randomFile(t, sp.name, sp.size)
		// Give every file its own directory so that the names stay as they are.
		sub := filepath.Join(dir, strconv.Itoa(len(files)))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(sub, sp.name)
		if err := os.Rename(p, dst); err != nil {
			t.Fatal(err)
		}
		files = append(files, xmppFile{Path: dst, Type: sp.typ, Via: sp.via, Size: sp.size, SHA256: sum})
	}
	return files
}

// xmppResult is the JSON line test/xmpp/xep0363_upload.py prints.
type xmppResult struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Service struct {
		JID         string     `json:"jid"`
		Identities  [][]string `json:"identities"`
		Features    []string   `json:"features"`
		MaxFileSize *int64     `json:"max_file_size"`
	} `json:"service"`
	Uploads []xmppUpload `json:"uploads"`
}

type xmppUpload struct {
	Name       string            `json:"name"`
	Size       int64             `json:"size"`
	Type       *string           `json:"type"`
	Via        string            `json:"via"`
	PutURL     string            `json:"put_url"`
	PutHeaders map[string]string `json:"put_headers"`
	GetURL     string            `json:"get_url"`
	Status     int               `json:"status"`
	Body       string            `json:"body"`
}

// runXEP0363Client runs the slixmpp client against Prosody for one upload
// service and returns its result; a run that does not end with ok:true fails
// the test.
func runXEP0363Client(t *testing.T, python string, p *prosody, jid, password, service string, files []xmppFile) xmppResult {
	t.Helper()
	spec, err := json.Marshal(files)
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(t.TempDir(), "files.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{filepath.Join(repoRoot, "test", "xmpp", "xep0363_upload.py"),
		"--jid", jid, "--password", password,
		"--host", "127.0.0.1", "--port", strconv.Itoa(p.Port),
		"--service", service, "--files", specPath, "--timeout", "90"}
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Env = append(childEnv(), "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res xmppResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("xep0363_upload.py for %s: %v; no JSON result (%v)\nstdout:\n%s\nstderr:\n%s",
			service, runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	if !res.OK || runErr != nil {
		t.Fatalf("xep0363_upload.py for %s: exit %v, error %q\nstderr:\n%s", service, runErr, res.Error, stderr.Bytes())
	}
	t.Logf("slixmpp handled %d files through %s in %v", len(res.Uploads), service, time.Since(start).Round(time.Millisecond))
	return res
}

var (
	xmppPythonOnce sync.Once
	xmppPython     string
	xmppPythonErr  error
)

// requireXMPP returns a Python interpreter that has slixmpp and aiohttp, after
// checking that Prosody is installed. A missing tool fails the test, unless
// UPLOADGATE_E2E_SKIP_XMPP=1 asks for a skip.
func requireXMPP(t testing.TB) string {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		if os.Getenv("UPLOADGATE_E2E_SKIP_XMPP") == "1" {
			t.Skipf("%s; skipped because UPLOADGATE_E2E_SKIP_XMPP=1", what)
		}
		t.Fatalf("%s: run `make deps` (scripts/install-test-deps.sh installs prosody, prosody-modules, "+
			"python3-slixmpp and python3-aiohttp), or set UPLOADGATE_E2E_SKIP_XMPP=1 to skip the XMPP tests", what)
	}
	for _, tool := range []string{"prosody", "prosodyctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not found in PATH")
		}
	}
	if _, err := os.Stat(prosodyModule("mod_http_upload_external")); err != nil {
		missing("prosody-modules' mod_http_upload_external is not installed")
	}
	xmppPythonOnce.Do(func() {
		// Debian's python3-slixmpp belongs to the system's python3, which a
		// python3 earlier in PATH (a virtualenv, pyenv) may hide.
		var tried []string
		for _, cand := range []string{"python3", "/usr/bin/python3"} {
			p, err := exec.LookPath(cand)
			if err != nil {
				continue
			}
			out, err := exec.Command(p, "-c", "import slixmpp, aiohttp").CombinedOutput()
			if err == nil {
				xmppPython = p
				return
			}
			tried = append(tried, fmt.Sprintf("%s: %v: %s", p, err, bytes.TrimSpace(out)))
		}
		xmppPythonErr = fmt.Errorf("no python3 with slixmpp and aiohttp (%s)", strings.Join(tried, "; "))
	})
	if xmppPythonErr != nil {
		missing(xmppPythonErr.Error())
	}
	return xmppPython
}

// prosodyModule is where Debian's prosody-modules keeps a community module.
func prosodyModule(name string) string {
	return filepath.Join("/usr/lib/prosody/modules", name, name+".lua")
}

// prosody is one running Prosody.
type prosody struct {
	Port    int
	Config  string
	LogPath string

	cmd    *exec.Cmd
	out    string        // its stdout and stderr
	exited chan struct{} // closed when the process has exited
	err    error         // the result of Wait, valid once exited is closed
}

// startProsody runs Prosody on a free loopback port from a configuration in a
// temporary directory, with the upload components signing for uploadBase with
// secret. It is stopped by its PID when the test ends.
func startProsody(t testing.TB, uploadBase, secret string) *prosody {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := tryStartProsody(t, uploadBase, secret)
		if err == nil {
			return p
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting prosody: %v", lastErr)
	return nil
}

var prosodyConfig = template.Must(template.New("prosody.cfg.lua.tmpl").
	Funcs(template.FuncMap{"lua": prosodyLuaString}).
	ParseFiles(filepath.Join("..", "xmpp", "prosody.cfg.lua.tmpl")))

// prosodyLuaString quotes s as a Lua string literal.
func prosodyLuaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tryStartProsody(t testing.TB, uploadBase, secret string) (*prosody, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			return nil, err
		}
	}
	p := &prosody{
		Port:    port,
		Config:  filepath.Join(dir, "prosody.cfg.lua"),
		LogPath: filepath.Join(dir, "prosody.log"),
		out:     filepath.Join(dir, "prosody.out"),
		exited:  make(chan struct{}),
	}
	var cfg bytes.Buffer
	if err := prosodyConfig.Execute(&cfg, map[string]any{
		"PidFile":    filepath.Join(dir, "prosody.pid"),
		"DataDir":    filepath.Join(dir, "data"),
		"CertsDir":   filepath.Join(dir, "certs"),
		"LogFile":    p.LogPath,
		"C2SPort":    port,
		"Domain":     xmppDomain,
		"UploadBase": uploadBase,
		"Secret":     secret,
		"SizeLimit":  xmppSizeLimit,
	}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.Config, cfg.Bytes(), 0o640); err != nil {
		return nil, err
	}
	out, err := os.Create(p.out)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	p.cmd = exec.Command("prosody", "--config", p.Config, "-F")
	p.cmd.Dir = dir
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })

	ready := fmt.Sprintf("Activated service 'c2s' on [127.0.0.1]:%d", port)
	taken := fmt.Sprintf("Failed to open server port %d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		log := p.log()
		switch {
		case strings.Contains(log, ready):
			return p, nil
		case strings.Contains(log, taken):
			return nil, fmt.Errorf("%w: %d", errPortTaken, port)
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("prosody exited before it listened (%v); output:\n%s\nlog:\n%s", p.err, p.output(), log)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("prosody did not listen on port %d within 20s; output:\n%s\nlog:\n%s", port, p.output(), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// register creates an account with prosodyctl (it writes the account file
// directly; no server connection is needed).
func (p *prosody) register(t testing.TB, user, password string) {
	t.Helper()
	cmd := exec.Command("prosodyctl", "--config", p.Config, "register", user, xmppDomain, password)
	cmd.Dir = filepath.Dir(p.Config)
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register %s %s: %v\n%s", user, xmppDomain, err, out)
	}
	acct := filepath.Join(filepath.Dir(p.Config), "data", xmppDomain, "accounts", user+".dat")
	if _, err := os.Stat(acct); err != nil {
		t.Fatalf("prosodyctl register did not create the account: %v", err)
	}
}

// stop sends SIGTERM to Prosody's PID, waits up to 10 s, then SIGKILL.
func (p *prosody) stop(t testing.TB) {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			t.Errorf("prosody (pid %d) did not exit within 10s of SIGTERM; killed", p.cmd.Process.Pid)
		}
	}
	if t.Failed() {
		t.Logf("prosody output:\n%s\nprosody log (%s):\n%s", p.output(), p.LogPath, p.log())
	}
}

func (p *prosody) log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func (p *prosody) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

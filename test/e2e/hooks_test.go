package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	pb "github.com/tus/tusd/v2/pkg/hooks/grpc/proto"
	"github.com/uploadgate/uploadgate/auth"
	"google.golang.org/grpc"
)

// hookEvent is the part of tusd's hook payload that the tests read; the
// payload is what an unchanged tusd hook server receives.
type hookEvent struct {
	Type  string
	Event struct {
		Upload      handler.FileInfo
		HTTPRequest handler.HTTPRequest
	}
}

// hookLog collects the events a hook receiver got.
type hookLog struct {
	mu     sync.Mutex
	events []hookEvent
}

func (l *hookLog) add(e hookEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// wait returns the first event of type typ whose upload has filename name,
// waiting up to 10 s for it.
func (l *hookLog) wait(t testing.TB, typ, name string) hookEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, e := range l.events {
			if e.Type == typ && e.Event.Upload.MetaData["filename"] == name {
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s hook event for %q within 10s", typ, name)
	return hookEvent{}
}

// waitFor returns the first event of type typ that match accepts, waiting
// up to 10 s for it.
func (l *hookLog) waitFor(t testing.TB, typ string, match func(hookEvent) bool) hookEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, e := range l.events {
			if e.Type == typ && match(e) {
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no matching %s hook event within 10s", typ)
	return hookEvent{}
}

// len is how many events arrived.
func (l *hookLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

func (l *hookLog) count(typ, name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Type == typ && e.Event.Upload.MetaData["filename"] == name {
			n++
		}
	}
	return n
}

// rejectByName is the decision of the test hook servers: a pre-create for a
// file whose name starts with "reject" is refused with 403.
func rejectByName(e hookEvent) map[string]any {
	if e.Type == "pre-create" && strings.HasPrefix(e.Event.Upload.MetaData["filename"], "reject") {
		return map[string]any{"RejectUpload": true, "HTTPResponse": map[string]any{"StatusCode": 403, "Body": "refused by the hook\n"}}
	}
	return map[string]any{}
}

// httpHookServer is a tusd HTTP hook endpoint: it decodes tusd's payload and
// answers with decide's hook response.
func httpHookServer(t testing.TB, decide func(hookEvent) map[string]any) (*httptest.Server, *hookLog) {
	t.Helper()
	l := &hookLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e hookEvent
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l.add(e)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(decide(e))
	}))
	t.Cleanup(srv.Close)
	return srv, l
}

// storedUploads is how many files the disk store holds.
func (s *server) storedUploads(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "uploads"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// checkGatewayMeta requires the gateway's metadata keys of a slot's upload.
func checkGatewayMeta(t testing.TB, e hookEvent, sl slot, proto auth.Protocol, sub string) {
	t.Helper()
	m := e.Event.Upload.MetaData
	if m["uploadgate_protocol"] != string(proto) || m["uploadgate_get_url"] != sl.GetURL || m["uploadgate_sub"] != sub {
		t.Errorf("%s event: metadata %v; want uploadgate_protocol %q, uploadgate_get_url %q, uploadgate_sub %q", e.Type, m, proto, sl.GetURL, sub)
	}
	if !strings.HasSuffix(sl.GetURL, "/upload/"+m["uploadgate_slot_path"]) {
		t.Errorf("%s event: uploadgate_slot_path %q is not the slot path of %s", e.Type, m["uploadgate_slot_path"], sl.GetURL)
	}
	if strings.Contains(e.Event.HTTPRequest.URI, "v2=") || strings.Contains(e.Event.HTTPRequest.URI, "v3=") ||
		e.Event.HTTPRequest.Header.Get("Authorization") != "" {
		t.Errorf("%s event: the slot's signature reached the hook: %q %v", e.Type, e.Event.HTTPRequest.URI, e.Event.HTTPRequest.Header)
	}
}

// tusCreate creates an upload of body at a slot URL with tus (creation with
// upload), sending extra metadata pairs.
func tusCreate(t testing.TB, sl slot, name string, body []byte, meta ...string) sessAnswer {
	t.Helper()
	return tusCreatePart(t, sl, name, int64(len(body)), body, meta...)
}

// tusCreatePart creates an upload of length bytes, the first of them body.
func tusCreatePart(t testing.TB, sl slot, name string, length int64, body []byte, meta ...string) sessAnswer {
	t.Helper()
	md := map[string]string{"filename": name}
	for i := 0; i+1 < len(meta); i += 2 {
		md[meta[i]] = meta[i+1]
	}
	h := sessHeader("Tus-Resumable", "1.0.0", "Upload-Length", strconv.FormatInt(length, 10),
		"Upload-Metadata", handler.SerializeMetadataHeader(md), "Authorization", sl.Authorization,
		"Content-Type", "application/offset+octet-stream")
	return sessSend(t, hosClient(), http.MethodPost, sl.PutURL, h, body)
}

// TestHooksHTTP: tusd's HTTP hooks fire for the PUT door, tus and the IETF
// draft; pre-create refuses with a clean 4xx and nothing stored; the payload
// carries the gateway's metadata keys; the metrics count the calls.
func TestHooksHTTP(t *testing.T) {
	hs, log := httpHookServer(t, rejectByName)
	s := startServer(t, "--hooks-http", hs.URL, "--hooks-enabled-events", "pre-create,post-create,post-receive,post-finish,pre-terminate,post-terminate")
	body := bytes.Repeat([]byte("hooks "), 200)

	t.Run("put", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "put.txt", int64(len(body)))
		if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
			t.Fatalf("PUT: %v; want 201", a)
		}
		pre := log.wait(t, "pre-create", "put.txt")
		fin := log.wait(t, "post-finish", "put.txt")
		log.wait(t, "post-create", "put.txt")
		checkGatewayMeta(t, pre, sl, auth.ProtoV2, "")
		checkGatewayMeta(t, fin, sl, auth.ProtoV2, "")
		if fin.Event.Upload.ID == "" || fin.Event.Upload.ID != pre.Event.Upload.ID || fin.Event.Upload.Offset != int64(len(body)) {
			t.Errorf("post-finish upload %+v; want the pre-create's ID %q, complete", fin.Event.Upload, pre.Event.Upload.ID)
		}
		if n := log.count("post-finish", "put.txt"); n != 1 {
			t.Errorf("%d post-finish events; want 1", n)
		}
	})
	t.Run("put refused", func(t *testing.T) {
		before := s.storedUploads(t)
		sl := hosSlot(t, s, auth.ProtoV2, "reject.txt", int64(len(body)))
		a := hosPut(t, sl, body)
		if a.Status != http.StatusForbidden || !strings.Contains(a.Body, "refused by the hook") {
			t.Fatalf("PUT refused by the hook: %v; want 403 with the hook's body", a)
		}
		if n := s.storedUploads(t); n != before {
			t.Errorf("the store holds %d files after the refusal; want %d", n, before)
		}
		hosMustNotServe(t, "refused PUT", sl.GetURL)
	})
	t.Run("jwt sub", func(t *testing.T) {
		sl := jwtSlot(t, s, "alice@example.org", "jwt.txt", int64(len(body)))
		if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
			t.Fatalf("PUT: %v; want 201", a)
		}
		checkGatewayMeta(t, log.wait(t, "post-finish", "jwt.txt"), sl, auth.ProtoJWT, "alice@example.org")
	})
	t.Run("tus", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "tus.txt", int64(len(body)))
		// A client cannot claim the gateway's keys.
		a := tusCreate(t, sl, "tus.txt", body, "uploadgate_sub", "mallory@example.org", "note", "kept")
		if a.Status != http.StatusCreated {
			t.Fatalf("tus creation: %v; want 201", a)
		}
		fin := log.wait(t, "post-finish", "tus.txt")
		checkGatewayMeta(t, fin, sl, auth.ProtoV2, "")
		if fin.Event.Upload.MetaData["note"] != "kept" {
			t.Errorf("post-finish metadata %v; want the client's own key note", fin.Event.Upload.MetaData)
		}
	})
	t.Run("tus refused", func(t *testing.T) {
		before := s.storedUploads(t)
		sl := hosSlot(t, s, auth.ProtoV2, "reject-tus.txt", int64(len(body)))
		if a := tusCreate(t, sl, "reject-tus.txt", body); a.Status != http.StatusForbidden {
			t.Fatalf("tus creation refused by the hook: %v; want 403", a)
		}
		if n := s.storedUploads(t); n != before {
			t.Errorf("the store holds %d files after the refusal; want %d", n, before)
		}
	})
	t.Run("ietf draft", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "draft.txt", int64(len(body)))
		a := hosPut(t, sl, body, "Upload-Draft-Interop-Version", "6", "Upload-Complete", "?1")
		if a.Status/100 != 2 {
			t.Fatalf("draft PUT: %v; want 2xx", a)
		}
		checkGatewayMeta(t, log.wait(t, "post-finish", "draft.txt"), sl, auth.ProtoV2, "")
	})
	t.Run("terminate", func(t *testing.T) {
		sl := hosSlot(t, s, auth.ProtoV2, "gone.txt", int64(len(body)))
		a := tusCreatePart(t, sl, "gone.txt", int64(len(body)), body[:10])
		if a.Status != http.StatusCreated {
			t.Fatalf("tus creation: %v", a)
		}
		d := sessSend(t, hosClient(), http.MethodDelete, a.Header.Get("Location"), sessHeader("Tus-Resumable", "1.0.0"), nil)
		if d.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %v; want 204", d)
		}
		log.wait(t, "pre-terminate", "gone.txt")
		log.wait(t, "post-terminate", "gone.txt")
	})
	t.Run("metrics", func(t *testing.T) {
		sc := opsGetMetrics(t, s.URL+"/metrics")
		if v, _ := sc.sum("uploadgate_hook_calls_total", "event=pre-create", "result=rejected"); v < 2 {
			t.Errorf("uploadgate_hook_calls_total{event=pre-create,result=rejected} = %v; want >= 2", v)
		}
		if v, _ := sc.sum("uploadgate_hook_calls_total", "event=post-finish", "result=ok"); v < 4 {
			t.Errorf("uploadgate_hook_calls_total{event=post-finish,result=ok} = %v; want >= 4", v)
		}
		if !sc.has("uploadgate_hook_duration_seconds") {
			t.Error("no uploadgate_hook_duration_seconds")
		}
	})
	if !strings.Contains(s.log(), `hooks="pre-create=rejected"`) {
		t.Error("the request log does not name the refusing hook call")
	}
}

// jwtSlot mints a JWT slot (Prosody mod_http_file_share) naming sub.
func jwtSlot(t testing.TB, s *server, sub, name string, size int64) slot {
	t.Helper()
	ss, err := auth.SignSlot(s.Secret, auth.SignRequest{BaseURL: s.URL + "/upload/", Name: name, Size: size, Protocol: auth.ProtoJWT, Subject: sub})
	if err != nil {
		t.Fatal(err)
	}
	return slot{PutURL: ss.PutURL, GetURL: ss.GetURL, Authorization: ss.Authorization}
}

// TestHooksHTTPFailure: a pre-create hook that cannot be reached answers the
// client with a retryable 503, and nothing is stored.
func TestHooksHTTPFailure(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--hooks-http", "http://127.0.0.1:"+strconv.Itoa(port)+"/hook", "--hooks-http-retry", "1", "--hooks-http-backoff", "10ms")
	body := []byte("no hook, no upload")
	sl := hosSlot(t, s, auth.ProtoV2, "down.txt", int64(len(body)))
	a := hosPut(t, sl, body)
	if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
		t.Fatalf("PUT with the hook down: %v %v; want 503 with Retry-After", a, a.Header)
	}
	if n := s.storedUploads(t); n != 0 {
		t.Errorf("the store holds %d files; want none", n)
	}
	sc := opsGetMetrics(t, s.URL+"/metrics")
	if v, _ := sc.sum("uploadgate_hook_calls_total", "event=pre-create", "result=failed"); v != 1 {
		t.Errorf("uploadgate_hook_calls_total{event=pre-create,result=failed} = %v; want 1", v)
	}
}

// quotaHook is the recipe of docs/hooks.md: a per-JID daily quota in bytes,
// enforced at pre-create from the uploader (uploadgate_sub) and the size.
func quotaHook(limit int64) func(hookEvent) map[string]any {
	var mu sync.Mutex
	used := map[string]int64{} // "day sub" → bytes
	return func(e hookEvent) map[string]any {
		if e.Type != "pre-create" {
			return map[string]any{}
		}
		sub := e.Event.Upload.MetaData["uploadgate_sub"]
		if sub == "" {
			return map[string]any{"RejectUpload": true, "HTTPResponse": map[string]any{"StatusCode": 403, "Body": "uploads need a JID\n"}}
		}
		key := time.Now().UTC().Format("2006-01-02") + " " + sub
		mu.Lock()
		defer mu.Unlock()
		if used[key]+e.Event.Upload.Size > limit {
			return map[string]any{"RejectUpload": true, "HTTPResponse": map[string]any{"StatusCode": 413, "Body": "daily quota exceeded\n"}}
		}
		used[key] += e.Event.Upload.Size
		return map[string]any{}
	}
}

// TestHooksQuotaRecipe: the quota recipe refuses the n+1-th upload of a JID.
func TestHooksQuotaRecipe(t *testing.T) {
	hs, _ := httpHookServer(t, quotaHook(3000))
	s := startServer(t, "--hooks-http", hs.URL, "--hooks-enabled-events", "pre-create")
	body := bytes.Repeat([]byte("q"), 1000)
	for i := 1; i <= 3; i++ {
		sl := jwtSlot(t, s, "alice@example.org", fmt.Sprintf("a%d.bin", i), int64(len(body)))
		if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
			t.Fatalf("upload %d of alice: %v; want 201", i, a)
		}
	}
	sl := jwtSlot(t, s, "alice@example.org", "a4.bin", int64(len(body)))
	if a := hosPut(t, sl, body); a.Status != http.StatusRequestEntityTooLarge || !strings.Contains(a.Body, "quota") {
		t.Fatalf("upload 4 of alice: %v; want 413 daily quota exceeded", a)
	}
	hosMustNotServe(t, "upload over quota", sl.GetURL)
	if a := hosPut(t, jwtSlot(t, s, "bob@example.org", "b1.bin", int64(len(body))), body); a.Status != http.StatusCreated {
		t.Fatalf("upload of bob: %v; want 201", a)
	}
}

// TestHooksFile: tusd's file hooks, executables in --hooks-dir.
func TestHooksFile(t *testing.T) {
	dir := t.TempDir()
	out := t.TempDir()
	script := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script("pre-create", `in=$(cat)
case "$in" in
*'"filename":"reject'*) echo '{"RejectUpload":true,"HTTPResponse":{"StatusCode":403,"Body":"refused by the file hook"}}' ;;
esac
`)
	script("post-finish", "cat > "+shellQuote(out)+"/\"$TUS_ID\".json\n")
	s := startServer(t, "--hooks-dir", dir)
	body := []byte("file hooks")
	sl := hosSlot(t, s, auth.ProtoV2, "ok.txt", int64(len(body)))
	if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
		t.Fatalf("PUT: %v; want 201", a)
	}
	var e hookEvent
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(out, "*.json"))
		if len(files) == 1 {
			b, _ := os.ReadFile(files[0])
			if json.Unmarshal(b, &e) == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the post-finish script wrote %v within 10s; want one event", files)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.Type != "post-finish" {
		t.Errorf("event type %q; want post-finish", e.Type)
	}
	checkGatewayMeta(t, e, sl, auth.ProtoV2, "")
	rl := hosSlot(t, s, auth.ProtoV2, "reject.txt", int64(len(body)))
	if a := hosPut(t, rl, body); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "file hook") {
		t.Fatalf("PUT refused by the file hook: %v; want 403", a)
	}
	hosMustNotServe(t, "refused PUT", rl.GetURL)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// grpcHook is a tusd gRPC hook service built from tusd's hook.proto.
type grpcHook struct {
	pb.UnimplementedHookHandlerServer
	log *hookLog
}

func (g *grpcHook) InvokeHook(_ context.Context, req *pb.HookRequest) (*pb.HookResponse, error) {
	var e hookEvent
	e.Type = req.Type
	e.Event.Upload = handler.FileInfo{ID: req.Event.Upload.Id, Size: req.Event.Upload.Size, Offset: req.Event.Upload.Offset, MetaData: req.Event.Upload.MetaData}
	e.Event.HTTPRequest = handler.HTTPRequest{Method: req.Event.HttpRequest.Method, URI: req.Event.HttpRequest.Uri, Header: http.Header{}}
	for k, v := range req.Event.HttpRequest.Header {
		e.Event.HTTPRequest.Header.Set(k, v)
	}
	g.log.add(e)
	if rejectByName(e)["RejectUpload"] == true {
		return &pb.HookResponse{RejectUpload: true, HttpResponse: &pb.HTTPResponse{StatusCode: 403, Body: "refused by the gRPC hook"}}, nil
	}
	return &pb.HookResponse{}, nil
}

// TestHooksGRPC: tusd's gRPC hooks, served by a hook service of the test.
func TestHooksGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &hookLog{}
	gs := grpc.NewServer()
	pb.RegisterHookHandlerServer(gs, &grpcHook{log: l})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	s := startServer(t, "--hooks-grpc", ln.Addr().String())
	body := []byte("grpc hooks")
	sl := hosSlot(t, s, auth.ProtoV3, "g.txt", int64(len(body)))
	if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
		t.Fatalf("PUT: %v; want 201", a)
	}
	checkGatewayMeta(t, l.wait(t, "post-finish", "g.txt"), sl, auth.ProtoV3, "")
	rl := hosSlot(t, s, auth.ProtoV2, "reject.txt", int64(len(body)))
	if a := hosPut(t, rl, body); a.Status != http.StatusForbidden || !strings.Contains(a.Body, "gRPC hook") {
		t.Fatalf("PUT refused by the gRPC hook: %v; want 403", a)
	}
	hosMustNotServe(t, "refused PUT", rl.GetURL)
}

// TestHooksPostFinishRedelivered: a post-finish event whose delivery fails is
// delivered again (at least once).
func TestHooksPostFinishRedelivered(t *testing.T) {
	var mu sync.Mutex
	fails := 0
	l := &hookLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e hookEvent
		_ = json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		defer mu.Unlock()
		if e.Type == "post-finish" && fails < 2 {
			// Refused twice: a 4xx is not retried by tusd's HTTP client,
			// only by the gateway's redelivery.
			fails++
			http.Error(w, "not now", http.StatusConflict)
			return
		}
		l.add(e)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	s := startServer(t, "--hooks-http", srv.URL, "--hooks-http-retry", "3", "--hooks-http-backoff", "50ms")
	body := []byte("again")
	sl := hosSlot(t, s, auth.ProtoV2, "again.txt", int64(len(body)))
	if a := hosPut(t, sl, body); a.Status != http.StatusCreated {
		t.Fatalf("PUT: %v; want 201", a)
	}
	l.wait(t, "post-finish", "again.txt")
	sc := opsGetMetrics(t, s.URL+"/metrics")
	if v, _ := sc.sum("uploadgate_hook_calls_total", "event=post-finish", "result=failed"); v != 2 {
		t.Errorf("uploadgate_hook_calls_total{event=post-finish,result=failed} = %v; want 2", v)
	}
}

// TestHooksClamAV: the virus-scan recipe of docs/hooks.md, clamd (Debian's
// clamav-daemon) as a pre-finish file hook, with a signature database of
// the test's own: the file that matches it is refused and removed.
func TestHooksClamAV(t *testing.T) {
	clamd, err1 := exec.LookPath("clamd")
	if err1 != nil {
		clamd = "/usr/sbin/clamd"
	}
	_, err2 := exec.LookPath("clamdscan")
	if _, err := os.Stat(clamd); err != nil || err2 != nil {
		if os.Getenv("UPLOADGATE_E2E_SKIP_CLAMAV") == "1" {
			t.Skip("clamd or clamdscan not found; skipped because UPLOADGATE_E2E_SKIP_CLAMAV=1")
		}
		t.Fatal("clamd and clamdscan (Debian's clamav-daemon) not found: run `make deps` (scripts/install-test-deps.sh), or set UPLOADGATE_E2E_SKIP_CLAMAV=1")
	}
	work := t.TempDir()
	db := filepath.Join(work, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := []byte("this file stands for malware in uploadgate's tests\n")
	sum := md5.Sum(bad)
	if err := os.WriteFile(filepath.Join(db, "test.hdb"), []byte(fmt.Sprintf("%s:%d:Uploadgate.Test.Malware\n", hex.EncodeToString(sum[:]), len(bad))), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(work, "clamd.sock")
	conf := filepath.Join(work, "clamd.conf")
	if err := os.WriteFile(conf, []byte("Foreground yes\nLocalSocket "+sock+"\nDatabaseDirectory "+db+"\nLogFile "+filepath.Join(work, "clamd.log")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(clamd, "--config-file="+conf)
	cmd.Env = childEnv()
	var clamOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &clamOut, &clamOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamd did not listen on %s within 60s:\n%s", sock, clamOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	hooksDir := t.TempDir()
	dataDir := filepath.Join(t.TempDir(), "data")
	// The recipe's script, with the test's clamd configuration.
	scan := `#!/bin/sh
cat > /dev/null
clamdscan --config-file=` + shellQuote(conf) + ` --no-summary --stream ` + shellQuote(dataDir) + `/uploads/"$TUS_ID" >&2
case $? in
0) exit 0 ;;
1) echo '{"HTTPResponse":{"StatusCode":422,"Body":"the file contains malware"}}' ;;
*) exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(hooksDir, "pre-finish"), []byte(scan), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--data-dir", dataDir, "--hooks-dir", hooksDir, "--hooks-enabled-events", "pre-finish")
	s.DataDir = dataDir

	good := []byte("a harmless file\n")
	gl := hosSlot(t, s, auth.ProtoV2, "good.txt", int64(len(good)))
	if a := hosPut(t, gl, good); a.Status != http.StatusCreated {
		t.Fatalf("PUT of a clean file: %v; want 201", a)
	}
	hosMustServe(t, "clean file", gl.GetURL, good)

	bl := hosSlot(t, s, auth.ProtoV2, "bad.txt", int64(len(bad)))
	if a := hosPut(t, bl, bad); a.Status != http.StatusUnprocessableEntity || !strings.Contains(a.Body, "malware") {
		t.Fatalf("PUT of the test malware: %v; want 422", a)
	}
	hosMustNotServe(t, "refused file", bl.GetURL)
	// A retry is scanned again: never 201 for the same bytes.
	if a := hosPut(t, bl, bad); a.Status != http.StatusUnprocessableEntity {
		t.Fatalf("retried PUT of the test malware: %v; want 422", a)
	}
	// tus: the PATCH that completes the file gets the refusal.
	tl := hosSlot(t, s, auth.ProtoV2, "bad-tus.txt", int64(len(bad)))
	if a := tusCreate(t, tl, "bad-tus.txt", bad); a.Status != http.StatusUnprocessableEntity {
		t.Fatalf("tus upload of the test malware: %v; want 422", a)
	}
	hosMustNotServe(t, "refused tus file", tl.GetURL)
}

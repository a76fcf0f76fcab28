package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const composeFile = "deploy/docker-compose.yml"

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	ReadOnly    bool              `yaml:"read_only"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeProject {
	t.Helper()
	var p composeProject
	if err := yaml.Unmarshal([]byte(readFile(t, composeFile)), &p); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	for _, name := range []string{"uploadgate-1", "uploadgate-2", "lb", "redis", "s3", "prosody", "init"} {
		if _, ok := p.Services[name]; !ok {
			t.Fatalf("%s: no service %s", composeFile, name)
		}
	}
	return p
}

var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${VAR:-default} by its default, as compose does with VAR unset.
func expand(t *testing.T, s string) string {
	t.Helper()
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		sm := interpolation.FindStringSubmatch(m)
		if sm[2] == "" {
			t.Errorf("%s: %s has no default; the stack must start without an .env file", composeFile, m)
		}
		return sm[3]
	})
}

// mount is one volume of a service: a named volume or a file of deploy/.
type mount struct{ source, target string }

func mounts(t *testing.T, svc composeService) []mount {
	t.Helper()
	var out []mount
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Fatalf("%s: volume %q: want source:target[:mode]", composeFile, v)
		}
		out = append(out, mount{parts[0], parts[1]})
	}
	return out
}

// hostPaths maps a service's container paths to directories of a test:
// named volumes under volDir, bind mounts to the files of deploy/.
type hostPaths struct {
	mounts []mount
	volDir string
}

func (h hostPaths) path(t *testing.T, p string) string {
	t.Helper()
	best := mount{}
	for _, m := range h.mounts {
		if (p == m.target || strings.HasPrefix(p, m.target+"/")) && len(m.target) > len(best.target) {
			best = m
		}
	}
	if best.target == "" {
		t.Fatalf("%s: %s is on no volume of the service", composeFile, p)
	}
	src := filepath.Join(h.volDir, best.source)
	if strings.HasPrefix(best.source, ".") {
		src = filepath.Join(filepath.Dir(path(composeFile)), best.source)
	}
	return src + strings.TrimPrefix(p, best.target)
}

// gatewayFlags returns the flags of a gateway service's command.
func gatewayFlags(t *testing.T, name string, svc composeService) map[string]string {
	t.Helper()
	return checkFlagArgs(t, composeFile+" "+name+" command", svc.Command)
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	text := readFile(t, composeFile)
	checkEnvNames(t, composeFile, text)
	img := finalImage(t)
	dataDir := img.Env["UPLOADGATE_DATA_DIR"]
	_, listenPort, _ := net.SplitHostPort(img.Env["UPLOADGATE_LISTEN"])

	g1, g2 := p.Services["uploadgate-1"], p.Services["uploadgate-2"]
	f1 := gatewayFlags(t, "uploadgate-1", g1)
	gatewayFlags(t, "uploadgate-2", g2)
	if strings.Join(g1.Command, " ") != strings.Join(g2.Command, " ") {
		t.Errorf("the two gateways run with different flags")
	}
	for _, g := range []composeService{g1, g2} {
		if g.Build == nil || filepath.Clean(filepath.Join("deploy", g.Build.Context, g.Build.Dockerfile)) != "Dockerfile" {
			t.Errorf("a gateway is not built from the repository's Dockerfile: %+v", g.Build)
		}
		if !g.ReadOnly {
			t.Errorf("a gateway runs with a writable root file system")
		}
		for k := range g.Environment {
			if strings.HasPrefix(k, "UPLOADGATE_") {
				continue // checked by checkEnvNames
			}
			if !strings.HasPrefix(k, "AWS_") {
				t.Errorf("a gateway sets %s, which it does not read", k)
			}
		}
	}
	if f1["storage"] != "s3" {
		t.Errorf("gateways: --storage %q, want s3", f1["storage"])
	}
	for flag, svc := range map[string]string{"redis-url": "redis", "s3-endpoint": "s3"} {
		u, err := url.Parse(f1[flag])
		if err != nil || u.Hostname() != svc {
			t.Errorf("gateways: --%s %q does not point at the service %s", flag, f1[flag], svc)
		}
	}
	// The same keys: --secret-file and --id-key-file on a volume that both
	// mount, which the init service fills.
	secretFile, idKeyFile := f1["secret-file"], f1["id-key-file"]
	shared := ""
	for _, m1 := range mounts(t, g1) {
		for _, m2 := range mounts(t, g2) {
			if m1 == m2 && strings.HasPrefix(secretFile, m1.target+"/") {
				shared = m1.source
			}
		}
	}
	if secretFile == "" || shared == "" {
		t.Errorf("gateways: --secret-file %q is not on a volume that both mount", secretFile)
	}
	if target := mountTarget(t, g1, shared); idKeyFile == "" || !strings.HasPrefix(idKeyFile, target+"/") {
		t.Errorf("gateways: --id-key-file %q is not on the keys volume %s (at %s) with --secret-file", idKeyFile, shared, target)
	}
	data := map[string]string{}
	for name, g := range map[string]composeService{"uploadgate-1": g1, "uploadgate-2": g2} {
		for _, m := range mounts(t, g) {
			if m.target == dataDir {
				data[name] = m.source
			}
		}
	}
	if data["uploadgate-1"] == "" || data["uploadgate-1"] == data["uploadgate-2"] {
		t.Errorf("gateways: want a data volume of its own at %s for each, got %v", dataDir, data)
	}
	initSvc := p.Services["init"]
	initMounts := map[string]string{}
	for _, m := range mounts(t, initSvc) {
		initMounts[m.source] = m.target
	}
	// init.sh writes $KEYS_DIR/slot-secret and $KEYS_DIR/id.key: KEYS_DIR is
	// where init mounts the volume that holds the gateways' key files.
	if initSvc.Environment["KEYS_DIR"] == "" || initSvc.Environment["KEYS_DIR"] != initMounts[shared] ||
		secretFile != mountTarget(t, g1, shared)+"/slot-secret" || idKeyFile != mountTarget(t, g1, shared)+"/id.key" {
		t.Errorf("init: KEYS_DIR %q, keys volume %s at %q in init; the gateways' --secret-file %s and --id-key-file %s are not the slot-secret and id.key it writes",
			initSvc.Environment["KEYS_DIR"], shared, initMounts[shared], secretFile, idKeyFile)
	}
	if initSvc.Environment["OWNER"] != img.User {
		t.Errorf("init: OWNER %q, want the image's user %q", initSvc.Environment["OWNER"], img.User)
	}
	for _, g := range []string{"uploadgate-1", "uploadgate-2"} {
		if p.Services[g].DependsOn["init"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for init to complete", g)
		}
	}

	// S3: the gateways' credentials are the server's, the bucket exists.
	s3 := p.Services["s3"]
	for gw, srv := range map[string]string{"AWS_ACCESS_KEY_ID": "ROOT_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "ROOT_SECRET_ACCESS_KEY"} {
		if a, b := expand(t, g1.Environment[gw]), expand(t, s3.Environment[srv]); a == "" || a != b {
			t.Errorf("gateways' %s %q differs from the S3 server's %s %q", gw, a, srv, b)
		}
	}
	root := s3.Command[len(s3.Command)-1]
	s3vol := ""
	for _, m := range mounts(t, s3) {
		if m.target == root {
			s3vol = m.source
		}
	}
	if want := filepath.Join(initMounts[s3vol], f1["s3-bucket"]); s3vol == "" || initSvc.Environment["BUCKET_DIR"] != want {
		t.Errorf("init: BUCKET_DIR %q, want %q (the bucket --s3-bucket %s in the S3 server's root %s)", initSvc.Environment["BUCKET_DIR"], want, f1["s3-bucket"], root)
	}

	// Redis: AOF every second, no eviction, compact session hashes.
	redis := strings.Join(p.Services["redis"].Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--hash-max-listpack-value 256"} {
		if !strings.Contains(redis, want) {
			t.Errorf("redis: command %q lacks %s", redis, want)
		}
	}

	// The load balancer: both gateways, readiness, streaming, no stickiness.
	lb := p.Services["lb"]
	caddyfile := ""
	for _, m := range mounts(t, lb) {
		if strings.HasSuffix(m.target, "Caddyfile") {
			caddyfile = readFile(t, filepath.ToSlash(filepath.Join("deploy", m.source)))
		}
	}
	for _, want := range []string{"uploadgate-1:" + listenPort, "uploadgate-2:" + listenPort, "health_uri /readyz", "flush_interval -1"} {
		if !strings.Contains(caddyfile, want) {
			t.Errorf("Caddyfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`lb_policy\s+(ip_hash|client_ip_hash|cookie|header|uri_hash)`).MatchString(caddyfile) {
		t.Errorf("Caddyfile: sticky load balancing; any gateway can serve any request")
	}
	pub, err := url.Parse(f1["public-url"])
	if err != nil || pub.Port() == "" || len(lb.Ports) != 1 || !strings.HasSuffix(lb.Ports[0], ":"+pub.Port()+":"+listenPort) {
		t.Errorf("lb publishes %v; want --public-url's port %q to the Caddyfile's :%s", lb.Ports, f1["public-url"], listenPort)
	}

	// Prosody signs slots for the gateways' public URL with their secret.
	pros := p.Services["prosody"]
	cfgPath := ""
	for _, m := range mounts(t, pros) {
		if m.target == "/etc/prosody/prosody.cfg.lua" {
			cfgPath = filepath.ToSlash(filepath.Join("deploy", m.source))
		}
		if m.source == shared && m.target != mountTarget(t, g1, shared) {
			t.Errorf("prosody mounts the keys volume at %s, the gateways at %s", m.target, mountTarget(t, g1, shared))
		}
	}
	if cfgPath == "" {
		t.Fatalf("prosody: no configuration mounted at /etc/prosody/prosody.cfg.lua")
	}
	cfg := readFile(t, cfgPath)
	uploadBase := "/upload/"
	if v, ok := f1["upload-base"]; ok {
		uploadBase = v
	}
	wantBase := strings.TrimRight(f1["public-url"], "/") + uploadBase
	for _, want := range []string{
		`http_file_share_base_url = "` + wantBase + `"`,
		`http_file_share_secret = FileLine("` + secretFile + `")`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("%s lacks %s", cfgPath, want)
		}
	}
	if luac, err := exec.LookPath("luac5.4"); err == nil {
		if out, err := exec.Command(luac, "-p", "-o", os.DevNull, path(cfgPath)).CombinedOutput(); err != nil {
			t.Errorf("%s is not valid Lua: %v\n%s", cfgPath, err, out)
		}
	} else {
		t.Logf("luac5.4 not installed (it comes with prosody): Lua syntax of %s not checked", cfgPath)
	}
}

// mountTarget is where a service mounts a named volume.
func mountTarget(t *testing.T, svc composeService, vol string) string {
	t.Helper()
	for _, m := range mounts(t, svc) {
		if m.source == vol {
			return m.target
		}
	}
	return ""
}

// runInit runs compose/init.sh as the init service does, on directories of
// the test, and returns its output.
func runInit(t *testing.T, p composeProject, volDir string) (string, error) {
	t.Helper()
	initSvc := p.Services["init"]
	hp := hostPaths{mounts(t, initSvc), volDir}
	if len(initSvc.Command) < 2 || initSvc.Command[0] != "sh" {
		t.Fatalf("init: command %q, want sh SCRIPT DIR...", initSvc.Command)
	}
	args := []string{hp.path(t, initSvc.Command[1])}
	for _, a := range initSvc.Command[2:] {
		args = append(args, hp.path(t, a))
	}
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("OWNER=%d:%d", os.Getuid(), os.Getgid()))
	for k, v := range initSvc.Environment {
		if k == "OWNER" {
			continue
		}
		if strings.HasPrefix(v, "/") {
			v = hp.path(t, v)
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestComposeInitScript(t *testing.T) {
	p := loadCompose(t)
	vol := t.TempDir()
	if out, err := runInit(t, p, vol); err != nil {
		t.Fatalf("init.sh: %v\n%s", err, out)
	}
	keys := filepath.Join(vol, "keys")
	idKey, err := os.ReadFile(filepath.Join(keys, "id.key"))
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(idKey) {
		t.Fatalf("keys/id.key: %q, %v; want 64 hex digits", idKey, err)
	}
	secret, _ := os.ReadFile(filepath.Join(keys, "slot-secret"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(secret) || bytes.Equal(secret, idKey) {
		t.Fatalf("keys/slot-secret: %q; want 64 hex digits of its own", secret)
	}
	// id.key is the gateways' (OWNER, the current user here), readable by
	// them only; the slot secret is readable by Prosody too.
	checkMode := func(name string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(keys, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("keys/%s: %v, %v; want mode %04o", name, fi, err, want)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			t.Errorf("keys/%s belongs to uid %d, want OWNER's %d", name, st.Uid, os.Getuid())
		}
	}
	checkMode("id.key", 0o400)
	checkMode("slot-secret", 0o444)
	if fi, err := os.Stat(filepath.Join(vol, "s3-data", "uploads")); err != nil || !fi.IsDir() {
		t.Errorf("the bucket directory was not created: %v", err)
	}
	// The gateways read the key file as it is.
	g := startGateway(t, binary, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(vol, "data"),
		"--secret-file", filepath.Join(keys, "slot-secret"), "--id-key-file", filepath.Join(keys, "id.key")}, nil)
	if err := g.stop(t); err != nil {
		t.Errorf("uploadgate with the keys of init.sh: exit %v after SIGTERM, want 0", err)
	}
	// Again: nothing changes.
	if out, err := runInit(t, p, vol); err != nil {
		t.Fatalf("init.sh, second run: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(keys, "id.key")); !bytes.Equal(b, idKey) {
		t.Errorf("the second run changed keys/id.key")
	}
	if b, _ := os.ReadFile(filepath.Join(keys, "slot-secret")); !bytes.Equal(b, secret) {
		t.Errorf("the second run changed keys/slot-secret")
	}
	checkMode("id.key", 0o400)
}

// TestComposeStack runs the compose stack's Redis, S3 server and both
// gateways as local processes with the commands, environment and keys of
// docker-compose.yml (service names and ports replaced by loopback ports,
// volumes by directories): an upload cut off at one gateway is resumed at the
// other and downloaded from the first.
func TestComposeStack(t *testing.T) {
	p := loadCompose(t)
	redisServer := needTool(t, "redis-server", "UPLOADGATE_SKIP_REDIS")
	versitygw := needTool(t, "versitygw", "UPLOADGATE_SKIP_S3")
	vol := t.TempDir()
	if out, err := runInit(t, p, vol); err != nil {
		t.Fatalf("init.sh: %v\n%s", err, out)
	}
	addrs := map[string]string{} // "service:port" in the stack → loopback address here

	// S3: versitygw with the stack's command and credentials.
	s3 := p.Services["s3"]
	s3Port := freePort(t)
	var s3Args []string
	hp := hostPaths{mounts(t, s3), vol}
	for _, a := range s3.Command {
		switch {
		case regexp.MustCompile(`^(0\.0\.0\.0)?:\d+$`).MatchString(a):
			_, port, _ := net.SplitHostPort(a)
			addrs["s3:"+port] = "127.0.0.1:" + s3Port
			a = "127.0.0.1:" + s3Port
		case strings.HasPrefix(a, "/"):
			a = hp.path(t, a)
		}
		s3Args = append(s3Args, a)
	}
	var s3Env []string
	for k, v := range s3.Environment {
		s3Env = append(s3Env, k+"="+expand(t, v))
	}
	startProcess(t, versitygw, s3Args, s3Env, "127.0.0.1:"+s3Port)

	// Redis with the stack's persistence and eviction settings.
	redis := p.Services["redis"]
	redisPort := freePort(t)
	addrs["redis:6379"] = "127.0.0.1:" + redisPort
	redisArgs := append(append([]string{}, redis.Command[1:]...), "--port", redisPort, "--bind", "127.0.0.1",
		"--dir", t.TempDir(), "--daemonize", "no", "--save", "")
	startProcess(t, redisServer, redisArgs, nil, "127.0.0.1:"+redisPort)

	img := finalImage(t)
	var gws []*gateway
	for _, name := range []string{"uploadgate-1", "uploadgate-2"} {
		svc := p.Services[name]
		hp := hostPaths{mounts(t, svc), vol}
		args := []string{"serve"}
		for _, a := range svc.Command {
			flag, val, _ := strings.Cut(a, "=")
			switch {
			case flag == "--metrics-listen":
				val = "127.0.0.1:" + freePort(t)
			case strings.HasPrefix(val, "/"):
				val = hp.path(t, val)
			}
			for from, to := range addrs {
				val = strings.ReplaceAll(val, "//"+from, "//"+to)
			}
			if val != "" {
				a = flag + "=" + val
			}
			args = append(args, a)
		}
		args = append(args, "--listen=127.0.0.1:0")
		env := []string{"UPLOADGATE_DATA_DIR=" + hp.path(t, img.Env["UPLOADGATE_DATA_DIR"]),
			"AWS_CONFIG_FILE=" + filepath.Join(vol, "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(vol, "no-aws-credentials")}
		for k, v := range svc.Environment {
			env = append(env, k+"="+expand(t, v))
		}
		gws = append(gws, startGateway(t, binary, args, env))
	}

	secretFile := hostPaths{mounts(t, p.Services["uploadgate-1"]), vol}.path(t, gatewayFlags(t, "uploadgate-1", p.Services["uploadgate-1"])["secret-file"])
	file := bytes.Repeat([]byte("uploadgate "), 1000)
	size := fmt.Sprint(len(file))
	put1, get1 := sign(t, secretFile, gws[0].URL+"/upload/", "--size", size, "--type", "application/octet-stream", "big.bin")
	cutPut(t, put1, "application/octet-stream", file, 3000)
	put2 := gws[1].URL + strings.TrimPrefix(put1, gws[0].URL)
	off := storedOffset(t, put2, 1)
	status, _, body := do(t, http.MethodPut, put2, file[atoi(t, off):], map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": "bytes " + off + "-" + fmt.Sprint(len(file)-1) + "/" + size,
	})
	if status != http.StatusCreated {
		t.Fatalf("PUT with Content-Range at the other gateway: %d %s", status, body)
	}
	if status, _, got := do(t, http.MethodGet, get1, nil, nil); status != http.StatusOK || !bytes.Equal(got, file) {
		t.Fatalf("GET at the first gateway: %d, %d bytes; want 200 and the %d bytes", status, len(got), len(file))
	}

	// Every metric of the rules and the dashboard, S3's included.
	used := usedMetrics(t)
	served := scrape(t, gws[0])
	for _, name := range sortedKeys(used) {
		if !prometheusSeries[name] && !served[name] {
			t.Errorf("%s is used by %s but not served by a gateway with S3 storage", name, strings.Join(used[name], ", "))
		}
	}
	for i, g := range gws {
		if err := g.stop(t); err != nil {
			t.Errorf("uploadgate-%d exited with %v after SIGTERM, want 0", i+1, err)
		}
	}
	// Both used the key of the keys volume (the upload resumed across them)
	// and wrote none into their data volumes.
	for _, d := range []string{"data-1", "data-2"} {
		if _, err := os.Stat(filepath.Join(vol, d, "id.key")); !os.IsNotExist(err) {
			t.Errorf("%s/id.key exists (%v): the gateways must use the keys volume's id.key", d, err)
		}
	}
}

// startProcess runs a server until the test ends and waits until addr
// accepts connections.
func startProcess(t *testing.T, bin string, args, env []string, addr string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(bin)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), log())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("%s %s exited:\n%s", filepath.Base(bin), strings.Join(args, " "), log())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			ok := true
			if strings.Contains(bin, "redis") {
				fmt.Fprint(c, "PING\r\n")
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				ok = strings.HasPrefix(line, "+PONG")
			}
			c.Close()
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer at %s within 15 s:\n%s", filepath.Base(bin), addr, log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

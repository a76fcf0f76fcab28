package deploy_test

import (
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
	Line int
}

// parseDockerfile splits a Dockerfile into instructions: comment lines are
// dropped (also inside continued instructions, as Docker does) and lines
// ending with a backslash are joined.
func parseDockerfile(t *testing.T, text string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if rest, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends inside a continued instruction")
	}
	return out
}

// dockerStage is one FROM ... up to the next FROM.
type dockerStage struct {
	From, Name string
	Steps      []instruction
}

func dockerStages(t *testing.T) (args map[string]string, stages []dockerStage) {
	t.Helper()
	args = map[string]string{}
	for _, in := range parseDockerfile(t, readFile(t, "Dockerfile")) {
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			st := dockerStage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.Name = f[i+1]
					i++
				default:
					st.From = f[i]
				}
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.Cmd == "ARG":
			k, v, _ := strings.Cut(in.Args, "=")
			args[k] = v
		case len(stages) > 0:
			stages[len(stages)-1].Steps = append(stages[len(stages)-1].Steps, in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a final stage, found %d stages", len(stages))
	}
	return args, stages
}

// envArgs parses `ENV a=b c=d` (values may be quoted).
func envArgs(s string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)`)
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		v := m[2]
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[m[1]] = v
	}
	return out
}

// imageConfig is what the final stage of the Dockerfile sets.
type imageConfig struct {
	From, User              string
	Env                     map[string]string
	Volumes                 []string
	Expose                  []string
	Healthcheck, Entrypoint []string
	Copies                  []string
}

func finalImage(t *testing.T) imageConfig {
	t.Helper()
	_, stages := dockerStages(t)
	final := stages[len(stages)-1]
	img := imageConfig{From: final.From, Env: map[string]string{}}
	for _, in := range final.Steps {
		switch in.Cmd {
		case "USER":
			img.User = in.Args
		case "ENV":
			for k, v := range envArgs(in.Args) {
				img.Env[k] = v
			}
		case "VOLUME":
			vols, err := jsonStrings(in.Args)
			if err != nil {
				vols = strings.Fields(in.Args)
			}
			img.Volumes = append(img.Volumes, vols...)
		case "EXPOSE":
			img.Expose = append(img.Expose, strings.Fields(in.Args)...)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(in.Args, "CMD ")
			hc, err := jsonStrings(strings.TrimSpace(cmd))
			if !ok || err != nil || len(hc) == 0 {
				t.Fatalf("Dockerfile:%d: want HEALTHCHECK [options] CMD [\"exec\", \"form\"], got %q", in.Line, in.Args)
			}
			img.Healthcheck = hc
		case "ENTRYPOINT":
			ep, err := jsonStrings(in.Args)
			if err != nil {
				t.Fatalf("Dockerfile:%d: ENTRYPOINT is not in exec form: %v", in.Line, err)
			}
			img.Entrypoint = ep
		case "COPY":
			img.Copies = append(img.Copies, in.Args)
		}
	}
	return img
}

func TestDockerfileFinalImage(t *testing.T) {
	img := finalImage(t)
	if !strings.HasPrefix(img.From, "gcr.io/distroless/static") && img.From != "scratch" {
		t.Errorf("final image FROM %s; want distroless static or scratch", img.From)
	}
	uid, _, _ := strings.Cut(img.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root user (Kubernetes' runAsNonRoot can check only a number)", img.User)
	}
	if got := img.Env["UPLOADGATE_LISTEN"]; got != ":8080" {
		t.Errorf("ENV UPLOADGATE_LISTEN=%q, want :8080", got)
	}
	if got := img.Env["UPLOADGATE_DATA_DIR"]; got != "/data" {
		t.Errorf("ENV UPLOADGATE_DATA_DIR=%q, want /data", got)
	}
	var env strings.Builder
	for k := range img.Env {
		env.WriteString(k + "\n")
	}
	checkEnvNames(t, "Dockerfile ENV", env.String())
	if !contains(img.Volumes, img.Env["UPLOADGATE_DATA_DIR"]) {
		t.Errorf("VOLUME %v does not hold the data directory %s", img.Volumes, img.Env["UPLOADGATE_DATA_DIR"])
	}
	_, port, _ := net.SplitHostPort(img.Env["UPLOADGATE_LISTEN"])
	if !contains(img.Expose, port) && !contains(img.Expose, port+"/tcp") {
		t.Errorf("EXPOSE %v does not hold the port %s of UPLOADGATE_LISTEN", img.Expose, port)
	}
	if strings.Join(img.Entrypoint, " ") != "uploadgate serve" {
		t.Errorf("ENTRYPOINT %q, want [\"uploadgate\", \"serve\"]", img.Entrypoint)
	}
	if len(img.Healthcheck) == 0 {
		t.Errorf("no HEALTHCHECK")
	}
	// The data directory belongs to the user: a fresh named volume inherits it.
	owned := false
	for _, c := range img.Copies {
		f := strings.Fields(c)
		owned = owned || (contains(f, "--chown="+img.User) && f[len(f)-1] == img.Env["UPLOADGATE_DATA_DIR"])
	}
	if !owned {
		t.Errorf("no COPY --chown=%s ... %s: the data directory must belong to the user the gateway runs as", img.User, img.Env["UPLOADGATE_DATA_DIR"])
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

var mountFlag = regexp.MustCompile(`^--[a-z-]+=\S+\s*`)

// TestDockerfileBuildSteps runs the RUN steps of the build stage as plain
// commands in the repository (the image's WORKDIR after COPY . .), with the
// output directory /out moved to a temporary directory, and checks what
// they build: static, stripped binaries without build paths, carrying the
// version.
func TestDockerfileBuildSteps(t *testing.T) {
	args, stages := dockerStages(t)
	build := stages[0]
	if !strings.HasPrefix(build.From, "golang:") {
		t.Fatalf("first stage FROM %s, want golang", build.From)
	}
	out := t.TempDir()
	version := "v0.0.0-deploy-test"
	env := append(os.Environ(), "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH, "VERSION="+version)
	for k, v := range args {
		env = append(env, k+"="+v)
	}
	ran := 0
	for _, in := range build.Steps {
		if in.Cmd != "RUN" {
			continue
		}
		cmd := in.Args
		for mountFlag.MatchString(cmd) {
			if m := mountFlag.FindString(cmd); strings.Contains(m, "type=cache") && !strings.Contains(cmd, "go ") {
				t.Errorf("Dockerfile:%d: a cache mount on a step without go", in.Line)
			}
			cmd = mountFlag.ReplaceAllString(cmd, "")
		}
		if strings.Contains(cmd, "go build") && !strings.Contains(in.Args, "target=/root/.cache/go-build") {
			t.Errorf("Dockerfile:%d: go build without a cache mount of the build cache", in.Line)
		}
		cmd = strings.ReplaceAll(cmd, "/out/", out+"/")
		c := exec.Command("sh", "-c", cmd)
		c.Dir = repoRoot
		c.Env = env
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("Dockerfile:%d: %s: %v\n%s", in.Line, cmd, err, b)
		}
		ran++
	}
	if ran < 3 {
		t.Fatalf("ran %d RUN steps of the build stage, want at least 3", ran)
	}

	img := finalImage(t)
	for _, name := range []string{img.Entrypoint[0], img.Healthcheck[0]} {
		bin := filepath.Join(out, "bin", name)
		checkStaticBinary(t, bin)
	}
	got, err := exec.Command(filepath.Join(out, "bin", "uploadgate"), "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "uploadgate "+version {
		t.Errorf("uploadgate version: %q (%v), want %q: -X main.version is not set", got, err, "uploadgate "+version)
	}
	fi, err := os.Stat(filepath.Join(out, "data"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("the build stage's data directory: %v, %v; want a directory with mode 0700", fi, err)
	}

	// The image as it runs: the ENV of the Dockerfile, and the healthcheck
	// finding the gateway through UPLOADGATE_LISTEN alone.
	port := freePort(t)
	data := t.TempDir()
	var imgEnv []string
	for k, v := range img.Env {
		switch k {
		case "PATH":
		case "UPLOADGATE_LISTEN":
			imgEnv = append(imgEnv, k+"=127.0.0.1:"+port)
		case "UPLOADGATE_DATA_DIR":
			imgEnv = append(imgEnv, k+"="+data)
		default:
			imgEnv = append(imgEnv, k+"="+v)
		}
	}
	g := startGateway(t, filepath.Join(out, "bin", "uploadgate"), img.Entrypoint[1:], imgEnv)
	if g.URL != "http://127.0.0.1:"+port {
		t.Fatalf("the gateway listens at %s, not at UPLOADGATE_LISTEN 127.0.0.1:%s", g.URL, port)
	}
	for _, f := range []string{"id.key", "secret.key"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("UPLOADGATE_DATA_DIR: %v", err)
		}
	}
	healthcheck := func(listen string, args ...string) error {
		c := exec.Command(filepath.Join(out, "bin", img.Healthcheck[0]), append(img.Healthcheck[1:], args...)...)
		c.Env = append(os.Environ(), "UPLOADGATE_LISTEN="+listen)
		b, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	// The image's own value has no host: the healthcheck asks 127.0.0.1.
	if err := healthcheck(":" + port); err != nil {
		t.Errorf("healthcheck with UPLOADGATE_LISTEN=:%s on a healthy gateway: %v", port, err)
	}
	if err := healthcheck(":"+port, g.URL+"/readyz"); err != nil {
		t.Errorf("healthcheck %s/readyz: %v", g.URL, err)
	}
	if err := healthcheck(":"+port, g.URL+"/no-such-path"); err == nil {
		t.Errorf("healthcheck of a 404 succeeded")
	}
	if err := g.stop(t); err != nil {
		t.Errorf("SIGTERM: the gateway exited with %v, want 0", err)
	}
	if err := healthcheck(":" + port); err == nil {
		t.Errorf("healthcheck succeeded after the gateway stopped")
	}
}

// checkStaticBinary fails unless bin is a statically linked, stripped ELF
// executable without the build's paths (-trimpath).
func checkStaticBinary(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Errorf("%s: %v", filepath.Base(bin), err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static binary (CGO_ENABLED=0)", filepath.Base(bin))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", filepath.Base(bin), libs)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table: not stripped (-ldflags -s)", filepath.Base(bin))
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), repoRoot+string(filepath.Separator)) {
		t.Errorf("%s contains the build directory %s: built without -trimpath", filepath.Base(bin), repoRoot)
	}
}

// dockerignored reports whether Docker leaves rel (slash-separated, relative
// to the context) out of the build context: the last pattern matching it or
// one of its parent directories decides, "!" patterns take files back in.
func dockerignored(patterns []string, rel string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := dockerignoreRegexp(p)
		parts := strings.Split(rel, "/")
		for i := 1; i <= len(parts); i++ {
			if re.MatchString(strings.Join(parts[:i], "/")) {
				ignored = !neg
				break
			}
		}
	}
	return ignored
}

func dockerignoreRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func TestDockerignoreMatcher(t *testing.T) {
	patterns := []string{".git", "**/node_modules", "**/*_test.go", "deploy/*.yml", "docs", "!docs/keep.md"}
	for rel, want := range map[string]bool{
		".git/config":                true,
		"test/js/node_modules/x":     true,
		"gateway/put_test.go":        true,
		"gateway/put.go":             false,
		"deploy/docker-compose.yml":  true,
		"deploy/healthcheck/main.go": false,
		"docs/ops.md":                true,
		"docs/keep.md":               false,
		"go.mod":                     false,
	} {
		if got := dockerignored(patterns, rel); got != want {
			t.Errorf("dockerignored(%q) = %v, want %v", rel, got, want)
		}
	}
}

// TestDockerignoreKeepsTheBuildInputs checks that the build context keeps
// every file that the image's go builds read: the module files and the Go
// and embedded files of every package of the module they import.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(readFile(t, ".dockerignore"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	img := finalImage(t)
	_, stages := dockerStages(t)
	var pkgs []string
	for _, in := range stages[0].Steps {
		if m := regexp.MustCompile(`go build .* (\./\S+)\s*$`).FindStringSubmatch(in.Args); m != nil {
			pkgs = append(pkgs, m[1])
		}
	}
	if len(pkgs) < 2 {
		t.Fatalf("found the packages %v in the go build steps, want the gateway's and the healthcheck's (%s)", pkgs, img.Healthcheck[0])
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`},
		pkgs...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(repoRoot, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 20 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		if dockerignored(patterns, f) {
			t.Errorf(".dockerignore leaves out %s, which the image build needs", f)
		}
	}
}

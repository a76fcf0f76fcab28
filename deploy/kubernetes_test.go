package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const kubeDir = "deploy/kubernetes"

type kubeMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type kubeDoc struct {
	File       string
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   kubeMeta `yaml:"metadata"`
	node       *yaml.Node
}

func (d kubeDoc) decode(t *testing.T, v any) {
	t.Helper()
	if err := d.node.Decode(v); err != nil {
		t.Fatalf("%s: %s %s: %v", d.File, d.Kind, d.Metadata.Name, err)
	}
}

type kubeProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	TimeoutSeconds int `yaml:"timeoutSeconds"`
}

type kubeContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *kubeProbe `yaml:"livenessProbe"`
	ReadinessProbe *kubeProbe `yaml:"readinessProbe"`
	StartupProbe   *kubeProbe `yaml:"startupProbe"`
	Lifecycle      *struct {
		PreStop any `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type kubeDeployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    *int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				InitContainers []kubeContainer `yaml:"initContainers"`
				Containers     []kubeContainer `yaml:"containers"`
				Volumes        []struct {
					Name     string `yaml:"name"`
					EmptyDir any    `yaml:"emptyDir"`
					Secret   *struct {
						SecretName string `yaml:"secretName"`
						Items      []struct {
							Key  string `yaml:"key"`
							Path string `yaml:"path"`
						} `yaml:"items"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kubeSecret struct {
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

type kubeService struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type kubeSelectorSpec struct {
	Spec struct {
		MinAvailable int `yaml:"minAvailable"`
		Selector     struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Endpoints   []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// kubeManifests reads every document of deploy/kubernetes/*.yaml.
func kubeManifests(t *testing.T) (docs []kubeDoc, files []string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(path(kubeDir), "*.yaml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no manifests in %s: %v", kubeDir, err)
	}
	for _, f := range matches {
		files = append(files, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			d := kubeDoc{File: filepath.Base(f), node: &n}
			d.decode(t, &d)
			if d.APIVersion == "" || d.Kind == "" {
				t.Errorf("%s: a document without apiVersion or kind", d.File)
			}
			docs = append(docs, d)
		}
	}
	return docs, files
}

func byKind(t *testing.T, docs []kubeDoc, kind string) []kubeDoc {
	t.Helper()
	var out []kubeDoc
	for _, d := range docs {
		if d.Kind == kind {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no %s", kubeDir, kind)
	}
	return out
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// kubeSetup is what the manifests configure, gathered for several tests.
type kubeSetup struct {
	docs     []kubeDoc
	deploy   kubeDeployment
	gateway  kubeContainer
	config   map[string]string            // the ConfigMap's data
	secrets  map[string]map[string]string // Secret name → stringData
	volumeOf map[string]string            // gateway mount path → volume name
}

func loadKube(t *testing.T) kubeSetup {
	t.Helper()
	docs, _ := kubeManifests(t)
	s := kubeSetup{docs: docs, secrets: map[string]map[string]string{}, volumeOf: map[string]string{}}
	deps := byKind(t, docs, "Deployment")
	deps[0].decode(t, &s.deploy)
	for _, c := range s.deploy.Spec.Template.Spec.Containers {
		if c.Image == "uploadgate" || strings.Contains(c.Image, "uploadgate:") {
			s.gateway = c
		}
	}
	if s.gateway.Name == "" {
		t.Fatalf("%s: no uploadgate container", deps[0].File)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	cms := byKind(t, docs, "ConfigMap")
	cms[0].decode(t, &cm)
	s.config = cm.Data
	for _, d := range byKind(t, docs, "Secret") {
		var sec kubeSecret
		d.decode(t, &sec)
		s.secrets[d.Metadata.Name] = sec.StringData
	}
	for _, m := range s.gateway.VolumeMounts {
		s.volumeOf[m.MountPath] = m.Name
	}
	return s
}

func TestKubernetesManifests(t *testing.T) {
	s := loadKube(t)
	docs := s.docs
	var all strings.Builder
	_, files := kubeManifests(t)
	for _, f := range files {
		all.WriteString(readFile(t, kubeDir+"/"+f))
	}
	checkEnvNames(t, kubeDir, all.String())

	// kustomization.yaml lists every other manifest.
	var kust struct {
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name string `yaml:"name"`
		} `yaml:"images"`
	}
	byKind(t, docs, "Kustomization")[0].decode(t, &kust)
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	got := append([]string{}, kust.Resources...)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("kustomization.yaml resources %v, want the manifests %v", got, want)
	}
	if len(kust.Images) != 1 || kust.Images[0].Name != s.gateway.Image {
		t.Errorf("kustomization.yaml images %+v do not name the container image %q", kust.Images, s.gateway.Image)
	}

	dep := s.deploy.Spec
	pod := dep.Template.Spec
	podLabels := dep.Template.Metadata.Labels
	if dep.Replicas != 2 {
		t.Errorf("Deployment: replicas %d, want 2", dep.Replicas)
	}
	if !subset(dep.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment: selector %v does not select its pods %v", dep.Selector.MatchLabels, podLabels)
	}
	img := finalImage(t)
	uid, _ := strconv.Atoi(strings.Split(img.User, ":")[0])
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid {
		t.Errorf("Deployment: want runAsNonRoot and runAsUser %d (the image's user)", uid)
	}
	// SIGTERM to exit takes up to 30 s (the server's shutdown timeout).
	if pod.TerminationGracePeriodSeconds <= 30 {
		t.Errorf("Deployment: terminationGracePeriodSeconds %d, want more than the gateway's 30 s shutdown", pod.TerminationGracePeriodSeconds)
	}
	for _, c := range append(append([]kubeContainer{}, pod.InitContainers...), pod.Containers...) {
		for _, res := range []string{"cpu", "memory"} {
			if c.Resources.Requests[res] == "" || c.Resources.Limits[res] == "" {
				t.Errorf("container %s: no %s request or limit", c.Name, res)
			}
		}
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil ||
			!*sc.ReadOnlyRootFilesystem || !contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop ALL", c.Name)
		}
	}
	gw := s.gateway
	checkFlagArgs(t, "Deployment "+gw.Name, append(append([]string{}, gw.Command...), gw.Args...))
	if gw.LivenessProbe == nil || gw.LivenessProbe.HTTPGet == nil || gw.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("container %s: want a liveness probe GET /healthz", gw.Name)
	}
	// /readyz gives the storage and the session store 3 s each.
	if p := gw.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.TimeoutSeconds <= 3 {
		t.Errorf("container %s: want a readiness probe GET /readyz with timeoutSeconds above 3", gw.Name)
	}
	if gw.Lifecycle == nil || gw.Lifecycle.PreStop == nil {
		t.Errorf("container %s: no preStop pause: the endpoints must drop the pod before SIGTERM", gw.Name)
	}
	ports := map[string]int{}
	for _, p := range gw.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, key := range map[string]string{"http": "UPLOADGATE_LISTEN", "metrics": "UPLOADGATE_METRICS_LISTEN"} {
		_, port, err := net.SplitHostPort(s.config[key])
		if err != nil || strconv.Itoa(ports[name]) != port {
			t.Errorf("container port %s is %d, but the ConfigMap's %s is %q", name, ports[name], key, s.config[key])
		}
	}
	for _, p := range []*kubeProbe{gw.LivenessProbe, gw.ReadinessProbe, gw.StartupProbe} {
		if p != nil && p.HTTPGet != nil && ports[p.HTTPGet.Port] == 0 {
			t.Errorf("a probe asks port %q, which the container does not name", p.HTTPGet.Port)
		}
	}
	envFrom := map[string]string{}
	for _, e := range gw.EnvFrom {
		if e.ConfigMapRef != nil {
			envFrom[e.ConfigMapRef.Name] = "ConfigMap"
		}
		if e.SecretRef != nil {
			envFrom[e.SecretRef.Name] = "Secret"
		}
	}
	for _, kind := range []string{"ConfigMap", "Secret"} {
		found := false
		for _, d := range byKind(t, docs, kind) {
			found = found || envFrom[d.Metadata.Name] == kind
		}
		if !found {
			t.Errorf("container %s takes no environment from a %s of the manifests (envFrom %v)", gw.Name, kind, envFrom)
		}
	}

	// Services, the budget, the autoscaler and the monitor select the pods.
	var svc kubeService
	svcDoc := byKind(t, docs, "Service")[0]
	svcDoc.decode(t, &svc)
	if !subset(svc.Spec.Selector, podLabels) {
		t.Errorf("Service: selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
		if ports[p.TargetPort] == 0 {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, p.TargetPort)
		}
	}
	var pdb, hpa, mon kubeSelectorSpec
	byKind(t, docs, "PodDisruptionBudget")[0].decode(t, &pdb)
	if !subset(pdb.Spec.Selector.MatchLabels, podLabels) || pdb.Spec.MinAvailable < 1 || pdb.Spec.MinAvailable >= dep.Replicas {
		t.Errorf("PodDisruptionBudget: want a selector of the pods and 1 <= minAvailable < replicas, got %+v", pdb.Spec)
	}
	byKind(t, docs, "HorizontalPodAutoscaler")[0].decode(t, &hpa)
	if r := hpa.Spec.ScaleTargetRef; r.Kind != "Deployment" || r.Name != byKind(t, docs, "Deployment")[0].Metadata.Name ||
		hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler: want the Deployment, minReplicas >= 2, got %+v", hpa.Spec)
	}
	byKind(t, docs, "ServiceMonitor")[0].decode(t, &mon)
	if !subset(mon.Spec.Selector.MatchLabels, svcDoc.Metadata.Labels) {
		t.Errorf("ServiceMonitor: selector %v does not select the Service's labels %v", mon.Spec.Selector.MatchLabels, svcDoc.Metadata.Labels)
	}
	if len(mon.Spec.Endpoints) != 1 || mon.Spec.Endpoints[0].Port != "metrics" || !svcPorts["metrics"] || mon.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor: want /metrics on the Service port metrics, got %+v", mon.Spec.Endpoints)
	}

	// Volumes: the data directory, the slot secrets file, and id.key copied
	// by the init container from the Secret into the data directory.
	dataDir := s.config["UPLOADGATE_DATA_DIR"]
	vols := map[string]int{}
	for i, v := range pod.Volumes {
		vols[v.Name] = i
	}
	if v, ok := vols[s.volumeOf[dataDir]]; !ok || pod.Volumes[v].EmptyDir == nil {
		t.Errorf("UPLOADGATE_DATA_DIR %s is not an emptyDir mounted in the gateway", dataDir)
	}
	secretFile := s.config["UPLOADGATE_SECRET_FILE"]
	v, ok := vols[s.volumeOf[filepath.Dir(secretFile)]]
	if !ok || pod.Volumes[v].Secret == nil {
		t.Fatalf("UPLOADGATE_SECRET_FILE %s is not on a Secret volume of the gateway", secretFile)
	}
	keySecret := pod.Volumes[v].Secret.SecretName
	item := ""
	for _, it := range pod.Volumes[v].Secret.Items {
		if it.Path == filepath.Base(secretFile) {
			item = it.Key
		}
	}
	if _, ok := s.secrets[keySecret][item]; item == "" || !ok {
		t.Errorf("UPLOADGATE_SECRET_FILE %s: the Secret %s has no key for it", secretFile, keySecret)
	}
	if _, ok := s.secrets[keySecret]["id.key"]; !ok {
		t.Errorf("the Secret %s with the slot secrets has no id.key", keySecret)
	}
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want one init container (id.key), got %d", len(pod.InitContainers))
	}
	for _, m := range gw.VolumeMounts {
		if m.SubPath != "" && strings.HasPrefix(m.MountPath, dataDir+"/") {
			t.Errorf("the gateway mounts %s with subPath into the data directory: a Secret's file is root's and group-readable, and uploadgate refuses such a key", m.MountPath)
		}
	}
}

// TestKubernetesSecretsArePlaceholders checks that the Secret holds
// placeholders only, and that the gateway refuses to start with them.
func TestKubernetesSecretsArePlaceholders(t *testing.T) {
	s := loadKube(t)
	for name, data := range s.secrets {
		for k, v := range data {
			if !strings.Contains(v, "change-me") {
				t.Errorf("Secret %s: %s is not an obvious placeholder (change-me)", name, k)
			}
		}
	}
	secretFile := s.config["UPLOADGATE_SECRET_FILE"]
	var keys map[string]string
	for _, data := range s.secrets {
		if _, ok := data["id.key"]; ok {
			keys = data
		}
	}
	dir := t.TempDir()
	slotSecrets := filepath.Join(dir, filepath.Base(secretFile))
	if err := os.WriteFile(slotSecrets, []byte(keys[filepath.Base(secretFile)]), 0o440); err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	code, out := runToFailure(t, append(base, "--secret-file", slotSecrets), nil)
	if code != 2 || !strings.Contains(out, "secret-file") {
		t.Errorf("with the placeholder slot secrets: exit %d, want 2 naming --secret-file:\n%s", code, out)
	}
	good := filepath.Join(dir, "good-secret")
	if err := os.WriteFile(good, []byte("a-real-looking-secret-0123456789\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data2")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "id.key"), []byte(keys["id.key"]), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = runToFailure(t, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--secret-file", good}, nil)
	if code == 0 || !strings.Contains(out, "id.key") {
		t.Errorf("with the placeholder id.key: exit %d, want a failure naming id.key:\n%s", code, out)
	}
}

var shellCmd = regexp.MustCompile(`^sh$|^/bin/sh$`)

// TestKubernetesIDKey runs the init container's command with its mounts
// moved to directories of the test, the Secret's file as kubelet makes it
// with fsGroup (root's, mode 0440 here: readable by the group), and checks
// that the gateway then uses the Secret's id.key. It also shows why the
// copy is needed: uploadgate refuses a key file that the group can read.
func TestKubernetesIDKey(t *testing.T) {
	s := loadKube(t)
	pod := s.deploy.Spec.Template.Spec
	ic := pod.InitContainers[0]
	cmd := append(append([]string{}, ic.Command...), ic.Args...)
	if len(cmd) != 3 || !shellCmd.MatchString(cmd[0]) || cmd[1] != "-c" {
		t.Fatalf("init container %s: command %q, want sh -c SCRIPT", ic.Name, cmd)
	}
	dataDir := s.config["UPLOADGATE_DATA_DIR"]
	root := t.TempDir()
	script := cmd[2]
	mountedData := false
	for _, m := range ic.VolumeMounts {
		dir := filepath.Join(root, m.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		script = strings.ReplaceAll(script, m.MountPath+"/", dir+"/")
		if s.volumeOf[dataDir] == m.Name {
			mountedData = m.MountPath == dataDir
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				val := s.secrets[v.Secret.SecretName][it.Key]
				if it.Key == "id.key" {
					val = strings.Repeat("5a", 32) + "\n" // a real key in place of the placeholder
				}
				if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(val), 0o440); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !mountedData {
		t.Fatalf("init container %s does not mount the data volume at %s", ic.Name, dataDir)
	}
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("init container %s: %s: %v\n%s", ic.Name, script, err, out)
	}
	data := filepath.Join(root, s.volumeOf[dataDir])
	secret := filepath.Join(root, "slot-secrets")
	if err := os.WriteFile(secret, []byte("kubernetes-test-secret-0123456789\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, binary, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--secret-file", secret}, nil)
	if err := g.stop(t); err != nil {
		t.Errorf("SIGTERM: exit %v, want 0", err)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "id.key")); strings.TrimSpace(string(b)) != strings.Repeat("5a", 32) {
		t.Errorf("the gateway's id.key is %q, not the Secret's", b)
	}

	// The Secret's file itself, mounted into the data directory.
	direct := t.TempDir()
	if err := os.WriteFile(filepath.Join(direct, "id.key"), []byte(strings.Repeat("5a", 32)+"\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	code, out := runToFailure(t, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", direct, "--secret-file", secret}, nil)
	if code == 0 || !strings.Contains(out, "id.key") {
		t.Errorf("a group-readable id.key: exit %d:\n%s", code, out)
	}
}

// TestKubernetesConfigMapValues starts the gateway with the ConfigMap's
// settings, on disk storage and loopback addresses, so that the binary
// checks every value.
func TestKubernetesConfigMapValues(t *testing.T) {
	s := loadKube(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "slot-secrets")
	if err := os.WriteFile(secret, []byte("kubernetes-test-secret-0123456789\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	override := map[string]string{
		"UPLOADGATE_LISTEN":         "127.0.0.1:0",
		"UPLOADGATE_METRICS_LISTEN": "127.0.0.1:" + freePort(t),
		"UPLOADGATE_DATA_DIR":       filepath.Join(dir, "data"),
		"UPLOADGATE_SECRET_FILE":    secret,
		"UPLOADGATE_STORAGE":        "disk",
	}
	var env []string
	for k, v := range s.config {
		if o, ok := override[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	g := startGateway(t, binary, []string{"serve"}, env)
	if g.MetricsURL == g.URL {
		t.Errorf("UPLOADGATE_METRICS_LISTEN did not give /metrics a listener of its own")
	}
	scrape(t, g)
}

package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

	// Volumes: the data directory, and the slot secrets and the upload ID
	// key read from the Secret's volume.
	dataDir := s.config["UPLOADGATE_DATA_DIR"]
	vols := map[string]int{}
	for i, v := range pod.Volumes {
		vols[v.Name] = i
	}
	if v, ok := vols[s.volumeOf[dataDir]]; !ok || pod.Volumes[v].EmptyDir == nil {
		t.Errorf("UPLOADGATE_DATA_DIR %s is not an emptyDir mounted in the gateway", dataDir)
	}
	secretFile := s.config["UPLOADGATE_SECRET_FILE"]
	if _, name, key := s.secretFile(t, secretFile); key == "" {
		t.Errorf("UPLOADGATE_SECRET_FILE %s: the Secret %s has no key for it", secretFile, name)
	}
	idKeyFile := s.config["UPLOADGATE_ID_KEY_FILE"]
	if _, name, key := s.secretFile(t, idKeyFile); key != "id.key" {
		t.Errorf("UPLOADGATE_ID_KEY_FILE %s is the key %q of the Secret %s, want its id.key", idKeyFile, key, name)
	}
	for _, m := range gw.VolumeMounts {
		if m.SubPath != "" && (m.MountPath == idKeyFile || m.MountPath == secretFile) {
			t.Errorf("the gateway mounts %s with subPath: such a file does not follow an update of the Secret", m.MountPath)
		}
	}
}

// secretFile returns where a file of the gateway comes from: the path of the
// volume's mount, and the Secret and key behind the file ("" if none).
func (s kubeSetup) secretFile(t *testing.T, file string) (mountPath, secretName, key string) {
	t.Helper()
	for mp := range s.volumeOf {
		if strings.HasPrefix(file, mp+"/") && len(mp) > len(mountPath) {
			mountPath = mp
		}
	}
	if mountPath == "" {
		t.Fatalf("%s is on no volume of the gateway", file)
	}
	for _, v := range s.deploy.Spec.Template.Spec.Volumes {
		if v.Name != s.volumeOf[mountPath] {
			continue
		}
		if v.Secret == nil {
			t.Fatalf("%s is on the volume %s, which is not a Secret", file, v.Name)
		}
		for _, it := range v.Secret.Items {
			if it.Path == strings.TrimPrefix(file, mountPath+"/") {
				if _, ok := s.secrets[v.Secret.SecretName][it.Key]; ok {
					key = it.Key
				}
			}
		}
		return mountPath, v.Secret.SecretName, key
	}
	t.Fatalf("the gateway mounts %s from the volume %q, which the pod does not have", mountPath, s.volumeOf[mountPath])
	return "", "", ""
}

// writeSecretVolume writes the files of the Secret volume mounted at
// mountPath into dir as kubelet makes them, in mode perm, with the values of
// the manifests' Secret or those of replace (by key).
func (s kubeSetup) writeSecretVolume(t *testing.T, mountPath, dir string, perm os.FileMode, replace map[string]string) {
	t.Helper()
	for _, v := range s.deploy.Spec.Template.Spec.Volumes {
		if v.Name != s.volumeOf[mountPath] || v.Secret == nil {
			continue
		}
		for _, it := range v.Secret.Items {
			val, ok := replace[it.Key]
			if !ok {
				val = s.secrets[v.Secret.SecretName][it.Key]
			}
			p := filepath.Join(dir, filepath.FromSlash(it.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(val), perm); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, perm); err != nil { // not subject to the umask
				t.Fatal(err)
			}
		}
		return
	}
	t.Fatalf("no Secret volume mounted at %s", mountPath)
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
	idKey := filepath.Join(dir, "id.key")
	if err := os.WriteFile(idKey, []byte(keys["id.key"]), 0o440); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data2")
	code, out = runToFailure(t, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--secret-file", good},
		[]string{"UPLOADGATE_ID_KEY_FILE=" + idKey})
	if code != 2 || !strings.Contains(out, "--id-key-file") {
		t.Errorf("with the placeholder id.key: exit %d, want 2 naming --id-key-file:\n%s", code, out)
	}
	if strings.Contains(out, keys["id.key"]) {
		t.Errorf("the error repeats the id.key placeholder:\n%s", out)
	}
}

// TestKubernetesIDKey starts the gateway as the manifests configure it,
// with the Secret's volume in a directory of the test and its id.key in mode
// 0644 (a Secret volume's default; the manifests' 0440 with fsGroup is
// stricter): the gateway reads the key from UPLOADGATE_ID_KEY_FILE, creates
// no <data-dir>/id.key, and derives the same upload ID for a slot as a
// gateway with the same key in <data-dir>/id.key.
func TestKubernetesIDKey(t *testing.T) {
	s := loadKube(t)
	keyFile := s.config["UPLOADGATE_ID_KEY_FILE"]
	secretFile := s.config["UPLOADGATE_SECRET_FILE"]
	mountPath, _, _ := s.secretFile(t, keyFile)
	root := t.TempDir()
	volume := filepath.Join(root, s.volumeOf[mountPath])
	key := strings.Repeat("5a", 32) + "\n" // a real key in place of the placeholder
	const slotSecret = "kubernetes-test-secret-0123456789\n"
	s.writeSecretVolume(t, mountPath, volume, 0o644, map[string]string{"id.key": key, "slot-secrets": slotSecret})
	here := func(p string) string {
		if !strings.HasPrefix(p, mountPath+"/") {
			t.Fatalf("%s is not on the Secret volume at %s", p, mountPath)
		}
		return filepath.Join(volume, filepath.FromSlash(strings.TrimPrefix(p, mountPath+"/")))
	}
	if fi, err := os.Stat(here(keyFile)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("the Secret volume has no id.key at %s in mode 0644: %v", keyFile, err)
	}

	// The ConfigMap's settings, on disk storage and loopback addresses.
	data := filepath.Join(root, s.volumeOf[s.config["UPLOADGATE_DATA_DIR"]])
	override := map[string]string{
		"UPLOADGATE_LISTEN":         "127.0.0.1:0",
		"UPLOADGATE_METRICS_LISTEN": "127.0.0.1:" + freePort(t),
		"UPLOADGATE_DATA_DIR":       data,
		"UPLOADGATE_SECRET_FILE":    here(secretFile),
		"UPLOADGATE_ID_KEY_FILE":    here(keyFile),
		"UPLOADGATE_STORAGE":        "disk",
	}
	var env []string
	for k, v := range s.config {
		if o, ok := override[k]; ok {
			v = o
		}
		env = append(env, k+"="+v)
	}
	viaSecret := uploadIDsAfterPut(t, startGateway(t, binary, []string{"serve"}, env), here(secretFile), data)
	if _, err := os.Stat(filepath.Join(data, "id.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the gateway created <data-dir>/id.key (%v); the key is the Secret's", err)
	}
	if b, _ := os.ReadFile(here(keyFile)); string(b) != key {
		t.Errorf("the gateway changed the Secret's id.key")
	}

	// The same key in <data-dir>/id.key, without UPLOADGATE_ID_KEY_FILE.
	data2 := filepath.Join(root, "data-dir-key")
	if err := os.MkdirAll(data2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data2, "id.key"), []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, binary, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", data2, "--secret-file", here(secretFile)},
		[]string{"UPLOADGATE_ID_KEY_FILE="})
	viaDataDir := uploadIDsAfterPut(t, g, here(secretFile), data2)
	if len(viaSecret) != 1 || strings.Join(viaSecret, " ") != strings.Join(viaDataDir, " ") {
		t.Errorf("upload IDs with the Secret's id.key %v, with the same key in <data-dir>/id.key %v; want one, the same", viaSecret, viaDataDir)
	}
}

// uploadIDsAfterPut uploads a small file to the slot d1/hello.txt at g, stops
// g and returns the IDs of the uploads that disk storage holds in dataDir.
func uploadIDsAfterPut(t *testing.T, g *gateway, secretFile, dataDir string) []string {
	t.Helper()
	file := []byte("hello")
	putURL, _ := sign(t, secretFile, g.URL+"/upload/", "--size", fmt.Sprint(len(file)), "--type", "text/plain", "--dir", "d1", "hello.txt")
	if status, _, body := do(t, http.MethodPut, putURL, file, map[string]string{"Content-Type": "text/plain"}); status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if err := g.stop(t); err != nil {
		t.Errorf("SIGTERM: exit %v, want 0", err)
	}
	entries, err := os.ReadDir(filepath.Join(dataDir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if n := e.Name(); !strings.HasPrefix(n, ".") && !strings.HasSuffix(n, ".info") {
			ids = append(ids, n)
		}
	}
	sort.Strings(ids)
	return ids
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
	idKey := filepath.Join(dir, "id.key")
	if err := os.WriteFile(idKey, []byte(strings.Repeat("5a", 32)+"\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	override := map[string]string{
		"UPLOADGATE_LISTEN":         "127.0.0.1:0",
		"UPLOADGATE_METRICS_LISTEN": "127.0.0.1:" + freePort(t),
		"UPLOADGATE_DATA_DIR":       filepath.Join(dir, "data"),
		"UPLOADGATE_SECRET_FILE":    secret,
		"UPLOADGATE_ID_KEY_FILE":    idKey,
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

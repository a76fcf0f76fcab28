package deploy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
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

const (
	alertsFile    = "deploy/prometheus/alerts.yml"
	alertsTest    = "deploy/prometheus/alerts_test.yml"
	dashboardFile = "deploy/grafana/uploadgate.json"
)

// prometheusSeries are series that Prometheus makes itself, not the binary.
var prometheusSeries = map[string]bool{"up": true}

// s3OnlyMetric tells the series that only --storage s3 serves; the compose
// test checks them on a gateway with S3 storage.
func s3OnlyMetric(name string) bool { return strings.HasPrefix(name, "tusd_s3_") }

func TestAlertRulesPromtool(t *testing.T) {
	promtool := needTool(t, "promtool", "UPLOADGATE_SKIP_PROMTOOL")
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(alertsFile)},
		{"test", "rules", filepath.Base(alertsTest)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(path(alertsFile))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertRules reads the alert rules: alert name → expression.
func alertRules(t *testing.T) map[string]string {
	t.Helper()
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(readFile(t, alertsFile)), &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	rules := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule of group %s has no alert name or no expression", alertsFile, g.Name)
				continue
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: %s needs a severity label, a summary and a description", alertsFile, r.Alert)
			}
			rules[r.Alert] = r.Expr
		}
	}
	return rules
}

func TestAlertRulesCoverTheFailures(t *testing.T) {
	rules := alertRules(t)
	// What the operators asked to be alerted on, by the series that shows it.
	for what, series := range map[string]string{
		"a rising 5xx rate":           `uploadgate_http_requests_total{door!="ops", code_class="5xx"}`,
		"slot checks failing":         `uploadgate_slot_checks_total{result="invalid"}`,
		"slow storage":                `uploadgate_storage_operation_duration_seconds_bucket`,
		"readiness failing":           `uploadgate_http_requests_total{door="ops", method="GET", code_class="5xx"}`,
		"uploads failing":             `uploadgate_uploads_failed_total{reason=~"storage|internal"}`,
		"sessions without completion": `uploadgate_sessions_opened_total`,
	} {
		found := false
		for _, expr := range rules {
			found = found || strings.Contains(expr, series)
		}
		if !found {
			t.Errorf("%s: no alert on %s uses %s", alertsFile, what, series)
		}
	}
	// Every alert is exercised by the promtool unit tests.
	tests := readFile(t, alertsTest)
	for name := range rules {
		if !strings.Contains(tests, "alertname: "+name+"\n") {
			t.Errorf("%s: no test of the alert %s", alertsTest, name)
		}
	}
}

// dashboardQueries returns the PromQL expressions of the dashboard and the
// metrics its template variables query.
func dashboardQueries(t *testing.T) (exprs []string, varMetrics []string) {
	t.Helper()
	var dash map[string]any
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash["uid"] == "" || dash["title"] == "" {
		t.Errorf("%s: needs a uid and a title", dashboardFile)
	}
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	ids := map[float64]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if id, ok := v["id"].(float64); ok && v["gridPos"] != nil {
				if ids[id] {
					t.Errorf("%s: panel id %v used twice", dashboardFile, id)
				}
				ids[id] = true
			}
			for k, e := range v {
				if s, ok := e.(string); ok {
					switch {
					case k == "expr":
						exprs = append(exprs, s)
					case k == "query" || k == "definition":
						for _, m := range labelValues.FindAllStringSubmatch(s, -1) {
							varMetrics = append(varMetrics, m[1])
						}
					}
				}
				if k == "datasource" {
					if ds, ok := e.(map[string]any); ok && ds["uid"] != "${datasource}" {
						t.Errorf("%s: a data source is %v, want the variable ${datasource}", dashboardFile, ds["uid"])
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) < 10 || len(varMetrics) == 0 {
		t.Fatalf("%s: found %d queries and %d template variable metrics; the dashboard's form changed", dashboardFile, len(exprs), len(varMetrics))
	}
	return exprs, varMetrics
}

var (
	promString     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchers   = regexp.MustCompile(`\{[^}]*\}`)
	promRange      = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping   = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promVariable   = regexp.MustCompile(`\$\w+`)
	promIdentifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords   = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
	}
)

// promqlMetricNames returns the metric names in a PromQL expression: every
// identifier outside strings, label matchers, ranges and grouping clauses that
// is neither a keyword nor called like a function.
func promqlMetricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promVariable.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	var names []string
	for _, loc := range promIdentifier.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(s[loc[0]-1])) {
			continue // a duration (5m) or a number (1e3)
		}
		call := strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(")
		if call || promKeywords[strings.ToLower(name)] || seen[name] {
			continue
		}
		seen[name] = true
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestPromqlMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (job) (rate(foo_total{a="b", c=~"x|y"}[5m])) / on (x) group_left (y) bar > 0.5 unless baz offset 5m`: "bar baz foo_total",
		`histogram_quantile(0.99, sum by (le, op) (rate(d_seconds_bucket{op!~"write|lock"}[$__rate_interval])))`:     "d_seconds_bucket",
		`up{job="uploadgate"} == 0 and ignoring(instance) other:recorded 1e3`:                                        "other:recorded up",
		`count(x{a="}"})`: "x",
	} {
		if got := strings.Join(promqlMetricNames(expr), " "); got != want {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// usedMetrics returns every metric named by the alert rules and the
// dashboard, with where it is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for alert, expr := range alertRules(t) {
		for _, n := range promqlMetricNames(expr) {
			used[n] = append(used[n], alertsFile+" "+alert)
		}
	}
	exprs, varMetrics := dashboardQueries(t)
	for _, expr := range exprs {
		for _, n := range promqlMetricNames(expr) {
			used[n] = append(used[n], dashboardFile)
		}
	}
	for _, n := range varMetrics {
		used[n] = append(used[n], dashboardFile+" (variable)")
	}
	return used
}

// TestMetricsExist runs the binary, uploads (a PUT, a download, a cut and
// resumed PUT, a bad signature) and checks that /metrics serves every metric
// that the alert rules and the dashboard use.
func TestMetricsExist(t *testing.T) {
	used := usedMetrics(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("metrics-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, binary, []string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:" + freePort(t),
		"--data-dir", filepath.Join(dir, "data"), "--secret-file", secretFile}, nil)
	base := g.URL + "/upload/"

	// A small upload.
	putURL, getURL := sign(t, secretFile, base, "--size", "5", "--type", "text/plain", "hello.txt")
	if status, _, body := do(t, http.MethodPut, putURL, []byte("hello"), map[string]string{"Content-Type": "text/plain"}); status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if status, _, body := do(t, http.MethodGet, getURL, nil, nil); status != http.StatusOK || string(body) != "hello" {
		t.Fatalf("GET: %d %q", status, body)
	}
	// An upload cut off and resumed with Content-Range.
	file := bytes.Repeat([]byte("0123456789"), 100)
	putURL, _ = sign(t, secretFile, base, "--size", "1000", "ten.bin")
	cutPut(t, putURL, "application/octet-stream", file, 400)
	off := storedOffset(t, putURL, 1)
	status, _, body := do(t, http.MethodPut, putURL, file[atoi(t, off):], map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": "bytes " + off + "-999/1000",
	})
	if status != http.StatusCreated {
		t.Fatalf("resumed PUT: %d %s", status, body)
	}
	// A wrong signature.
	bad := strings.Replace(putURL, "v2=", "v2=00", 1)
	if status, _, _ := do(t, http.MethodPut, bad, file, nil); status != http.StatusForbidden {
		t.Errorf("PUT with a wrong signature: %d, want 403", status)
	}

	served := scrape(t, g)
	for _, name := range sortedKeys(used) {
		if prometheusSeries[name] || s3OnlyMetric(name) {
			continue
		}
		if !served[name] {
			t.Errorf("%s is used by %s but not served by uploadgate", name, strings.Join(used[name], ", "))
		}
	}
	// The binary's /metrics is what Prometheus scrapes: a metric that the
	// test above lets pass because Prometheus makes it must not be served.
	for name := range prometheusSeries {
		if served[name] {
			t.Errorf("%s is served by uploadgate; it is no longer Prometheus's own series", name)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

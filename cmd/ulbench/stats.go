package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// series is one metric of one target, a value per round.
type series struct {
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

func (s *series) add(v float64) { s.Values = append(s.Values, v) }

func (s *series) summarise() {
	if len(s.Values) == 0 {
		return
	}
	v := slices.Clone(s.Values)
	slices.Sort(v)
	s.Min, s.Max = v[0], v[len(v)-1]
	if len(v)%2 == 1 {
		s.Median = v[len(v)/2]
	} else {
		s.Median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
}

// targetResult is what a scenario measured for one target.
type targetResult struct {
	Name string `json:"name"`
	// Metrics by name; the scenario's Primary metric is compared in ratios.
	Metrics map[string]*series `json:"metrics"`
	// PeakRSSKiB is the server's VmHWM at the end of the scenario (a fresh
	// process per target and scenario).
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// Notes: errors and anything unusual.
	Notes []string `json:"notes,omitempty"`
	order []string
}

func (t *targetResult) metric(name, unit string) *series {
	if t.Metrics == nil {
		t.Metrics = map[string]*series{}
	}
	s, ok := t.Metrics[name]
	if !ok {
		s = &series{Unit: unit}
		t.Metrics[name] = s
		t.order = append(t.order, name)
	}
	return s
}

// ratio compares the primary metric of two targets.
type ratio struct {
	A, B string
	// OfMedians is median(A)/median(B).
	OfMedians float64 `json:"of_medians"`
	// PerRound are A/B within each round (the two ran back to back).
	PerRound []float64 `json:"per_round"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
}

type scenarioResult struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Primary     string          `json:"primary_metric"`
	Targets     []*targetResult `json:"targets"`
	Ratios      []*ratio        `json:"ratios"`
	LoadBefore  string          `json:"load_before"`
	LoadAfter   string          `json:"load_after"`
	Seconds     float64         `json:"seconds"`
	Skipped     string          `json:"skipped,omitempty"`
}

// addLoad records one round of a request load (see load): rate, latency
// percentiles, errors, and the first error as a note.
func (t *targetResult) addLoad(round int, rate, p50, p99 float64, errs int64, first string) {
	t.metric("req/s", "req/s").add(rate)
	t.metric("p50 ms", "ms").add(p50)
	t.metric("p99 ms", "ms").add(p99)
	t.metric("errors", "").add(float64(errs))
	if first != "" {
		t.Notes = append(t.Notes, fmt.Sprintf("round %d: %d errors, first: %s", round, errs, first))
	}
}

// addServerCPU records the CPU time the server process used for n requests
// of a round (10 ms resolution; a Redis server's own CPU is not included).
func (t *targetResult) addServerCPU(cpu time.Duration, n float64) {
	if n > 0 {
		t.metric("server CPU µs/req", "µs").add(float64(cpu.Microseconds()) / n)
	}
}

func (sc *scenarioResult) target(name string) *targetResult {
	for _, t := range sc.Targets {
		if t.Name == name {
			return t
		}
	}
	t := &targetResult{Name: name}
	sc.Targets = append(sc.Targets, t)
	return t
}

func (sc *scenarioResult) finish(pairs [][2]string) {
	for _, t := range sc.Targets {
		for _, s := range t.Metrics {
			s.summarise()
		}
	}
	for _, p := range pairs {
		a, b := sc.find(p[0]), sc.find(p[1])
		if a == nil || b == nil {
			continue
		}
		sa, sb := a.Metrics[sc.Primary], b.Metrics[sc.Primary]
		if sa == nil || sb == nil || sb.Median == 0 {
			continue
		}
		r := &ratio{A: p[0], B: p[1], OfMedians: sa.Median / sb.Median, Min: math.Inf(1), Max: math.Inf(-1)}
		for i := 0; i < len(sa.Values) && i < len(sb.Values); i++ {
			if sb.Values[i] == 0 {
				continue
			}
			v := sa.Values[i] / sb.Values[i]
			r.PerRound = append(r.PerRound, v)
			r.Min, r.Max = math.Min(r.Min, v), math.Max(r.Max, v)
		}
		sc.Ratios = append(sc.Ratios, r)
	}
}

func (sc *scenarioResult) find(name string) *targetResult {
	for _, t := range sc.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// print writes the scenario as a table.
func (sc *scenarioResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s\n", sc.Name, sc.Description)
	if sc.Skipped != "" {
		fmt.Fprintf(w, "   skipped: %s\n", sc.Skipped)
		return
	}
	fmt.Fprintf(w, "   load average before %s, after %s; %.0f s\n", sc.LoadBefore, sc.LoadAfter, sc.Seconds)
	for _, t := range sc.Targets {
		var parts []string
		for _, name := range t.order {
			s := t.Metrics[name]
			parts = append(parts, fmt.Sprintf("%s %s [%s–%s]", name, num(s.Median), num(s.Min), num(s.Max)))
		}
		fmt.Fprintf(w, "   %-18s %s; peak RSS %.1f MiB\n", t.Name, strings.Join(parts, "; "), float64(t.PeakRSSKiB)/1024)
		for _, n := range t.Notes {
			fmt.Fprintf(w, "   %-18s   note: %s\n", "", n)
		}
	}
	for _, r := range sc.Ratios {
		fmt.Fprintf(w, "   ratio %s / %s (%s): %.3f (per round %.3f–%.3f)\n", r.A, r.B, sc.Primary, r.OfMedians, r.Min, r.Max)
	}
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// percentile of sorted durations, in milliseconds.
func percentileMS(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	i = max(0, min(i, len(d)-1))
	return float64(d[i]) / float64(time.Millisecond)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machine describes where the run happened.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Filesys   string `json:"work_dir_filesystem"`
	StartedAt string `json:"started_at"`
}

func describeMachine(dir string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), StartedAt: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Filesys = fsType(dir)
	return m
}

// fsType is the file system type of the mount holding dir.
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "?"
	}
	best, typ := "", "?"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		if (dir == f[1] || strings.HasPrefix(dir, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) > len(best) {
			best, typ = f[1], f[2]
		}
	}
	return typ
}

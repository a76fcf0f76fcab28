package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPatternIsDeterministicAndBlocksDiffer(t *testing.T) {
	const n = 3*patternBlock + 12345
	read := func(seed uint64, off, n int64, chunk int) []byte {
		var out bytes.Buffer
		buf := make([]byte, chunk)
		p := newPattern(seed, off, n)
		for {
			k, err := p.Read(buf)
			out.Write(buf[:k])
			if err == io.EOF {
				return out.Bytes()
			}
		}
	}
	a := read(7, 0, n, 4096)
	if int64(len(a)) != n {
		t.Fatalf("read %d bytes, want %d", len(a), n)
	}
	// Any read size and any starting offset see the same stream.
	if b := read(7, 0, n, 7919); !bytes.Equal(a, b) {
		t.Fatal("the stream depends on the read size")
	}
	if c := read(7, patternBlock-5, 100, 3); !bytes.Equal(c, a[patternBlock-5:patternBlock+95]) {
		t.Fatal("a stream started at an offset differs from the same bytes of the whole stream")
	}
	// Blocks and seeds are told apart.
	if bytes.Equal(a[:patternBlock], a[patternBlock:2*patternBlock]) {
		t.Fatal("two blocks of one stream are equal")
	}
	if bytes.Equal(a[:64], read(8, 0, 64, 64)) {
		t.Fatal("two seeds give the same bytes")
	}
	if patternSHA256(7, n) == patternSHA256(7, n-1) {
		t.Fatal("hashes of different lengths are equal")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": GiB, "64MiB": 64 * MiB, "512K": 512 * KiB, "100": 100} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1TB", "x"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	if s := fmtSize(8 * MiB); s != "8MiB" {
		t.Errorf("fmtSize(8MiB) = %q", s)
	}
}

func TestSummaryAndRatios(t *testing.T) {
	sc := &scenarioResult{Primary: "MiB/s"}
	a, b := sc.target("a"), sc.target("b")
	for _, v := range []float64{30, 10, 20} {
		a.metric("MiB/s", "MiB/s").add(v)
	}
	for _, v := range []float64{10, 10, 40} {
		b.metric("MiB/s", "MiB/s").add(v)
	}
	sc.finish([][2]string{{"a", "b"}})
	if s := a.Metrics["MiB/s"]; s.Median != 20 || s.Min != 10 || s.Max != 30 {
		t.Fatalf("summary %+v", s)
	}
	r := sc.Ratios[0]
	if r.OfMedians != 2 || r.Min != 0.5 || r.Max != 3 || len(r.PerRound) != 3 {
		t.Fatalf("ratio %+v", r)
	}
	d := []time.Duration{5, 1, 4, 2, 3}
	if p := percentileMS(d, 50); p != float64(3)/float64(time.Millisecond) {
		t.Fatalf("p50 %v", p)
	}
}

func TestParseOpSeconds(t *testing.T) {
	text := `# HELP uploadgate_storage_operation_duration_seconds Duration of calls.
# TYPE uploadgate_storage_operation_duration_seconds histogram
uploadgate_storage_operation_duration_seconds_bucket{op="session_create",le="0.001"} 3
uploadgate_storage_operation_duration_seconds_sum{op="session_create"} 0.25
uploadgate_storage_operation_duration_seconds_count{op="session_create"} 4
uploadgate_storage_operation_duration_seconds_sum{op="write"} 1.5e-05
uploadgate_http_requests_total{door="put"} 7
`
	got := parseOpSeconds(strings.NewReader(text))
	if len(got) != 2 || got["session_create"] != 0.25 || got["write"] != 1.5e-05 {
		t.Fatalf("parsed %v", got)
	}
}

// A goal is met by the ratio of the medians, in its direction, and only
// when both targets ran.
func TestCheckGoals(t *testing.T) {
	mk := func(name, a, b string, av, bv float64) *scenarioResult {
		sc := &scenarioResult{Name: name, Primary: "m"}
		sc.target(a).metric("m", "").add(av)
		sc.target(b).metric("m", "").add(bv)
		sc.finish([][2]string{{a, b}})
		return sc
	}
	gs := checkGoals([]*scenarioResult{
		mk("s3", "ug-put-s3", "tusd-1patch-s3", 130, 100),
		mk("mem", "ug-put-disk", "tusd-disk", 40, 50),
	})
	got := map[string]goal{}
	for _, g := range gs {
		got[g.A+"/"+g.B+"@"+g.Scenario] = g
	}
	if g := got["ug-put-s3/tusd-1patch-s3@s3"]; !g.Measured || g.Ratio != 1.3 || !g.Met {
		t.Errorf("S3 goal: %+v, want measured 1.3 and met", g)
	}
	if g := got["ug-put-disk/tusd-disk@mem"]; !g.Measured || g.Met {
		t.Errorf("memory goal: %+v, want measured 0.8 and not met (at most 0.5)", g)
	}
	if g := got["ug-pebble/tusd@create"]; g.Measured || g.Met {
		t.Errorf("creation goal without its scenario: %+v, want not measured", g)
	}
}

package main

import (
	"fmt"
	"io"
)

// goal is a performance goal stated as a ratio of two targets' primary
// metric in one scenario: A/B at least (or, for memory, at most) Want.
type goal struct {
	What     string  `json:"what"`
	Scenario string  `json:"scenario"`
	A        string  `json:"a"`
	B        string  `json:"b"`
	AtMost   bool    `json:"at_most,omitempty"`
	Want     float64 `json:"want"`
	// Filled in from the run: the ratio of the medians and the range of
	// the per-round ratios; Met compares the ratio of the medians.
	Ratio    float64 `json:"ratio,omitempty"`
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	Measured bool    `json:"measured"`
	Met      bool    `json:"met"`
}

// goals are the figures that docs/performance.md holds uploadgate to, each
// measured beside its peer in the same run.
func goals() []goal {
	return []goal{
		{What: "S3, PUT door / tusd s3store default (MiB/s)", Scenario: "s3", A: "ug-put-s3", B: "tusd-1patch-s3", Want: 1.2},
		{What: "S3, PUT door / direct multipart PutObject (MiB/s)", Scenario: "s3", A: "ug-put-s3", B: "direct-mpu-s3", Want: 0.85},
		{What: "tus creations, embedded (Pebble) sessions / tusd (req/s)", Scenario: "create", A: "ug-pebble", B: "tusd", Want: 1.0},
		{What: "tus creations, Redis sessions / tusd (req/s)", Scenario: "create", A: "ug-redis", B: "tusd", Want: 1.0},
		{What: "peak RSS, 64 concurrent uploads to disk / tusd", Scenario: "mem", A: "ug-put-disk", B: "tusd-disk", AtMost: true, Want: 0.5},
		{What: "peak RSS, 64 concurrent uploads to S3 / tusd", Scenario: "mem", A: "ug-put-s3", B: "tusd-s3", AtMost: true, Want: 0.5},
	}
}

// checkGoals fills in each goal from the scenarios that ran.
func checkGoals(scs []*scenarioResult) []goal {
	gs := goals()
	for i := range gs {
		g := &gs[i]
		for _, sc := range scs {
			if sc.Name != g.Scenario {
				continue
			}
			for _, r := range sc.Ratios {
				if r.A == g.A && r.B == g.B {
					g.Ratio, g.Min, g.Max, g.Measured = r.OfMedians, r.Min, r.Max, true
					g.Met = g.Ratio >= g.Want
					if g.AtMost {
						g.Met = g.Ratio <= g.Want
					}
				}
			}
		}
	}
	return gs
}

// printGoals writes the goals that were measured, met or not.
func printGoals(w io.Writer, gs []goal) {
	header := false
	for _, g := range gs {
		if !g.Measured {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n== goals (ratio of the medians; per round in brackets)\n")
			header = true
		}
		op, verdict := "≥", "met"
		if g.AtMost {
			op = "≤"
		}
		if !g.Met {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "   %-52s %.3f [%.3f–%.3f], goal %s %.2f: %s\n", g.What, g.Ratio, g.Min, g.Max, op, g.Want, verdict)
	}
}

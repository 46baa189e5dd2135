// Package slo reads SLO specs, compiles them into multi-window multi-burn-rate
// CloudWatch alarms (Google SRE workbook, ch. 5) and computes attainment and
// error budget from CloudWatch data.
package slo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"

	"github.com/streamlens/streamlens/metrics"
)

// Spec is one SLO. The SLI is a ratio of events: bad events over all events,
// each a CloudWatch statistic of a streamlens metric.
type Spec struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Objective   float64 `json:"objective"`   // e.g. 0.99: 99 % of events good
	WindowDays  int     `json:"window_days"` // the compliance window, e.g. 28
	SLI         SLI     `json:"sli"`
}

// SLI names the bad and total event counts, and the events that are
// neither: counted in bad (and total) by their metrics, but not the
// service's doing (a caller that went away, a stream streamlens could not
// judge). They are taken out of both.
type SLI struct {
	Bad     Query   `json:"bad"`
	Total   Query   `json:"total"`
	Exclude []Query `json:"exclude,omitempty"`
}

// Query is one metric statistic (dimension FunctionName always applies).
type Query struct {
	Metric string `json:"metric"`
	Stat   string `json:"stat"` // Sum or SampleCount
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// Parse reads and checks a spec file: a JSON array of Spec.
func Parse(b []byte) ([]Spec, error) {
	var specs []Spec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("slo spec: %w", err)
	}
	return check(specs)
}

// check validates specs, from either format.
func check(specs []Spec) ([]Spec, error) {
	if len(specs) == 0 {
		return nil, errors.New("slo spec: no SLOs")
	}
	known := map[string]bool{}
	for _, d := range metrics.Defs() {
		known[d.Name] = true
	}
	seen := map[string]bool{}
	for i, s := range specs {
		where := fmt.Sprintf("slo spec: SLO %d (%q)", i, s.Name)
		switch {
		case !nameRE.MatchString(s.Name):
			return nil, fmt.Errorf("%s: name must match %s", where, nameRE)
		case seen[s.Name]:
			return nil, fmt.Errorf("%s: duplicate name", where)
		case !(s.Objective > 0 && s.Objective < 1):
			return nil, fmt.Errorf("%s: objective %v must be between 0 and 1 (0.99 = 99 %%)", where, s.Objective)
		case s.WindowDays < 1 || s.WindowDays > 90:
			return nil, fmt.Errorf("%s: window_days %d must be 1..90", where, s.WindowDays)
		}
		seen[s.Name] = true
		for _, q := range append([]Query{s.SLI.Bad, s.SLI.Total}, s.SLI.Exclude...) {
			if !known[q.Metric] {
				return nil, fmt.Errorf("%s: unknown metric %q", where, q.Metric)
			}
			if q.Stat != "Sum" && q.Stat != "SampleCount" {
				return nil, fmt.Errorf("%s: stat %q: want Sum or SampleCount (event counts)", where, q.Stat)
			}
		}
	}
	return specs, nil
}

// Load reads a spec file: streamlens's JSON, or OpenSLO v1 YAML (.yaml,
// .yml).
func Load(path string) ([]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml") {
		return ParseOpenSLO(b)
	}
	return Parse(b)
}

// ErrorBudget is the allowed bad fraction, 1 − objective (rounded, so 0.99
// gives 0.01 and not 0.010000000000000009 in generated expressions).
func (s Spec) ErrorBudget() float64 { return math.Round((1-s.Objective)*1e12) / 1e12 }

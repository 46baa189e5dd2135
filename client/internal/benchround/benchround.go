// Package benchround is the client module's copy of the main module's
// internal/benchround (a module cannot import another's internal packages).
//
// It runs benchmark subjects against their baselines in
// interleaved rounds, so that a noisy machine slows both alike, and reports
// each ratio as min/median/max over the rounds: one run's ratio can flip on
// a busy machine when the two are measured one after the other.
package benchround

import (
	"sort"
	"testing"
	"time"
)

// Run times each fn over n calls, all fns one after another in every one of
// rounds rounds, and returns ns per call: [round][fn].
func Run(rounds, n int, fns ...func()) [][]float64 {
	out := make([][]float64, rounds)
	for r := range out {
		out[r] = make([]float64, len(fns))
		for i, fn := range fns {
			t0 := time.Now()
			for range n {
				fn()
			}
			out[r][i] = float64(time.Since(t0).Nanoseconds()) / float64(n)
		}
	}
	return out
}

// Report reports fn i against fn base as name/min, name/median, name/max
// (ratios per round), and fn i's median ns per call as name-ns.
func Report(b *testing.B, ns [][]float64, i, base int, name string) {
	ratios := make([]float64, len(ns))
	abs := make([]float64, len(ns))
	for r := range ns {
		ratios[r], abs[r] = ns[r][i]/ns[r][base], ns[r][i]
	}
	Spread(b, ratios, name+"/")
	sort.Float64s(abs)
	b.ReportMetric(abs[len(abs)/2], name+"-ns")
}

// Spread reports the minimum, median and maximum of per-round values as
// prefix+"min", prefix+"median" and prefix+"max". It sorts vals.
func Spread(b *testing.B, vals []float64, prefix string) {
	sort.Float64s(vals)
	b.ReportMetric(vals[0], prefix+"min")
	b.ReportMetric(vals[len(vals)/2], prefix+"median")
	b.ReportMetric(vals[len(vals)-1], prefix+"max")
}

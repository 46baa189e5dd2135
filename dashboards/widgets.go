// Package dashboards defines the streamlens CloudWatch dashboard once, as
// widgets built from the metric definitions, and renders it as a Terraform
// JSON module. The demo's HTML preview renders the same widgets.
package dashboards

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/streamlens/streamlens/alarms"
	m "github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/slo"
)

// Series is one metric line: a statistic of a metric with the FunctionName
// dimension.
type Series struct {
	ID, Metric, Stat, Label string
	Hidden                  bool   // used only by an expression
	Namespace               string // "" the streamlens namespace; "AWS/Lambda" for Lambda's own metrics
	// Period, if set, is this series' own period in seconds (a burn rate
	// over 6 hours reads 6-hour sums), whatever the widget's.
	Period int
	// Unit, if set, is what this series counts where it is not the
	// widget's (streams on a widget of chunks).
	Unit string
}

// LambdaNamespace holds Lambda's own metrics, by FunctionName too.
const LambdaNamespace = "AWS/Lambda"

// Expr is a metric-math line over Series ids. Eval computes the same value in
// Go from the series' values, for the preview; the two are defined side by
// side so they cannot drift apart unnoticed.
type Expr struct {
	ID, Expression, Label string
	Eval                  func(series map[string]float64) float64
}

// Search is a SEARCH over a per-dimension metric, top N by a statistic, so new
// instruments (or init types) appear without editing the dashboard.
type Search struct {
	Metric, Dim, Stat string
	TopN              int // 0: all
}

// Threshold is a horizontal annotation whose value is a module variable.
type Threshold struct {
	Label   string
	Var     string  // Terraform variable holding the value; "" the fixed Default
	Default float64 // its default, used by the preview
	Scale   float64 // the annotation is Var × Scale (1 if 0)
}

// Widget is one dashboard widget.
type Widget struct {
	Title     string
	Single    bool // single value over the dashboard's time range
	Series    []Series
	Exprs     []Expr
	Searches  []Search
	Threshold *Threshold
	// Lines are more horizontal annotations at fixed values (the factors of
	// every burn-rate pair).
	Lines []Threshold
	Unit  string // y-axis label
	// Text, if set, makes a text widget (Markdown) and nothing else is used.
	Text string
	// Period, if set, is the widget's period in seconds (default 300).
	Period int
	// Range, if set, is the widget's own time range, whatever the
	// dashboard's: an SLO's budget is over the SLO's window, not the last
	// three hours.
	Range time.Duration
}

// sloIDs returns the series ids of an SLO's bad and total events, and of
// its excluded ones, with suffix (one widget's ids must be its own).
func sloIDs(s slo.Spec, suffix string) (bad, total string, ex []string) {
	return s.Name + "_bad" + suffix, s.Name + "_total" + suffix, s.ExcludeIDs(s.Name + suffix + "_")
}

// sloSeries are the hidden series an SLO's expressions read, over period
// seconds (0: the widget's).
func sloSeries(s slo.Spec, suffix string, period int) []Series {
	bad, total, ex := sloIDs(s, suffix)
	out := []Series{
		{ID: bad, Metric: s.SLI.Bad.Metric, Stat: s.SLI.Bad.Stat, Hidden: true, Period: period},
		{ID: total, Metric: s.SLI.Total.Metric, Stat: s.SLI.Total.Stat, Hidden: true, Period: period},
	}
	for i, id := range ex {
		out = append(out, Series{ID: id, Metric: s.SLI.Exclude[i].Metric, Stat: s.SLI.Exclude[i].Stat, Hidden: true, Period: period})
	}
	return out
}

// budgetExpr is the error budget left in %, in metric math: without IF,
// so that no events is no value (a division by zero, which CloudWatch
// drops), not the "100 %" that IF(total > 0, …, 0) made of it.
func budgetExpr(s slo.Spec, suffix string) string {
	bad, total, ex := sloIDs(s, suffix)
	b := strconv.FormatFloat(s.ErrorBudget(), 'g', -1, 64)
	if len(ex) == 0 {
		return fmt.Sprintf("100 * (1 - (%s / %s) / %s)", bad, total, b)
	}
	var fills []string
	for _, id := range ex {
		fills = append(fills, "FILL("+id+", 0)")
	}
	e := "(" + strings.Join(fills, " + ") + ")"
	return fmt.Sprintf("100 * (1 - ((%s - %s) / (%s - %s)) / %s)", bad, e, total, e, b)
}

// budgetEval is budgetExpr in Go: NaN (no data) without events.
func budgetEval(s slo.Spec, suffix string, v map[string]float64) float64 {
	bad, total, ex := sloIDs(s, suffix)
	e := 0.0
	for _, id := range ex {
		e += fill(v[id])
	}
	if math.IsNaN(v[total]) || v[total]-e <= 0 {
		return math.NaN()
	}
	return 100 * (1 - s.Burn(fill(v[bad]), v[total], e))
}

// sloWidgets are an SLO's burn chart and budget tile. The chart draws the
// burn rate over each alerting pair's long window (a series per window,
// read in periods of that window), with every pair's factor as a line; it
// spans a week, so that the 72 h line has points.
func sloWidgets(s slo.Spec) []Widget {
	burn := Widget{Title: fmt.Sprintf("SLO %s: error budget burn rate over the alert windows", s.Name), Unit: "×", Period: 3600,
		Range: 7 * 24 * time.Hour}
	seen := map[float64]bool{}
	for _, w := range s.Windows() {
		suffix := "_b" + durLabel(w.Long)
		burn.Series = append(burn.Series, sloSeries(s, suffix, int(w.Long/time.Second))...)
		burn.Exprs = append(burn.Exprs, Expr{ID: s.Name + "_burn_" + durLabel(w.Long), Label: "burn rate over " + durLabel(w.Long),
			Expression: burnExpr(s, suffix), Eval: func(v map[string]float64) float64 { return burnEval(s, suffix, v) }})
		if !seen[w.Factor] {
			seen[w.Factor] = true
			burn.Lines = append(burn.Lines, Threshold{Label: fmt.Sprintf("%s: %s over %g× and %s over %g×", w.Severity, durLabel(w.Long), w.Factor, durLabel(w.Short), w.ShortFactor), Default: w.Factor})
		}
	}
	budget := Widget{Title: fmt.Sprintf("SLO %s: error budget left (%d-day objective %.4g %%)", s.Name, s.WindowDays, 100*s.Objective),
		Single: true, Unit: "%", Range: time.Duration(s.WindowDays) * 24 * time.Hour,
		Series: sloSeries(s, "", 0),
		Exprs: []Expr{{ID: s.Name + "_budget", Label: "budget left % (no value: no events)", Expression: budgetExpr(s, ""),
			Eval: func(v map[string]float64) float64 { return budgetEval(s, "", v) }}}}
	return []Widget{burn, budget}
}

func durLabel(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/time.Minute)) + "m"
}

// burnExpr is the SLO's burn rate over a widget's period, in metric math.
func burnExpr(s slo.Spec, suffix string) string {
	bad, total, ex := sloIDs(s, suffix)
	return s.BurnExpression(bad, total, ex...)
}

// fill is FILL(x, 0): a series without data counts 0.
func fill(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}

func pct(x, n float64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return 100 * x / n
}

// burnEval is burnExpr computed in Go, for the preview: a series without
// data (NaN) counts 0, as FILL does.
func burnEval(s slo.Spec, suffix string, v map[string]float64) float64 {
	bad, total, ex := sloIDs(s, suffix)
	e := 0.0
	for _, id := range ex {
		e += fill(v[id])
	}
	return s.Burn(v[bad], v[total], e)
}

// Widgets is the dashboard, top to bottom: the SLOs first (what pages), then
// the signals behind them.
func Widgets(specs []slo.Spec) []Widget {
	var w []Widget
	for _, s := range specs {
		w = append(w, sloWidgets(s)...)
	}
	w = append(w, []Widget{
		{Title: "Business TTFB (handler start → first useful chunk)", Unit: "ms",
			Series: []Series{
				{ID: "p50", Metric: m.TimeToFirstByte, Stat: "p50", Label: "p50"},
				{ID: "p90", Metric: m.TimeToFirstByte, Stat: "p90", Label: "p90"},
				{ID: "p99", Metric: m.TimeToFirstByte, Stat: "p99", Label: "p99"},
			},
			Threshold: &Threshold{Label: "TTFB SLO threshold", Var: "ttfb_threshold_ms", Default: 100}},
		{Title: "Platform TTFB vs business TTFB (p99)", Unit: "ms",
			Series: []Series{
				{ID: "platform", Metric: m.ResponseLatency, Stat: "p99", Label: "platform responseLatency p99"},
				{ID: "business", Metric: m.TimeToFirstByte, Stat: "p99", Label: "business TTFB p99"},
			}},
		{Title: "Truncation rate (outcomes not ended complete)", Unit: "%",
			Series: []Series{
				{ID: "t", Metric: m.StreamTruncated, Stat: "Sum", Hidden: true},
				{ID: "n", Metric: m.StreamTruncated, Stat: "SampleCount", Hidden: true},
				{ID: "c", Metric: m.TruncationByCaller, Stat: "Sum", Hidden: true},
				{ID: "u", Metric: m.TruncationUnobserved, Stat: "Sum", Hidden: true},
				{ID: "f", Metric: m.FailedBeforeFirstByte, Stat: "Sum", Hidden: true},
			},
			Exprs: []Expr{
				{ID: "rate", Expression: "100 * " + alarms.TruncationRateExpression, Label: "truncated by the service %",
					Eval: func(v map[string]float64) float64 {
						c, u := fill(v["c"]), fill(v["u"])
						if v["n"]-c-u <= 0 {
							return 0
						}
						return 100 * (v["t"] - c - u) / (v["n"] - c - u)
					}},
				{ID: "callers", Expression: "100 * FILL(c, 0) / n", Label: "callers gone %",
					Eval: func(v map[string]float64) float64 { return pct(fill(v["c"]), v["n"]) }},
				{ID: "unjudged", Expression: "100 * FILL(u, 0) / n", Label: "not judged (open at spin-down) %",
					Eval: func(v map[string]float64) float64 { return pct(fill(v["u"]), v["n"]) }},
				{ID: "before", Expression: "100 * FILL(f, 0) / n", Label: "failed before any stream started %",
					Eval: func(v map[string]float64) float64 { return pct(fill(v["f"]), v["n"]) }},
			},
			Threshold: &Threshold{Label: "alarm", Var: "truncation_threshold_percent", Default: 1}},
		{Title: "Chunks missing from streams that announced their count", Unit: "chunks",
			Series: []Series{
				{ID: "missing", Metric: m.ChunksMissing, Stat: "Sum", Label: "missing (announced − delivered)"},
				{ID: "short", Metric: m.ChunksMissing, Stat: "SampleCount", Label: "streams that fell short", Unit: "streams"},
			}},
		{Title: "What the caller felt: time blocked writing (a slow caller) and the longest silences", Unit: "ms",
			Series: []Series{
				{ID: "blocked", Metric: m.WriteBlockedTime, Stat: "p99", Label: "blocked writing p99 (streams blocked ≥ 1 ms)"},
				{ID: "gap", Metric: m.LongestChunkGap, Stat: "Maximum", Label: "longest silence (streams silent ≥ 1 s)"},
			}},
		{Title: "Streams near limits: an idle cut, Lambda's 6 MB bandwidth cap, its 200 MiB limit", Unit: "streams",
			Series: []Series{
				{ID: "idle", Metric: m.IdleNearLimit, Stat: "Sum", Label: "silent ≥ 80 % of the idle limit"},
				{ID: "capped", Metric: m.BandwidthCapped, Stat: "Sum", Label: "past 6 MB (2 MiB/s)"},
				{ID: "limit", Metric: m.ResponseLimitReached, Stat: "Sum", Label: "at 200 MiB"},
			}},
		{Title: "Response delivery rate, responses of 1 MB or more (Lambda paces a stream past 6 MB at 2 MiB/s)", Unit: "bytes per second",
			Series: []Series{
				{ID: "rate50", Metric: m.ResponseThroughput, Stat: "p50", Label: "p50"},
				{ID: "rate10", Metric: m.ResponseThroughput, Stat: "p10", Label: "p10: the slowest tenth"},
			}},
		{Title: "Slowest instruments (ChunkInterval p99, top 10)", Unit: "ms",
			Searches: []Search{{Metric: m.ChunkInterval, Dim: m.DimInstrument, Stat: "p99", TopN: 10}}},
		{Title: "Per-chunk latency from stream start", Unit: "ms",
			Series: []Series{
				{ID: "cl50", Metric: m.ChunkLatency, Stat: "p50", Label: "p50"},
				{ID: "cl99", Metric: m.ChunkLatency, Stat: "p99", Label: "p99"},
			}},
		{Title: "Response duration (platform: runtimeDone responseDuration)", Unit: "ms",
			Series: []Series{
				{ID: "rd50", Metric: m.ResponseDuration, Stat: "p50", Label: "p50"},
				{ID: "rd99", Metric: m.ResponseDuration, Stat: "p99", Label: "p99"},
				{ID: "rdmax", Metric: m.ResponseDuration, Stat: "Maximum", Label: "max (a hang runs to the function timeout)"},
			}},
		// One unit an axis: milliseconds and a 0–1 share on one axis would
		// draw the share as a flat line at zero.
		{Title: "By function version: TTFB p99 (STREAMLENS_VERSION_DIMENSION=on)", Unit: "ms",
			Searches: []Search{{Metric: m.TimeToFirstByte, Dim: m.DimVersion, Stat: "p99"}}},
		{Title: "By function version: share of outcomes truncated (STREAMLENS_VERSION_DIMENSION=on)", Unit: "share (0–1)",
			Searches: []Search{{Metric: m.StreamTruncated, Dim: m.DimVersion, Stat: "Average"}}},
		{Title: "InitDuration by initialization type", Unit: "ms",
			Searches: []Search{{Metric: m.InitDuration, Dim: m.DimInitType, Stat: "Maximum"}}},
		{Title: "Cold starts by initialization type", Unit: "count",
			Searches: []Search{{Metric: m.ColdStart, Dim: m.DimInitType, Stat: "Sum"}}},
		{Title: "What streamlens costs each invocation", Unit: "ms",
			Series: []Series{
				{ID: "ovh50", Metric: m.ExtensionOverhead, Stat: "p50", Label: "after the runtime finished, p50 (billed: report − runtimeDone)"},
				{ID: "ovh99", Metric: m.ExtensionOverhead, Stat: "p99", Label: "after the runtime finished, p99"},
				{ID: "cpu50", Metric: m.ExtensionCPU, Stat: "p50", Label: "extension CPU, p50"},
				{ID: "cpu99", Metric: m.ExtensionCPU, Stat: "p99", Label: "extension CPU, p99"},
			}},
		{Title: "Lambda: traffic, errors, throttles, concurrency", Unit: "count",
			Series: []Series{
				{ID: "inv", Namespace: LambdaNamespace, Metric: "Invocations", Stat: "Sum", Label: "invocations"},
				{ID: "err", Namespace: LambdaNamespace, Metric: "Errors", Stat: "Sum", Label: "errors"},
				{ID: "thr", Namespace: LambdaNamespace, Metric: "Throttles", Stat: "Sum", Label: "throttles"},
				{ID: "conc", Namespace: LambdaNamespace, Metric: "ConcurrentExecutions", Stat: "Maximum", Label: "concurrent executions (max)"},
				{ID: "spill", Namespace: LambdaNamespace, Metric: "ProvisionedConcurrencySpilloverInvocations", Stat: "Sum", Label: "provisioned concurrency spillover"},
			}},
		{Title: "Dropped and malformed events", Unit: "events",
			Series: []Series{
				{ID: "dropped", Metric: m.DroppedEvents, Stat: "Sum", Label: "dropped (client + in transit)"},
				{ID: "malformed", Metric: m.MalformedEvents, Stat: "Sum", Label: "malformed (rejected by the extension)"},
			}},
		{Title: "Trace spans: what the sampler kept, and what the collector did not take", Unit: "spans",
			Series: []Series{
				{ID: "spfailed", Metric: m.SpansKeptFailed, Stat: "Sum", Label: "failed streams (always kept)"},
				{ID: "spsampled", Metric: m.SpansSampled, Stat: "Sum", Label: "healthy streams kept by the sampler"},
				{ID: "spout", Metric: m.SpansSampledOut, Stat: "Sum", Label: "healthy streams sampled out"},
				{ID: "spfail", Metric: m.SpanExportFailures, Stat: "Sum", Label: "export failures (lost)"},
			}},
	}...)
	w = append(w, Widget{Title: "Runbooks", Text: "## Runbooks\n" +
		"[Truncation rate](@@RUNBOOK@@/truncation-rate.md) · [TTFB p99](@@RUNBOOK@@/ttfb-p99.md) · " +
		"[SLO burn](@@RUNBOOK@@/slo-burn.md) · [On-demand init](@@RUNBOOK@@/on-demand-init.md) · " +
		"[Heartbeat](@@RUNBOOK@@/heartbeat.md) · [SLO metrics absent](@@RUNBOOK@@/slo-metrics-absent.md) · [Dropped events](@@RUNBOOK@@/dropped-events.md) · " +
		"[Configuration errors](@@RUNBOOK@@/config-errors.md) · [Instrument overflow](@@RUNBOOK@@/instrument-overflow.md) · " +
		"[Span export failures](@@RUNBOOK@@/span-export-failures.md)\n\n" +
		"Saved Logs Insights queries: *streamlens/<function>/…* (CloudWatch → Logs Insights → Saved queries)."})
	return w
}

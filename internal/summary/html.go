package summary

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
)

// HTML renders a self-contained dashboard preview (no scripts, no external
// assets) from a run's metrics, with the TTFB budget and the 0.1 % truncation
// line drawn where the CloudWatch dashboard draws them.
func HTML(s *Summary, ttfbBudgetMs float64) []byte {
	type widget struct {
		Title string
		Rows  [][2]string
		Bars  []bar
	}
	f := func(v float64, unit string) string {
		if math.IsNaN(v) {
			return "no data"
		}
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	ttfb := widget{Title: "Business TTFB (handler start → first useful chunk)", Rows: [][2]string{
		{"p50", f(Percentile(s.TTFB, 50), "ms")}, {"p90", f(Percentile(s.TTFB, 90), "ms")}, {"p99", f(Percentile(s.TTFB, 99), "ms")},
		{"budget", f(ttfbBudgetMs, "ms")}, {"streams over budget", fmt.Sprint(s.BudgetBreaches)}}}
	ttfb.Bars = bars([]float64{Percentile(s.TTFB, 50), Percentile(s.TTFB, 90), Percentile(s.TTFB, 99)}, []string{"p50", "p90", "p99"}, ttfbBudgetMs)
	platform := widget{Title: "Platform response latency vs business TTFB (p50)", Rows: [][2]string{
		{"platform p50", f(Percentile(s.ResponseLat, 50), "ms")}, {"business p50", f(Percentile(s.TTFB, 50), "ms")}}}
	trunc := widget{Title: "Truncation rate (alarm above 0.1 %)", Rows: [][2]string{
		{"rate", fmt.Sprintf("%.2f %%", 100*s.TruncationRate())}, {"truncated", fmt.Sprintf("%d of %d", s.Truncated, s.Streams)}}}
	for r, n := range s.TruncReasons {
		trunc.Rows = append(trunc.Rows, [2]string{"reason " + r, fmt.Sprint(n)})
	}
	chunks := widget{Title: "Chunks delivered vs expected", Rows: [][2]string{
		{"delivered", fmt.Sprintf("%.0f", s.Delivered)}, {"expected", fmt.Sprintf("%.0f", s.Expected)}}}
	slow := widget{Title: "Slowest instruments (ChunkInterval p99)"}
	for _, is := range s.SlowInstruments(10) {
		slow.Rows = append(slow.Rows, [2]string{is.Instrument, f(is.P99, "ms")})
	}
	inits := widget{Title: "InitDuration and cold starts by initialization type", Rows: [][2]string{{"cold starts", fmt.Sprintf("%d of %d invocations", s.ColdStarts, s.Invocations)}}}
	for t, v := range s.InitDurations {
		inits.Rows = append(inits.Rows, [2]string{t, fmt.Sprintf("%d inits, p50 %s", len(v), f(Percentile(v, 50), "ms"))})
	}
	health := widget{Title: "Dropped / malformed events", Rows: [][2]string{
		{"dropped", fmt.Sprintf("%.0f", s.Dropped)}, {"malformed", fmt.Sprintf("%.0f", s.Malformed)}, {"integrity mismatches", fmt.Sprint(s.IntegrityBad)}}}
	var buf bytes.Buffer
	_ = page.Execute(&buf, []widget{ttfb, platform, trunc, chunks, slow, inits, health})
	return buf.Bytes()
}

type bar struct {
	Label  string
	Width  float64
	Value  string
	Breach bool
	Budget float64 // x position of the budget line, percent
}

func bars(vals []float64, labels []string, budget float64) []bar {
	top := budget
	for _, v := range vals {
		if !math.IsNaN(v) {
			top = math.Max(top, v)
		}
	}
	top *= 1.1
	out := make([]bar, 0, len(vals))
	for i, v := range vals {
		if math.IsNaN(v) {
			continue
		}
		out = append(out, bar{Label: labels[i], Width: 100 * v / top, Value: fmt.Sprintf("%.1f ms", v), Breach: v > budget, Budget: 100 * budget / top})
	}
	return out
}

var page = template.Must(template.New("p").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>streamlens dashboard preview</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:2rem;color:#16191f}
h1{font-size:1.4rem}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1rem}
.w{background:#fff;border:1px solid #d5dbdb;border-radius:4px;padding:1rem}.w h2{font-size:1rem;margin:0 0 .6rem}
table{width:100%;border-collapse:collapse}td{padding:.2rem 0;border-bottom:1px solid #eee}td+td{text-align:right;font-variant-numeric:tabular-nums}
.bar{position:relative;height:1.3rem;background:#eef;margin:.3rem 0}.fill{height:100%;background:#0073bb}.fill.breach{background:#d13212}
.lbl{position:absolute;left:.3rem;top:.1rem;font-size:.8rem;color:#fff;mix-blend-mode:difference}.budget{position:absolute;top:-.2rem;bottom:-.2rem;border-left:2px dashed #d13212}
</style></head><body>
<h1>streamlens — dashboard preview (from this run's EMF)</h1>
<div class="grid">{{range .}}<div class="w"><h2>{{.Title}}</h2>
{{range .Bars}}<div class="bar"><div class="fill{{if .Breach}} breach{{end}}" style="width:{{printf "%.1f" .Width}}%"></div><span class="lbl">{{.Label}} {{.Value}}</span><div class="budget" style="left:{{printf "%.1f" .Budget}}%" title="SLO threshold"></div></div>{{end}}
<table>{{range .Rows}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table></div>{{end}}
</div></body></html>
`))

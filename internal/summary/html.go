package summary

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/streamlens/streamlens/dashboards"
	"github.com/streamlens/streamlens/slo"
)

type row struct {
	Label, Value string
	num          float64 // what Value shows; NaN: no data
	Width        float64 // bar width, percent of the widget's scale
	Breach       bool
}

func numRow(label string, v float64, unit string) row {
	return row{Label: label, Value: fmtVal(v, unit), num: v}
}

type card struct {
	Title     string
	Single    bool
	Rows      []row
	Threshold string
	LinePos   float64 // threshold line, percent of the scale; <0 none
	Chart     *chart  // a time series widget; nil for bars (SEARCH top N) and single values
	Text      template.HTML
}

var mdLink = regexp.MustCompile(`\[([^\]]+)\]\(([^)]+)\)`)

// markdown renders the little Markdown of a text widget: its links, its
// paragraphs; a heading line is dropped (the card has the title). Runbook
// links point at the repository's docs/runbooks.
func markdown(md string) template.HTML {
	var paras []string
	for _, p := range strings.Split(md, "\n\n") {
		var lines []string
		for _, l := range strings.Split(p, "\n") {
			if !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		text := template.HTMLEscapeString(strings.Join(lines, " "))
		text = strings.ReplaceAll(text, "@@RUNBOOK@@", "../docs/runbooks") // the page is out/dashboard.html
		text = mdLink.ReplaceAllString(text, `<a href="$2">$1</a>`)
		if text != "" {
			paras = append(paras, "<p>"+text+"</p>")
		}
	}
	return template.HTML(strings.Join(paras, ""))
}

// chart is a widget drawn as CloudWatch draws it: its series over the run's
// timeline, one point per period, with the threshold line.
type chart struct {
	Paths            []path
	ThY              float64 // threshold line's y; <0 none
	YTop, XEnd, Unit string
	W, H, L, Y0      float64 // geometry: width, height, left margin, the x axis's y
}

type path struct {
	Color, D, Label, Value string
	Dots                   []dot
}

type dot struct{ X, Y float64 }

// Chart geometry, in SVG user units.
const (
	chartW, chartH   = 360.0, 130.0
	chartL, chartB   = 16.0, 16.0 // left and bottom margins for the axes' labels
	chartPeriods     = 12
	chartTopHeadroom = 1.1
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"}

// timeSeries computes widget w period by period over the run and lays it
// out; rows are the whole-run values, shown in the legend.
func timeSeries(s *Summary, w dashboards.Widget, rows []row) *chart {
	n := chartPeriods
	per := map[string][]float64{}
	for _, se := range w.Series {
		b := s.Buckets(se.Metric, n)
		per[se.ID] = make([]float64, n)
		for i := range b {
			per[se.ID][i] = Stat(b[i], se.Stat)
		}
	}
	type line struct {
		label string
		vals  []float64
	}
	var lines []line
	for _, se := range w.Series {
		if !se.Hidden {
			lines = append(lines, line{se.Label, per[se.ID]})
		}
	}
	for _, e := range w.Exprs {
		vals := make([]float64, n)
		for i := range vals {
			at := map[string]float64{}
			for id, v := range per {
				at[id] = v[i]
			}
			vals[i] = e.Eval(at)
		}
		lines = append(lines, line{e.Label, vals})
	}
	top := 0.0
	th := math.NaN()
	if w.Threshold != nil {
		th = w.Threshold.Default
		top = th
	}
	for _, l := range lines {
		for _, v := range l.vals {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = math.Max(top, v)
			}
		}
	}
	if top <= 0 {
		top = 1
	}
	top *= chartTopHeadroom
	plotW, plotH := chartW-chartL, chartH-chartB
	y := func(v float64) float64 { return plotH - plotH*v/top }
	c := &chart{ThY: -1, YTop: fmtVal(top, w.Unit), XEnd: fmt.Sprintf("%.0f s", s.To.Sub(s.From).Seconds()), Unit: w.Unit,
		W: chartW, H: chartH, L: chartL, Y0: plotH}
	if !math.IsNaN(th) {
		c.ThY = y(th)
	}
	for i, l := range lines {
		p := path{Color: palette[i%len(palette)], Label: l.label}
		if i < len(rows) {
			p.Value = rows[i].Value
		}
		var d []string
		pen := "M"
		for k, v := range l.vals {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				pen = "M" // a gap: no data in this period
				continue
			}
			x := chartL + (float64(k)+0.5)*plotW/float64(n)
			d = append(d, fmt.Sprintf("%s%.1f %.1f", pen, x, y(v)))
			p.Dots = append(p.Dots, dot{x, y(v)})
			pen = "L"
		}
		p.D = strings.Join(d, " ")
		c.Paths = append(c.Paths, p)
	}
	return c
}

// HTML renders the dashboard's widgets (dashboards.Widgets: same titles,
// statistics and thresholds as the CloudWatch dashboard) from a run's
// metrics, as one self-contained page without scripts or external assets.
//
// Time-series widgets are drawn over the run's timeline in chartPeriods
// periods; a SEARCH (top N) widget as bars; wf, if not nil, is one stream's
// span as a waterfall.
func HTML(s *Summary, specs []slo.Spec, wf *Waterfall) []byte {
	var cards []card
	for _, w := range dashboards.Widgets(specs) {
		c := card{Title: w.Title, Single: w.Single, LinePos: -1}
		if w.Text != "" {
			c.Text = markdown(w.Text)
			cards = append(cards, c)
			continue
		}
		vals := map[string]float64{}
		for _, se := range w.Series {
			vals[se.ID] = Stat(s.Values[se.Metric], se.Stat)
			if !se.Hidden {
				unit := w.Unit
				if se.Unit != "" {
					unit = se.Unit
				}
				c.Rows = append(c.Rows, numRow(se.Label, vals[se.ID], unit))
			}
		}
		for _, e := range w.Exprs {
			vals[e.ID] = e.Eval(vals)
			c.Rows = append(c.Rows, numRow(e.Label, vals[e.ID], w.Unit))
		}
		for _, se := range w.Searches {
			type kv struct {
				k string
				v float64
			}
			var all []kv
			for dv, v := range s.ByDim[se.Dim+"/"+se.Metric] {
				all = append(all, kv{dv, Stat(v, se.Stat)})
			}
			sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || (all[i].v == all[j].v && all[i].k < all[j].k) })
			if se.TopN > 0 && len(all) > se.TopN {
				all = all[:se.TopN]
			}
			for _, x := range all {
				c.Rows = append(c.Rows, numRow(x.k+" ("+se.Stat+")", x.v, w.Unit))
			}
			if len(all) == 0 {
				c.Rows = append(c.Rows, row{Label: "no data", num: math.NaN()})
			}
		}
		if len(w.Searches) == 0 && !w.Single {
			c.Chart = timeSeries(s, w, c.Rows)
			if w.Threshold != nil {
				c.Threshold = fmt.Sprintf("%s: %s", w.Threshold.Label, fmtVal(w.Threshold.Default, w.Unit))
			}
			cards = append(cards, c)
			continue
		}
		// Bars on one scale per widget (a SEARCH's top N), with the
		// threshold line on it.
		top := 0.0
		var th float64 = math.NaN()
		if w.Threshold != nil {
			th = w.Threshold.Default
			top = th
			c.Threshold = fmt.Sprintf("%s: %s", w.Threshold.Label, fmtVal(th, w.Unit))
		}
		for _, r := range c.Rows {
			if !math.IsNaN(r.num) { // one row without data must not blank the scale
				top = math.Max(top, r.num)
			}
		}
		if top > 0 && !w.Single {
			for i, r := range c.Rows {
				if !math.IsNaN(r.num) {
					c.Rows[i].Width = 100 * r.num / (top * 1.1)
					c.Rows[i].Breach = !math.IsNaN(th) && r.num > th
				}
			}
			if !math.IsNaN(th) {
				c.LinePos = 100 * th / (top * 1.1)
			}
		}
		cards = append(cards, c)
	}
	var buf bytes.Buffer
	_ = page.Execute(&buf, map[string]any{"Cards": cards, "Streams": s.Streams(), "Truncated": s.Truncated(),
		"Seconds": fmt.Sprintf("%.0f", s.To.Sub(s.From).Seconds()), "Periods": chartPeriods, "Waterfall": wf})
	return buf.Bytes()
}

// Waterfall is one stream's span, drawn under the widgets: when each chunk
// came, and when the caller stopped waiting.
type Waterfall struct {
	Title  string
	Total  time.Duration
	Events []WaterfallEvent
	End    string // what ended it
}

// WaterfallEvent is one span event.
type WaterfallEvent struct {
	Label string
	At    time.Duration
}

// Pct is where at falls on the waterfall, in percent.
func (w *Waterfall) Pct(at time.Duration) float64 {
	if w.Total <= 0 {
		return 0
	}
	return math.Min(100, 100*float64(at)/float64(w.Total))
}

// Ms formats a duration in milliseconds.
func (w *Waterfall) Ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func fmtVal(v float64, unit string) string {
	if math.IsNaN(v) {
		return "no data"
	}
	if unit == "%" {
		return fmt.Sprintf("%.2f %%", v)
	}
	return fmt.Sprintf("%.4g %s", v, unit)
}

var page = template.Must(template.New("p").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>streamlens dashboard preview</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:2rem;color:#16191f}
h1{font-size:1.4rem}p{color:#545b64}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1rem}
.w{background:#fff;border:1px solid #d5dbdb;border-radius:4px;padding:1rem}.w h2{font-size:1rem;margin:0 0 .6rem}
.r{display:grid;grid-template-columns:11rem 1fr 6.5rem;gap:.5rem;align-items:center;margin:.25rem 0;font-size:.9rem}
.v{text-align:right;font-variant-numeric:tabular-nums}.big{font-size:2rem;text-align:center;margin:.5rem}
.bar{position:relative;height:1rem;background:#eef2f5}.fill{height:100%;background:#0073bb}.fill.breach{background:#d13212}
.line{position:absolute;top:-.25rem;bottom:-.25rem;border-left:2px dashed #d13212}.th{font-size:.8rem;color:#d13212;margin-top:.4rem}
.chart .axis{stroke:#879596;stroke-width:1}.chart .lab{font-size:9px;fill:#545b64}.chart .thl{stroke:#d13212;stroke-width:1.5;stroke-dasharray:5 4}
.chart .series{fill:none;stroke-width:1.8}.lg{display:grid;grid-template-columns:1rem 1fr 6.5rem;gap:.4rem;align-items:center;font-size:.85rem}
.sw{width:.8rem;height:.8rem;border-radius:2px}.wf{margin-top:1rem}.tick{position:absolute;top:0;bottom:0;border-left:3px solid #0073bb}
</style></head><body>
<h1>streamlens — dashboard preview</h1>
<p>The widgets of the CloudWatch dashboard (dashboards/dashboard.tf.json), computed from this run's EMF: {{.Streams}} streams, {{.Truncated}} truncated, over {{.Seconds}} s drawn as {{.Periods}} periods (CloudWatch's would be minutes); the legend gives each series' value over the whole run.</p>
<div class="grid">{{range .Cards}}<div class="w"><h2>{{.Title}}</h2>
{{if .Text}}{{.Text}}
{{else if .Single}}{{range .Rows}}<div class="big">{{.Value}}</div><div style="text-align:center">{{.Label}}</div>{{end}}
{{else if .Chart}}{{with .Chart}}<svg class="chart" viewBox="0 0 {{.W}} {{.H}}" width="100%" role="img">
<line x1="{{.L}}" y1="{{.Y0}}" x2="{{.W}}" y2="{{.Y0}}" class="axis"/><line x1="{{.L}}" y1="0" x2="{{.L}}" y2="{{.Y0}}" class="axis"/>
<text x="{{.L}}" y="8" dx="3" class="lab">{{.YTop}}</text><text x="{{.L}}" y="{{.Y0}}" dx="-3" class="lab" text-anchor="end">0</text>
<text x="{{.L}}" y="{{.H}}" dy="-3" class="lab">0 s</text><text x="{{.W}}" y="{{.H}}" dx="-2" dy="-3" class="lab" text-anchor="end">{{.XEnd}}</text>
{{if ge .ThY 0.0}}<line x1="{{.L}}" x2="{{.W}}" y1="{{printf "%.1f" .ThY}}" y2="{{printf "%.1f" .ThY}}" class="thl"/>{{end}}
{{range .Paths}}<path class="series" d="{{.D}}" stroke="{{.Color}}"/>{{$c := .Color}}{{range .Dots}}<circle class="pt" cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="2.2" fill="{{$c}}"/>{{end}}{{end}}
</svg>
{{range .Paths}}<div class="lg"><span class="sw" style="background:{{.Color}}"></span><span>{{.Label}}</span><span class="v">{{.Value}}</span></div>{{end}}{{end}}
{{else}}{{$line := .LinePos}}{{range .Rows}}<div class="r"><span>{{.Label}}</span><div class="bar"><div class="fill{{if .Breach}} breach{{end}}" style="width:{{printf "%.1f" .Width}}%"></div>{{if ge $line 0.0}}<div class="line" style="left:{{printf "%.1f" $line}}%"></div>{{end}}</div><span class="v">{{.Value}}</span></div>{{end}}{{end}}
{{if .Threshold}}<div class="th">– – {{.Threshold}}</div>{{end}}</div>{{end}}
</div>
{{with .Waterfall}}<div class="w wf"><h2>{{.Title}}</h2>
<div class="r"><span>stream</span><div class="bar"><div class="fill breach" style="width:100%"></div></div><span class="v">{{.Ms .Total}}</span></div>
{{$w := .}}{{range .Events}}<div class="r"><span>{{.Label}}</span><div class="bar"><div class="tick" style="left:{{printf "%.2f" ($w.Pct .At)}}%"></div></div><span class="v">{{$w.Ms .At}}</span></div>{{end}}
<div class="th">{{.End}}</div></div>{{end}}
</div></body></html>
`))

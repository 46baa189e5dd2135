package summary

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"sort"

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
}

// HTML renders the dashboard's widgets (dashboards.Widgets: same titles,
// statistics and thresholds as the CloudWatch dashboard) from a run's
// metrics, as one self-contained page without scripts or external assets.
func HTML(s *Summary, specs []slo.Spec) []byte {
	var cards []card
	for _, w := range dashboards.Widgets(specs) {
		c := card{Title: w.Title, Single: w.Single, LinePos: -1}
		vals := map[string]float64{}
		for _, se := range w.Series {
			vals[se.ID] = Stat(s.Values[se.Metric], se.Stat)
			if !se.Hidden {
				c.Rows = append(c.Rows, numRow(se.Label, vals[se.ID], w.Unit))
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
		// Bars on one scale per widget, with the threshold line on it.
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
	_ = page.Execute(&buf, map[string]any{"Cards": cards, "Streams": s.Streams(), "Truncated": s.Truncated()})
	return buf.Bytes()
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
</style></head><body>
<h1>streamlens — dashboard preview</h1>
<p>The widgets of the CloudWatch dashboard (dashboards/dashboard.tf.json), computed from this run's EMF: {{.Streams}} streams, {{.Truncated}} truncated.</p>
<div class="grid">{{range .Cards}}<div class="w"><h2>{{.Title}}</h2>
{{if .Single}}{{range .Rows}}<div class="big">{{.Value}}</div><div style="text-align:center">{{.Label}}</div>{{end}}
{{else}}{{$line := .LinePos}}{{range .Rows}}<div class="r"><span>{{.Label}}</span><div class="bar"><div class="fill{{if .Breach}} breach{{end}}" style="width:{{printf "%.1f" .Width}}%"></div>{{if ge $line 0.0}}<div class="line" style="left:{{printf "%.1f" $line}}%"></div>{{end}}</div><span class="v">{{.Value}}</span></div>{{end}}{{end}}
{{if .Threshold}}<div class="th">– – {{.Threshold}}</div>{{end}}</div>{{end}}
</div></body></html>
`))

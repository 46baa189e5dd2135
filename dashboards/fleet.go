package dashboards

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

// FleetWidget is one widget of the fleet dashboard: one metric statistic
// for every function that writes streamlens metrics (a SEARCH over the
// FunctionName dimension, so a new function appears by itself), the worst
// TopN first.
type FleetWidget struct {
	Title, Metric, Stat, Unit string
	Scale                     float64 // the series are multiplied by it (100: a rate in %); 0 means 1
	TopN                      int
}

// FleetWidgets is the fleet dashboard, top to bottom: where to look first
// when many functions stream.
func FleetWidgets() []FleetWidget {
	return []FleetWidget{
		{Title: "Truncation rate by function (%)", Metric: m.StreamTruncated, Stat: "Average", Unit: "%", Scale: 100, TopN: 20},
		{Title: "Business TTFB p99 by function", Metric: m.TimeToFirstByte, Stat: "p99", Unit: "ms", TopN: 20},
		{Title: "Streams by function", Metric: m.StreamTruncated, Stat: "SampleCount", Unit: "streams", TopN: 20},
		{Title: "TTFB over the threshold by function", Metric: m.TTFBBudgetBreach, Stat: "Sum", Unit: "streams", TopN: 20},
		{Title: "Dropped events by function", Metric: m.DroppedEvents, Stat: "Sum", Unit: "events", TopN: 20},
		{Title: "streamlens CPU per invocation, p99, by function", Metric: m.ExtensionCPU, Stat: "p99", Unit: "ms", TopN: 20},
		{Title: "Span export failures by function", Metric: m.SpanExportFailures, Stat: "Sum", Unit: "spans", TopN: 20},
		{Title: "Configuration errors by function", Metric: m.ConfigErrors, Stat: "Sum", Unit: "values", TopN: 20},
	}
}

// FleetBody is the fleet dashboard's body, with Terraform interpolations for
// the namespace and the region.
func FleetBody() (string, error) {
	var widgets []any
	for i, w := range FleetWidgets() {
		search := fmt.Sprintf(`SEARCH('{%s,%s} MetricName="%s"', '%s', 300)`, phNamespace, m.DimFunctionName, w.Metric, w.Stat)
		expr := fmt.Sprintf("SORT(%s, MAX, DESC, %d)", search, w.TopN)
		if w.Scale != 0 && w.Scale != 1 {
			expr = fmt.Sprintf("SORT(%g * %s, MAX, DESC, %d)", w.Scale, search, w.TopN)
		}
		widgets = append(widgets, map[string]any{"type": "metric", "x": (i % 2) * 12, "y": (i / 2) * 6, "width": 12, "height": 6,
			"properties": map[string]any{"title": w.Title, "region": phRegion, "view": "timeSeries", "stacked": false, "period": 300,
				"metrics": []any{[]any{map[string]any{"id": "e1", "expression": expr,
					"label": tfjson.Literal("${PROP('Dim." + m.DimFunctionName + "')}")}}},
				"yAxis": map[string]any{"left": map[string]any{"min": 0, "label": w.Unit, "showUnits": false}}}})
	}
	b, err := json.Marshal(map[string]any{"widgets": widgets})
	if err != nil {
		return "", err
	}
	return strings.NewReplacer(phNamespace, "${var.namespace}", phRegion, "${var.region}").Replace(string(b)), nil
}

// FleetModule is the Terraform JSON module of the fleet dashboard: every
// function of the account and region that writes to the namespace.
func FleetModule() (map[string]any, error) {
	body, err := FleetBody()
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"terraform": tfjson.Providers(),
		"variable": map[string]any{
			"namespace":      tfjson.Var("string", "CloudWatch namespace of the streamlens metrics", m.DefaultNamespace),
			"region":         tfjson.Var("string", "region the dashboard's widgets read from", nil),
			"dashboard_name": tfjson.Var("string", "dashboard name", "streamlens-fleet"),
		},
		"resource": map[string]any{"aws_cloudwatch_dashboard": map[string]any{"fleet": map[string]any{
			"dashboard_name": "${var.dashboard_name}",
			"dashboard_body": body,
		}}},
		"output": map[string]any{"dashboard_arn": map[string]any{"value": "${aws_cloudwatch_dashboard.fleet.dashboard_arn}"}},
	}, nil
}

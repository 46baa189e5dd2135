package dashboards

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

// FleetWidget is one widget of the fleet dashboard: one metric for every
// function that writes streamlens metrics, as a CloudWatch Metrics Insights
// query grouped by function, the TopN most first. A query reads up to 10,000
// metrics (SEARCH: 500 series, silently), and its ORDER BY sorts all of them
// before the limit: a fleet past 500 functions is ranked whole. Ranks are by
// volume — how many bad outcomes, not which rate is worst — so that one bad
// stream of an idle function does not crowd out a busy function's incident.
type FleetWidget struct {
	Title, Metric, Unit string
	Func                string // SUM, AVG, MAX or COUNT (Metrics Insights)
	TopN                int
}

// FleetWidgets is the fleet dashboard, top to bottom: where to look first
// when many functions stream.
func FleetWidgets() []FleetWidget {
	return []FleetWidget{
		{Title: "Outcomes truncated by the service, by function (what the completeness SLO counts bad)", Metric: m.TruncatedByService, Func: "SUM", Unit: "outcomes", TopN: 20},
		{Title: "Invocations that failed before any stream started, by function", Metric: m.FailedBeforeFirstByte, Func: "SUM", Unit: "invocations", TopN: 20},
		{Title: "Outcomes over the TTFB budget by function", Metric: m.TTFBBudgetBreach, Func: "SUM", Unit: "outcomes", TopN: 20},
		{Title: "Truncations by callers gone (no SLO counts them), by function", Metric: m.TruncationByCaller, Func: "SUM", Unit: "streams", TopN: 20},
		{Title: "Outcomes by function", Metric: m.StreamTruncated, Func: "COUNT", Unit: "outcomes", TopN: 20},
		{Title: "Streams near an idle cut, by function", Metric: m.IdleNearLimit, Func: "SUM", Unit: "streams", TopN: 20},
		{Title: "Dropped events by function", Metric: m.DroppedEvents, Func: "SUM", Unit: "events", TopN: 20},
		{Title: "streamlens CPU per invocation (average) by function", Metric: m.ExtensionCPU, Func: "AVG", Unit: "ms", TopN: 20},
		{Title: "Span export failures by function", Metric: m.SpanExportFailures, Func: "SUM", Unit: "spans", TopN: 20},
		{Title: "Configuration errors by function", Metric: m.ConfigErrors, Func: "SUM", Unit: "values", TopN: 20},
	}
}

// FleetQuery is widget w's Metrics Insights query over namespace ns.
func FleetQuery(w FleetWidget, ns string) string {
	return fmt.Sprintf(`SELECT %s(%s) FROM SCHEMA("%s", %s) GROUP BY %s ORDER BY %s() DESC LIMIT %d`,
		w.Func, w.Metric, ns, m.DimFunctionName, m.DimFunctionName, w.Func, w.TopN)
}

// FleetBody is the fleet dashboard's body, with Terraform interpolations for
// the namespace and the region.
func FleetBody() (string, error) {
	var widgets []any
	for i, w := range FleetWidgets() {
		widgets = append(widgets, map[string]any{"type": "metric", "x": (i % 2) * 12, "y": (i / 2) * 6, "width": 12, "height": 6,
			"properties": map[string]any{"title": w.Title, "region": phRegion, "view": "timeSeries", "stacked": false, "period": 300,
				"metrics": []any{[]any{map[string]any{"id": "q1", "expression": FleetQuery(w, phNamespace)}}},
				"yAxis":   map[string]any{"left": map[string]any{"min": 0, "label": w.Unit, "showUnits": false}}}})
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
			"alarm_arns": tfjson.Var("list(string)",
				"alarms whose state the dashboard shows at its top (every function's alarms and SLO composites); none: no alarm widget", []any{}),
		},
		"locals": map[string]any{"body": body},
		"resource": map[string]any{"aws_cloudwatch_dashboard": map[string]any{"fleet": map[string]any{
			"dashboard_name": "${var.dashboard_name}",
			// As on the per-function dashboard: the alarm-status widget
			// exists only with alarms to show, above the generated widgets.
			"dashboard_body": `${jsonencode({widgets = concat(length(var.alarm_arns) == 0 ? [] : [{type = "alarm", x = 0, y = 0, width = 24, height = 3, ` +
				`properties = {title = "Alarms", alarms = var.alarm_arns, sortBy = "stateUpdatedTimestamp", states = ["ALARM", "INSUFFICIENT_DATA", "OK"]}}], ` +
				`[for w in jsondecode(local.body).widgets : merge(w, {y = w.y + (length(var.alarm_arns) == 0 ? 0 : 3)})])})}`,
		}}},
		"output": map[string]any{"dashboard_arn": map[string]any{"value": "${aws_cloudwatch_dashboard.fleet.dashboard_arn}"}},
	}, nil
}

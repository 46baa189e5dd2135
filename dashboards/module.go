package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/slo"
)

// Placeholders for Terraform variables inside the dashboard body. The body is a
// JSON string; Terraform interpolates ${...} in it, and a number placeholder
// must end up unquoted.
const (
	phNamespace = "@@NAMESPACE@@"
	phFunction  = "@@FUNCTION@@"
	phRegion    = "@@REGION@@"
)

func numPlaceholder(v string) string { return "@@NUM:" + v + "@@" }

// Body is the dashboard body as CloudWatch expects it, with Terraform
// interpolations for namespace, function, region and thresholds.
func Body(specs []slo.Spec) (string, error) {
	var widgets []any
	for i, w := range Widgets(specs) {
		x, y := (i%2)*12, (i/2)*6
		if w.Text != "" {
			widgets = append(widgets, map[string]any{"type": "text", "x": x, "y": y, "width": 12, "height": 6,
				"properties": map[string]any{"markdown": w.Text}})
			continue
		}
		var rows []any
		for _, s := range w.Series {
			opts := map[string]any{"id": s.ID, "stat": s.Stat}
			if s.Label != "" {
				opts["label"] = s.Label
			}
			if s.Hidden {
				opts["visible"] = false
			}
			if s.Period > 0 {
				opts["period"] = s.Period
			}
			ns := phNamespace
			if s.Namespace != "" {
				ns = s.Namespace
			}
			rows = append(rows, []any{ns, s.Metric, m.DimFunctionName, phFunction, opts})
		}
		for _, e := range w.Exprs {
			rows = append(rows, []any{map[string]any{"id": e.ID, "expression": e.Expression, "label": e.Label}})
		}
		for j, s := range w.Searches {
			search := fmt.Sprintf(`SEARCH('{%s,%s,%s} MetricName="%s" %s="%s"', '%s', 300)`,
				phNamespace, m.DimFunctionName, s.Dim, s.Metric, m.DimFunctionName, phFunction, s.Stat)
			if s.TopN > 0 {
				search = fmt.Sprintf("SORT(%s, MAX, DESC, %d)", search, s.TopN)
			}
			// ${PROP(...)} is CloudWatch's dynamic label, not Terraform's.
			rows = append(rows, []any{map[string]any{"id": fmt.Sprintf("s%d", j), "expression": search,
				"label": tfjson.Literal("${PROP('Dim." + s.Dim + "')}")}})
		}
		props := map[string]any{"title": w.Title, "region": phRegion, "metrics": rows, "period": 300,
			"view": "timeSeries", "stacked": false}
		if w.Period > 0 {
			props["period"] = w.Period
		}
		if w.Range > 0 {
			// No "end": CloudWatch wants an absolute ISO 8601 time there,
			// and without one the range ends now.
			props["start"] = fmt.Sprintf("-PT%dH", int(w.Range/time.Hour))
		}
		if w.Single {
			props["view"] = "singleValue"
			props["setPeriodToTimeRange"] = true
		} else {
			props["yAxis"] = map[string]any{"left": map[string]any{"min": 0, "label": w.Unit, "showUnits": false}}
		}
		var lines []any
		if t := w.Threshold; t != nil {
			var v any = t.Default
			if t.Var != "" {
				v = numPlaceholder(t.Var)
			}
			lines = append(lines, map[string]any{"label": t.Label, "value": v})
		}
		for _, l := range w.Lines {
			lines = append(lines, map[string]any{"label": l.Label, "value": l.Default})
		}
		if len(lines) > 0 {
			props["annotations"] = map[string]any{"horizontal": lines}
		}
		widgets = append(widgets, map[string]any{"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": props})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "total > 0" readable in the console
	if err := enc.Encode(map[string]any{"widgets": widgets}); err != nil {
		return "", err
	}
	body := strings.TrimSpace(buf.String())
	r := strings.NewReplacer(phNamespace, "${var.namespace}", phFunction, "${var.function_name}", phRegion, "${var.region}",
		"@@RUNBOOK@@", "${local.runbook}")
	body = r.Replace(body)
	for _, w := range Widgets(specs) {
		if t := w.Threshold; t != nil && t.Var != "" {
			body = strings.ReplaceAll(body, `"`+numPlaceholder(t.Var)+`"`, "${var."+t.Var+"}")
		}
	}
	return body, nil
}

// Module is the Terraform JSON module with the dashboard.
func Module(specs []slo.Spec) (map[string]any, error) {
	body, err := Body(specs)
	if err != nil {
		return nil, err
	}
	vars := tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), tfjson.RunbookVars(), map[string]any{
		"region":         tfjson.Var("string", "region the dashboard's widgets read from", nil),
		"dashboard_name": tfjson.Var("string", "dashboard name; empty means streamlens-<function_name>", ""),
		"alarm_arns": tfjson.Var("list(string)",
			"alarms whose state the dashboard shows at its top (the alarms module's alarm_arns and the slo module's composite_alarm_arns); none: no alarm widget", []any{}),
	})
	for _, w := range Widgets(specs) {
		if t := w.Threshold; t != nil && t.Var != "" {
			vars[t.Var] = tfjson.Var("number", t.Label+" drawn on \""+w.Title+"\"", t.Default)
		}
	}
	locals := tfjson.RunbookLocals()
	locals["body"] = body
	return map[string]any{
		"terraform": tfjson.Providers(),
		"locals":    locals,
		"variable":  vars,
		"resource": map[string]any{"aws_cloudwatch_dashboard": map[string]any{"streamlens": map[string]any{
			"dashboard_name": `${var.dashboard_name != "" ? var.dashboard_name : "streamlens-${var.function_name}"}`,
			// The alarm-status widget exists only with alarms to show (an
			// alarm widget without alarms is refused), so it is added here,
			// in Terraform, above the widgets of the generated body.
			"dashboard_body": `${jsonencode({widgets = concat(length(var.alarm_arns) == 0 ? [] : [{type = "alarm", x = 0, y = 0, width = 24, height = 3, ` +
				`properties = {title = "Alarms", alarms = var.alarm_arns, sortBy = "stateUpdatedTimestamp", states = ["ALARM", "INSUFFICIENT_DATA", "OK"]}}], ` +
				`[for w in jsondecode(local.body).widgets : merge(w, {y = w.y + (length(var.alarm_arns) == 0 ? 0 : 3)})])})}`,
		}}},
		"output": map[string]any{"dashboard_arn": map[string]any{"value": "${aws_cloudwatch_dashboard.streamlens.dashboard_arn}"}},
	}, nil
}

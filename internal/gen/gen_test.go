package gen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/streamlens/streamlens/alarms"
	"github.com/streamlens/streamlens/dashboards"
	"github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/slo"
)

func specs(t *testing.T) []slo.Spec {
	s, err := slo.Load("../../slo/slos.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The committed modules are exactly what the generator writes today.
func TestCommittedFilesAreGenerated(t *testing.T) {
	files, err := Files(specs(t))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join("../..", path))
		if err != nil {
			t.Fatalf("%s: %v (run make generate)", path, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run make generate and commit", path)
		}
	}
}

var tfVar = regexp.MustCompile(`\$\{var\.([a-z_]+)\}`)

// interpolate does what Terraform does to the body string, with sample values.
func interpolate(s string) string {
	s = tfVar.ReplaceAllStringFunc(s, func(m string) string {
		switch tfVar.FindStringSubmatch(m)[1] {
		case "namespace":
			return "Streamlens"
		case "function_name":
			return "pricing"
		case "region":
			return "eu-west-1"
		}
		return "0.1"
	})
	return strings.ReplaceAll(s, "$${", "${")
}

func TestDashboardBody(t *testing.T) {
	body, err := dashboards.Body(specs(t))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Widgets []struct {
			Properties struct {
				Title       string  `json:"title"`
				Metrics     [][]any `json:"metrics"`
				Annotations struct {
					Horizontal []struct {
						Value float64 `json:"value"`
					} `json:"horizontal"`
				} `json:"annotations"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(interpolate(body)), &dash); err != nil {
		t.Fatalf("body is not JSON after interpolation: %v", err)
	}
	known := map[string]bool{}
	for _, d := range metrics.Defs() {
		known[d.Name] = true
	}
	titles := map[string]bool{}
	for _, w := range dash.Widgets {
		titles[w.Properties.Title] = true
		for _, row := range w.Properties.Metrics {
			if len(row) == 5 && row[0] != dashboards.LambdaNamespace { // Lambda's own metrics are Lambda's names
				if name, _ := row[1].(string); !known[name] {
					t.Errorf("widget %q uses unknown metric %q", w.Properties.Title, name)
				}
			}
			if e, ok := row[0].(map[string]any); ok && strings.Contains(e["expression"].(string), "SEARCH") {
				if l := e["label"]; l != "${PROP('Dim.Instrument')}" && l != "${PROP('Dim.InitType')}" && l != "${PROP('Dim.Version')}" {
					t.Errorf("SEARCH label %v: CloudWatch's ${PROP()} must survive Terraform", e["label"])
				}
			}
		}
	}
	for _, want := range []string{"Business TTFB (handler start → first useful chunk)", "Truncation rate (outcomes not ended complete)",
		"Slowest instruments (ChunkInterval p99, top 10)", "InitDuration by initialization type", "SLO ttfb: error budget left (28-day objective 99 %)",
		"What streamlens costs each invocation"} {
		if !titles[want] {
			t.Errorf("no widget %q", want)
		}
	}
	if !strings.Contains(body, `"value":${var.ttfb_threshold_ms}`) {
		t.Error("TTFB threshold annotation is not the (unquoted) module variable")
	}
	// The error budget tiles are over the SLO's 28 days, not the
	// dashboard's range.
	if strings.Count(body, `"start":"-PT672H"`) != 2 {
		t.Error("the SLO budget tiles do not span their 28-day window")
	}
}

func TestSLOModule(t *testing.T) {
	mod := slo.Module(specs(t))
	res := mod["resource"].(map[string]any)
	alarms := res["aws_cloudwatch_metric_alarm"].(map[string]any)
	comps := res["aws_cloudwatch_composite_alarm"].(map[string]any)
	// 2 SLOs × 4 window pairs × 2 windows; 2 SLOs × (page, ticket).
	if len(alarms) != 16 || len(comps) != 4 {
		t.Fatalf("%d alarms, %d composites", len(alarms), len(comps))
	}
	// The slos.json SLOs are over 28 days: the factors spend 2 %, 5 %, 10 %
	// and 10 % of a 28-day budget (13.44, 5.6, 2.8, 0.933), not the
	// workbook's 30-day 14.4, 6, 3, 1.
	a := alarms["ttfb_burn_1h_13_44x"].(map[string]any)
	q := a["metric_query"].([]any)
	if a["threshold"] != 13.44 || q[0].(map[string]any)["metric"].(map[string]any)["period"] != 3600 ||
		q[2].(map[string]any)["expression"] != "IF(total > 0, (bad / total) / 0.01, 0)" {
		t.Errorf("1h alarm %v", a)
	}
	page := comps["completeness_page"].(map[string]any)["alarm_rule"].(string)
	// ALARM("name"): the documented form, the name quoted.
	want := `(ALARM("${aws_cloudwatch_metric_alarm.completeness_burn_1h_13_44x.alarm_name}") AND ALARM("${aws_cloudwatch_metric_alarm.completeness_burn_5m_13_44x.alarm_name}")) OR ` +
		`(ALARM("${aws_cloudwatch_metric_alarm.completeness_burn_6h_5_6x.alarm_name}") AND ALARM("${aws_cloudwatch_metric_alarm.completeness_burn_30m_5_6x.alarm_name}"))`
	if page != want {
		t.Errorf("page rule\n%s\nwant\n%s", page, want)
	}
	// One incident, one notification: the ticket is suppressed by the page.
	sup := comps["completeness_ticket"].(map[string]any)["actions_suppressor"].([]any)[0].(map[string]any)
	if sup["alarm"] != "${aws_cloudwatch_composite_alarm.completeness_page.alarm_name}" {
		t.Errorf("ticket suppressor %v", sup)
	}
}

// Factors follow the SLO's own window, and pairs longer than half of it are
// left out (a 3-day SLO has no 72 h pair; a 1-day one no ticket at all).
func TestBurnWindowsFollowTheSLOWindow(t *testing.T) {
	for days, want := range map[int][]float64{30: {14.4, 6, 3, 1}, 28: {13.44, 5.6, 2.8, 0.933}, 7: {3.36, 1.4, 0.7, 0.233},
		3: {1.44, 0.6, 0.3}, 1: {0.48, 0.2}} {
		ws := slo.Spec{Name: "x", Objective: 0.99, WindowDays: days}.Windows()
		var got []float64
		for _, w := range ws {
			got = append(got, w.Factor)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%d days: factors %v, want %v", days, got, want)
		}
	}
	mod := slo.Module([]slo.Spec{{Name: "day", Objective: 0.99, WindowDays: 1, Description: "costs ${5}",
		SLI: slo.SLI{Bad: slo.Query{Metric: "StreamTruncated", Stat: "Sum"}, Total: slo.Query{Metric: "StreamTruncated", Stat: "SampleCount"}}}})
	comps := mod["resource"].(map[string]any)["aws_cloudwatch_composite_alarm"].(map[string]any)
	if len(comps) != 1 || !strings.Contains(comps["day_page"].(map[string]any)["alarm_description"].(string), "costs $${5}") {
		t.Errorf("1-day SLO composites %v", comps)
	}
}

func TestSpecErrors(t *testing.T) {
	for name, spec := range map[string]string{
		"objective 99":   `[{"name":"a","objective":99,"window_days":28,"sli":{"bad":{"metric":"StreamTruncated","stat":"Sum"},"total":{"metric":"StreamTruncated","stat":"SampleCount"}}}]`,
		"unknown metric": `[{"name":"a","objective":0.9,"window_days":28,"sli":{"bad":{"metric":"Nope","stat":"Sum"},"total":{"metric":"StreamTruncated","stat":"SampleCount"}}}]`,
		"bad stat":       `[{"name":"a","objective":0.9,"window_days":28,"sli":{"bad":{"metric":"StreamTruncated","stat":"p99"},"total":{"metric":"StreamTruncated","stat":"SampleCount"}}}]`,
		"empty":          `[]`,
	} {
		if _, err := slo.Parse([]byte(spec)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// Alarm descriptions say what the thresholds are: a variable's name must be
// interpolated, not left as literal text.
func TestAlarmDescriptionsInterpolate(t *testing.T) {
	literal := regexp.MustCompile(`(^|[^{])var\.[a-z_]+`)
	for name, a := range alarms.Module()["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any) {
		if d := a.(map[string]any)["alarm_description"].(string); literal.MatchString(d) {
			t.Errorf("%s: %q", name, d)
		}
	}
}

// The alarms on streamlens's own health go to the ops topics; the heartbeat
// compares Lambda's invocations with streamlens's records and treats no
// record at all as the failure it is; the TTFB p99 alarm ignores periods of
// a handful of streams.
func TestAlarmsForTheOnCall(t *testing.T) {
	all := alarms.Module()["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any)
	for _, name := range []string{"heartbeat", "dropped_events", "config_errors", "instrument_overflow", "span_export_failures"} {
		if a := all[name].(map[string]any); a["alarm_actions"] != "${var.ops_sns_topic_arns}" {
			t.Errorf("%s notifies %v", name, a["alarm_actions"])
		}
	}
	if a := all["ttfb_p99"].(map[string]any); a["alarm_actions"] != "${var.alarm_sns_topic_arns}" {
		t.Errorf("ttfb_p99 notifies %v", a["alarm_actions"])
	}
	// The truncation alarm notifies itself unless a suppressor is named;
	// then a composite that the completeness page suppresses does.
	mod := alarms.Module()
	if a := all["truncation_rate"].(map[string]any); a["alarm_actions"] != `${var.truncation_suppressor_alarm_name == "" ? var.alarm_sns_topic_arns : []}` {
		t.Errorf("truncation_rate notifies %v", a["alarm_actions"])
	}
	c := mod["resource"].(map[string]any)["aws_cloudwatch_composite_alarm"].(map[string]any)["truncation_rate"].(map[string]any)
	if c["alarm_actions"] != "${var.alarm_sns_topic_arns}" || c["actions_suppressor"].([]any)[0].(map[string]any)["alarm"] != "${var.truncation_suppressor_alarm_name}" {
		t.Errorf("truncation composite %v", c)
	}
	if p := slo.Module(specs(t))["output"].(map[string]any)["page_alarm_names"].(map[string]any)["value"].(map[string]any); p["completeness"] != "${aws_cloudwatch_composite_alarm.completeness_page.alarm_name}" {
		t.Errorf("page_alarm_names %v", p)
	}
	hb := all["heartbeat"].(map[string]any)["metric_query"].([]any)
	if inv := hb[0].(map[string]any)["metric"].(map[string]any); inv["namespace"] != "AWS/Lambda" || inv["metric_name"] != "Invocations" ||
		!strings.Contains(hb[2].(map[string]any)["expression"].(string), "FILL(rec, 0)") {
		t.Errorf("heartbeat %v", hb)
	}
	if q := all["ttfb_p99"].(map[string]any)["metric_query"].([]any); !strings.Contains(q[2].(map[string]any)["expression"].(string), "n >= ${var.ttfb_min_streams}") {
		t.Errorf("ttfb p99 %v", q)
	}
}

// Every alarm and composite links its runbook, and the page exists.
func TestEveryAlarmHasARunbook(t *testing.T) {
	link := regexp.MustCompile(`Runbook: \$\{local\.runbook\}/([a-z0-9-]+\.md)$`)
	var descs []string
	for _, a := range alarms.Module()["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any) {
		descs = append(descs, a.(map[string]any)["alarm_description"].(string))
	}
	for _, c := range slo.Module(specs(t))["resource"].(map[string]any)["aws_cloudwatch_composite_alarm"].(map[string]any) {
		descs = append(descs, c.(map[string]any)["alarm_description"].(string))
	}
	for _, d := range descs {
		m := link.FindStringSubmatch(d)
		if m == nil {
			t.Errorf("no runbook link: %q", d)
			continue
		}
		if _, err := os.Stat(filepath.Join("../../docs/runbooks", m[1])); err != nil {
			t.Errorf("%q links a missing page: %v", d, err)
		}
	}
}

// The fleet dashboard is valid JSON once Terraform interpolated it, each
// widget a SEARCH over every function for a metric streamlens writes, with
// CloudWatch's own ${PROP()} label intact.
func TestFleetDashboard(t *testing.T) {
	body, err := dashboards.FleetBody()
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Widgets []struct {
			Properties struct {
				Metrics [][]map[string]string `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(interpolate(body)), &dash); err != nil {
		t.Fatalf("not JSON after interpolation: %v", err)
	}
	known := map[string]bool{}
	for _, d := range metrics.Defs() {
		known[d.Name] = true
	}
	metric := regexp.MustCompile(`MetricName="([A-Za-z]+)"`)
	if len(dash.Widgets) != len(dashboards.FleetWidgets()) {
		t.Fatalf("%d widgets", len(dash.Widgets))
	}
	for _, w := range dash.Widgets {
		e := w.Properties.Metrics[0][0]
		mm := metric.FindStringSubmatch(e["expression"])
		if mm == nil || !known[mm[1]] || !strings.Contains(e["expression"], "{Streamlens,FunctionName}") || e["label"] != "${PROP('Dim.FunctionName')}" {
			t.Errorf("widget query %v", e)
		}
	}
}

// The alarm-status widget: the alarms and slo modules list their alarms'
// ARNs, and the dashboard shows them at its top when it is given any.
func TestAlarmStatusWidget(t *testing.T) {
	mod := alarms.Module()
	out := mod["output"].(map[string]any)["alarm_arns"].(map[string]any)["value"].(string)
	for k, a := range mod["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any) {
		ref := "aws_cloudwatch_metric_alarm." + k
		if _, counted := a.(map[string]any)["count"]; counted {
			ref += "[*].arn"
		} else {
			ref = "[" + ref + ".arn]"
		}
		if !strings.Contains(out, ref) {
			t.Errorf("alarm_arns lacks %s: %s", k, out)
		}
	}
	if c := slo.Module(specs(t))["output"].(map[string]any)["composite_alarm_arns"].(map[string]any)["value"].(string); !strings.Contains(c, "aws_cloudwatch_composite_alarm.ttfb_page.arn") {
		t.Errorf("composite_alarm_arns %s", c)
	}
	dash, err := dashboards.Module(specs(t))
	if err != nil {
		t.Fatal(err)
	}
	body := dash["resource"].(map[string]any)["aws_cloudwatch_dashboard"].(map[string]any)["streamlens"].(map[string]any)["dashboard_body"].(string)
	if !strings.Contains(body, `type = "alarm"`) || !strings.Contains(body, "alarms = var.alarm_arns") || !strings.Contains(body, "jsondecode(local.body)") {
		t.Errorf("dashboard body %s", body)
	}
}

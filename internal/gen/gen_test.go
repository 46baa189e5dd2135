package gen

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	// A page's long window needs a few bad events: one bad stream on a
	// quiet night is a burn rate of hundreds.
	if a["threshold"] != 13.44 || q[0].(map[string]any)["metric"].(map[string]any)["period"] != 3600 ||
		q[2].(map[string]any)["expression"] != "IF(bad >= ${var.page_min_bad_events}, IF(total > 0, (bad / total) / 0.01, 0), 0)" {
		t.Errorf("1h alarm %v", a)
	}
	// The short window and the tickets are not guarded.
	if e := alarms["ttfb_burn_5m_13_44x"].(map[string]any)["metric_query"].([]any)[2].(map[string]any)["expression"]; e != "IF(total > 0, (bad / total) / 0.01, 0)" {
		t.Errorf("5m expression %v", e)
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
	// Held back while the ticket's 6 h short window still holds the paged
	// incident: 6 h + 1 h.
	// …and waits an hour: a burn crossing the factor and back notifies once.
	if sup["alarm"] != "${aws_cloudwatch_composite_alarm.completeness_page.alarm_name}" || sup["extension_period"] != 25200 || sup["wait_period"] != 3600 {
		t.Errorf("ticket suppressor %v", sup)
	}
	// A ticket's short window confirms the burn goes on, at two thirds of
	// the factor (no hysteresis in CloudWatch: at the factor it flaps); a
	// page's short window keeps the factor.
	for key, th := range map[string]float64{"completeness_burn_72h_1_2x": 1.2, "completeness_burn_6h_0_8x": 0.8,
		"completeness_burn_24h_2_8x": 2.8, "completeness_burn_2h_1_867x": 1.867, "completeness_burn_5m_13_44x": 13.44, "completeness_burn_30m_5_6x": 5.6} {
		if a, ok := alarms[key].(map[string]any); !ok || a["threshold"] != th {
			t.Errorf("%s: %v", key, alarms[key])
		}
	}
	// An outage before the first byte burns both SLOs: the ttfb page (1 %
	// budget, crosses later) is held back by the completeness page (0.1 %).
	psup := comps["ttfb_page"].(map[string]any)["actions_suppressor"].([]any)[0].(map[string]any)
	if psup["alarm"] != "${aws_cloudwatch_composite_alarm.completeness_page.alarm_name}" || psup["wait_period"] != 60 {
		t.Errorf("ttfb page suppressor %v", psup)
	}
	if _, ok := comps["completeness_page"].(map[string]any)["actions_suppressor"]; ok {
		t.Error("the first page of the chain is suppressed")
	}
}

// Factors follow the SLO's own window, never below slo.MinFactor (1.2: at
// 1× or below the SLO is met, and the 72 h pair's 0.933× fired on met
// days), and pairs longer than half of it are left out (a 3-day SLO has no
// 72 h pair; a 1-day one no ticket at all).
func TestBurnWindowsFollowTheSLOWindow(t *testing.T) {
	for days, want := range map[int][]float64{30: {14.4, 6, 3, 1.2}, 28: {13.44, 5.6, 2.8, 1.2}, 7: {3.36, 1.4, 1.2, 1.2},
		3: {1.44, 1.2, 1.2}, 1: {1.2, 1.2}} {
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
	for _, name := range []string{"dropped_events", "config_errors", "instrument_overflow", "span_export_failures"} {
		if a := all[name].(map[string]any); a["alarm_actions"] != "${var.ops_sns_topic_arns}" {
			t.Errorf("%s notifies %v", name, a["alarm_actions"])
		}
	}
	// streamlens or the SLO metrics missing: every other alarm on the
	// owners' topic stays green, so the owners hear it, and ops.
	for _, name := range []string{"heartbeat", "slo_metrics_absent"} {
		if a := all[name].(map[string]any); a["alarm_actions"] != alarms.OwnersAndOps || a["ok_actions"] != alarms.OwnersAndOps ||
			a["treat_missing_data"] != "notBreaching" {
			t.Errorf("%s notifies %v, missing data %v", name, a["alarm_actions"], a["treat_missing_data"])
		}
	}
	// The threshold alarms notify themselves unless their SLO's page is
	// named; then a composite that the page suppresses does, waiting for it.
	mod := alarms.Module()
	for key, v := range map[string]string{"truncation_rate": "truncation_suppressor_alarm_name", "ttfb_p99": "ttfb_suppressor_alarm_name"} {
		if a := all[key].(map[string]any); a["alarm_actions"] != `${var.`+v+` == "" ? var.alarm_sns_topic_arns : []}` {
			t.Errorf("%s notifies %v", key, a["alarm_actions"])
		}
		c := mod["resource"].(map[string]any)["aws_cloudwatch_composite_alarm"].(map[string]any)[key].(map[string]any)
		sup := c["actions_suppressor"].([]any)[0].(map[string]any)
		if c["alarm_actions"] != "${var.alarm_sns_topic_arns}" || sup["alarm"] != "${var."+v+"}" || sup["wait_period"] != alarms.SuppressorWaitSeconds {
			t.Errorf("%s composite %v", key, c)
		}
	}
	p := slo.Module(specs(t))["output"].(map[string]any)["page_alarm_names"].(map[string]any)["value"].(map[string]any)
	if p["completeness"] != "${aws_cloudwatch_composite_alarm.completeness_page.alarm_name}" || p["ttfb"] != "${aws_cloudwatch_composite_alarm.ttfb_page.alarm_name}" {
		t.Errorf("page_alarm_names %v", p)
	}
	hb := all["heartbeat"].(map[string]any)["metric_query"].([]any)
	if inv := hb[0].(map[string]any)["metric"].(map[string]any); inv["namespace"] != "AWS/Lambda" || inv["metric_name"] != "Invocations" ||
		!strings.Contains(hb[2].(map[string]any)["expression"].(string), "FILL(rec, 0)") {
		t.Errorf("heartbeat %v", hb)
	}
	// The TTFB alarm watches a percentile tied to the budget (p90: 10 %
	// of streams over it, ten times the SLO's 1 %), not the SLO's own p99.
	q := all["ttfb_p99"].(map[string]any)["metric_query"].([]any)
	if !strings.Contains(q[2].(map[string]any)["expression"].(string), "n >= ${var.ttfb_min_streams}") ||
		q[0].(map[string]any)["metric"].(map[string]any)["stat"] != "p${var.ttfb_alarm_percentile}" {
		t.Errorf("ttfb alarm %v", q)
	}
	// The truncation alarm judges only periods with a few truncations.
	tq := all["truncation_rate"].(map[string]any)["metric_query"].([]any)
	if e := tq[4].(map[string]any)["expression"].(string); !strings.HasPrefix(e, "IF(t - FILL(c, 0) - FILL(u, 0) >= ${var.truncation_min_truncated}, ") ||
		!strings.Contains(e, alarms.TruncationRateExpression) {
		t.Errorf("truncation expression %s", e)
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
// widget a Metrics Insights query over every function for a metric
// streamlens writes, ranked by volume, whole (ORDER BY before the limit:
// past SEARCH's 500 series).
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
	query := regexp.MustCompile(`^SELECT (SUM|AVG|MAX|MIN|COUNT)\(([A-Za-z]+)\) FROM SCHEMA\("Streamlens", FunctionName\) GROUP BY FunctionName ORDER BY (SUM|AVG|MAX|MIN|COUNT)\(\) DESC LIMIT ([0-9]+)$`)
	if len(dash.Widgets) != len(dashboards.FleetWidgets()) {
		t.Fatalf("%d widgets", len(dash.Widgets))
	}
	for _, w := range dash.Widgets {
		e := w.Properties.Metrics[0][0]
		mm := query.FindStringSubmatch(e["expression"])
		if mm == nil || !known[mm[2]] || mm[1] != mm[3] || mm[4] == "0" || len(mm[4]) > 3 {
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

// deploy/ wires what the alarms module expects of it: both threshold
// alarms suppressed by their SLO's page, and an instrument cap that fits
// the example function's bundles (up to MaxInstruments distinct names, so
// the instrument-overflow alarm does not fire on the project's own
// example).
func TestDeployWiring(t *testing.T) {
	b, err := os.ReadFile("../../deploy/main.tf.json")
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Module   map[string]map[string]any `json:"module"`
		Variable map[string]struct {
			Default any `json:"default"`
		} `json:"variable"`
		Resource struct {
			Function map[string]struct {
				Environment struct {
					Variables map[string]string `json:"variables"`
				} `json:"environment"`
			} `json:"aws_lambda_function"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	a := root.Module["alarms"]
	if a["truncation_suppressor_alarm_name"] != `${module.slo.page_alarm_names["completeness"]}` ||
		a["ttfb_suppressor_alarm_name"] != `${module.slo.page_alarm_names["ttfb"]}` {
		t.Errorf("alarms module wiring %v", a)
	}
	src, err := os.ReadFile("../../examples/pricing/main.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const MaxInstruments = (\d+)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("examples/pricing: no MaxInstruments constant")
	}
	limit, _ := strconv.Atoi(string(m[1]))
	if v := root.Resource.Function["pricing"].Environment.Variables["STREAMLENS_MAX_INSTRUMENTS"]; v != "${var.max_instruments}" {
		t.Errorf("STREAMLENS_MAX_INSTRUMENTS is %q, not the max_instruments variable", v)
	}
	if capv, _ := root.Variable["max_instruments"].Default.(float64); int(capv) < limit {
		t.Errorf("deploy's max_instruments %v is below the example's %d instruments: instrument-overflow fires on the example", capv, limit)
	}
}

// The dashboard body in the formats CloudWatch documents for it
// ("Dashboard Body Structure and Syntax"): a widget fits the 24-column
// grid; "start" is a relative ISO 8601 duration (-PT3H) or an absolute
// time, "end" only an absolute time (P0D is refused); a period is 1, 5, 10,
// 30 or a multiple of 60 seconds; a metric row is namespace, name,
// dimension name/value pairs and an options object, or one expression
// object; ids start with a lower-case letter and are unique in a widget,
// and every id an expression names exists; statistics are CloudWatch's.
func TestDashboardBodyFormats(t *testing.T) {
	body, err := dashboards.Body(specs(t))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Widgets []map[string]any `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(interpolate(body)), &dash); err != nil {
		t.Fatalf("not JSON after interpolation: %v", err)
	}
	relative := regexp.MustCompile(`^-P(\d+W|(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?)$`)
	absolute := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)
	stat := regexp.MustCompile(`^(SampleCount|Average|Sum|Minimum|Maximum|IQM|p\d+(\.\d+)?|tm\d+|wm\d+|tc\d+|ts\d+)$`)
	id := regexp.MustCompile(`^[a-z][a-zA-Z0-9_]*$`)
	word := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	functions := map[string]bool{"IF": true, "FILL": true, "SEARCH": true, "SORT": true, "MAX": true, "DESC": true, "AND": true, "OR": true, "NOT": true}
	period := func(v any) bool {
		p, ok := v.(float64)
		return ok && (p == 1 || p == 5 || p == 10 || p == 30 || p >= 60 && int(p)%60 == 0)
	}
	for i, w := range dash.Widgets {
		x, _ := w["x"].(float64)
		width, _ := w["width"].(float64)
		height, _ := w["height"].(float64)
		if x < 0 || width < 1 || x+width > 24 || height < 1 || height > 1000 {
			t.Errorf("widget %d: x %v width %v height %v", i, x, width, height)
		}
		p, _ := w["properties"].(map[string]any)
		if w["type"] == "text" {
			continue
		}
		title, _ := p["title"].(string)
		if w["type"] != "metric" || title == "" || p["region"] == "" {
			t.Errorf("widget %d: type %v title %q region %v", i, w["type"], title, p["region"])
		}
		if s, ok := p["start"].(string); ok && !relative.MatchString(s) && !absolute.MatchString(s) {
			t.Errorf("%s: start %q", title, s)
		}
		if e, ok := p["end"]; ok {
			if s, _ := e.(string); !absolute.MatchString(s) {
				t.Errorf("%s: end %v is not an absolute ISO 8601 time", title, e)
			}
		}
		if !period(p["period"]) {
			t.Errorf("%s: period %v", title, p["period"])
		}
		switch p["view"] {
		case "timeSeries", "singleValue", "gauge", "bar", "pie", "table":
		default:
			t.Errorf("%s: view %v", title, p["view"])
		}
		if ax, ok := p["yAxis"].(map[string]any); ok {
			for side, v := range ax {
				if side != "left" && side != "right" {
					t.Errorf("%s: yAxis %s", title, side)
				}
				if _, ok := v.(map[string]any)["label"].(string); !ok {
					t.Errorf("%s: yAxis %s without a label", title, side)
				}
			}
		}
		if a, ok := p["annotations"].(map[string]any); ok {
			for _, h := range a["horizontal"].([]any) {
				if _, ok := h.(map[string]any)["value"].(float64); !ok {
					t.Errorf("%s: annotation %v", title, h)
				}
			}
		}
		ids := map[string]bool{}
		var exprs []string
		for _, r := range p["metrics"].([]any) {
			row := r.([]any)
			last, _ := row[len(row)-1].(map[string]any)
			if e, ok := last["expression"].(string); ok {
				if len(row) != 1 {
					t.Errorf("%s: expression row %v", title, row)
				}
				exprs = append(exprs, e)
			} else {
				names := row
				if last != nil {
					names = row[:len(row)-1]
				}
				if len(names) < 2 || len(names)%2 != 0 {
					t.Errorf("%s: metric row %v: namespace, name, dimension pairs", title, row)
				}
				for _, n := range names {
					if s, _ := n.(string); s == "" {
						t.Errorf("%s: metric row %v", title, row)
					}
				}
				if s, _ := last["stat"].(string); !stat.MatchString(s) {
					t.Errorf("%s: stat %q", title, s)
				}
				if v, ok := last["period"]; ok && !period(v) {
					t.Errorf("%s: row period %v", title, v)
				}
			}
			if last != nil {
				if v, ok := last["id"]; ok {
					s, _ := v.(string)
					if !id.MatchString(s) || ids[s] {
						t.Errorf("%s: id %q (format, or not unique)", title, s)
					}
					ids[s] = true
				}
			}
		}
		for _, e := range exprs {
			if strings.Contains(e, "SEARCH(") {
				continue
			}
			for _, wd := range word.FindAllString(e, -1) {
				if !functions[wd] && !ids[wd] {
					t.Errorf("%s: expression %q names %q, not an id of the widget", title, e, wd)
				}
			}
		}
	}
}

// The dashboard starts with the SLOs; the burn chart draws the burn over
// every pair's long window with every factor; the budget tile has no value
// without events (not 100 %); a chart's axis has one unit.
func TestDashboardSLOWidgets(t *testing.T) {
	ws := dashboards.Widgets(specs(t))
	if !strings.HasPrefix(ws[0].Title, "SLO ttfb: error budget burn rate") || !strings.HasPrefix(ws[1].Title, "SLO ttfb: error budget left") {
		t.Errorf("first widgets %q, %q", ws[0].Title, ws[1].Title)
	}
	burn := ws[0]
	if len(burn.Exprs) != 4 || len(burn.Lines) != 4 {
		t.Errorf("burn chart: %d lines, %d factors", len(burn.Exprs), len(burn.Lines))
	}
	periods := map[int]bool{}
	for _, s := range burn.Series {
		periods[s.Period] = true
	}
	if !periods[3600] || !periods[6*3600] || !periods[24*3600] || !periods[72*3600] {
		t.Errorf("burn series periods %v", periods)
	}
	for _, w := range ws {
		if strings.Contains(w.Title, "error budget left") {
			if v := w.Exprs[0].Eval(map[string]float64{}); !math.IsNaN(v) {
				t.Errorf("%s: %v with no data", w.Title, v)
			}
			if strings.Contains(w.Exprs[0].Expression, "IF(") {
				t.Errorf("%s: %s turns no events into a value", w.Title, w.Exprs[0].Expression)
			}
		}
		if strings.Contains(w.Unit, "/") {
			t.Errorf("%s: two units on one axis (%s)", w.Title, w.Unit)
		}
	}
	found := false
	for _, w := range ws {
		for _, s := range w.Series {
			found = found || s.Metric == metrics.ResponseDuration
		}
	}
	if !found {
		t.Error("no ResponseDuration widget")
	}
}

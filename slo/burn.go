package slo

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

// Window is one multi-window burn-rate condition: alert when the error budget
// burns Factor times faster than sustainable over both the Long and the Short
// window (the short one makes the alert stop soon after the problem does).
type Window struct {
	Long, Short time.Duration
	Factor      float64
	// ShortFactor is the short window's threshold: Factor for a page; for
	// a ticket two thirds of it (see TicketShortRatio).
	ShortFactor float64
	Severity    string // page or ticket
}

// TicketShortRatio is a ticket's short-window threshold over its factor.
// A ticket's short window only confirms that the burn goes on; at the long
// window's factor, a burn just above it dips below in the short window's
// noise and the ticket flaps (a 1.5× drip: 54 bad events expected in 6 h,
// the 1.2× threshold at 43). CloudWatch alarms have no hysteresis; a lower
// short threshold is the nearest thing. The replay's drip scenario with
// Poisson noise checks it.
const TicketShortRatio = 2.0 / 3

// pairs are the SRE workbook's multi-window pairs and the share of the
// error budget each lets burn before it fires.
var pairs = []struct {
	long, short time.Duration
	budget      float64
	severity    string
}{
	{time.Hour, 5 * time.Minute, 0.02, "page"},
	{6 * time.Hour, 30 * time.Minute, 0.05, "page"},
	{24 * time.Hour, 2 * time.Hour, 0.10, "ticket"},
	{72 * time.Hour, 6 * time.Hour, 0.10, "ticket"},
}

// MinFactor is the lowest burn rate any pair alerts on. A burn rate of 1
// spends exactly the budget over the SLO's window: at or below it the SLO
// is met, and an alert there fires on good days (the workbook's 72 h pair
// spends 10 % of the budget, 0.933× for a 28-day SLO: it fired at 0.95×,
// with the SLO met). 1.2 leaves room for noise and still tickets a 1.5×
// drip within three days (the replay's drip scenario).
const MinFactor = 1.2

// Windows are the burn-rate conditions of s: for each pair, the factor that
// spends the pair's share of the budget over its long window, for s's own
// window (14.4 for the 1 h pair of a 30-day SLO, 13.44 for a 28-day one:
// the workbook's 30-day factors would fire ~7 % late on a 28-day SLO and
// badly wrong on a 7-day one), and never below MinFactor. A pair whose long
// window is more than half the SLO's window is left out: it would measure
// most of the window itself.
func (s Spec) Windows() []Window {
	window := time.Duration(s.WindowDays) * 24 * time.Hour
	var out []Window
	for _, p := range pairs {
		if 2*p.long > window {
			continue
		}
		f := math.Round(max(MinFactor, p.budget*float64(window)/float64(p.long))*1000) / 1000
		short := f
		if p.severity == "ticket" {
			short = math.Round(f*TicketShortRatio*1000) / 1000
		}
		out = append(out, Window{Long: p.long, Short: p.short, Factor: f, ShortFactor: short, Severity: p.severity})
	}
	return out
}

func durName(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/time.Minute)) + "m"
}

func factorName(f float64) string {
	return strings.ReplaceAll(strconv.FormatFloat(f, 'f', -1, 64), ".", "_") + "x"
}

// BurnExpression is the metric-math burn rate: the bad fraction over the
// window divided by the budget fraction, the excluded events (series ids ex,
// one per SLI.Exclude query; a period without them counts 0) taken out of
// both. With no events there is no burn.
func (s Spec) BurnExpression(bad, total string, ex ...string) string {
	budget := strconv.FormatFloat(s.ErrorBudget(), 'g', -1, 64)
	if len(ex) == 0 {
		return fmt.Sprintf("IF(%s > 0, (%s / %s) / %s, 0)", total, bad, total, budget)
	}
	var fills []string
	for _, id := range ex {
		fills = append(fills, "FILL("+id+", 0)")
	}
	e := "(" + strings.Join(fills, " + ") + ")"
	return fmt.Sprintf("IF(%s - %s > 0, ((%s - %s) / (%s - %s)) / %s, 0)", total, e, bad, e, total, e, budget)
}

// Burn is BurnExpression computed from counts: the bad fraction, the
// excluded events taken out of bad and total, over the error budget; 0
// without events.
func (s Spec) Burn(bad, total, excluded float64) float64 {
	if total-excluded <= 0 {
		return 0
	}
	return ((bad - excluded) / (total - excluded)) / s.ErrorBudget()
}

// GuardedBurnExpression is BurnExpression, 0 unless the window holds at
// least minBad bad events (the excluded ones taken out): at night one bad
// stream in a handful is a burn rate of hundreds, and no incident.
func (s Spec) GuardedBurnExpression(bad, total, minBad string, ex ...string) string {
	b := bad
	if len(ex) > 0 {
		var fills []string
		for _, id := range ex {
			fills = append(fills, "FILL("+id+", 0)")
		}
		b = bad + " - (" + strings.Join(fills, " + ") + ")"
	}
	return fmt.Sprintf("IF(%s >= %s, %s, 0)", b, minBad, s.BurnExpression(bad, total, ex...))
}

// ExcludeIDs are the series ids of s's excluded queries, with prefix.
func (s Spec) ExcludeIDs(prefix string) []string {
	var ids []string
	for i := range s.SLI.Exclude {
		ids = append(ids, fmt.Sprintf("%sx%d", prefix, i))
	}
	return ids
}

// pageNames maps each SLO with a page composite to that composite's name.
func pageNames(composites map[string]any) map[string]any {
	out := map[string]any{}
	for k := range composites {
		if name, ok := strings.CutSuffix(k, "_page"); ok {
			out[name] = "${aws_cloudwatch_composite_alarm." + k + ".alarm_name}"
		}
	}
	return out
}

// compositeARNs lists the composites' ARNs, in a stable order.
func compositeARNs(composites map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(composites)) {
		parts = append(parts, "aws_cloudwatch_composite_alarm."+k+".arn")
	}
	return "${[" + strings.Join(parts, ", ") + "]}"
}

func query(id string, q Query, period time.Duration) map[string]any {
	return map[string]any{"id": id, "return_data": false, "metric": map[string]any{
		"namespace": "${var.namespace}", "metric_name": q.Metric, "stat": q.Stat, "period": int(period / time.Second),
		"dimensions": map[string]any{m.DimFunctionName: "${var.function_name}"},
	}}
}

// Module returns the Terraform JSON module of the SLO alarms: for each SLO and
// window pair, two metric-math alarms (long and short window), and per
// severity one composite alarm that fires when both alarms of any pair do.
func Module(specs []Spec) map[string]any {
	alarms := map[string]any{}
	composites := map[string]any{}
	// The longest short window of a ticket pair: after a page, the ticket
	// of the same SLO stays in ALARM while that window still holds the
	// incident; the suppression must outlast it, or the incident notifies
	// twice.
	var ticketHold time.Duration
	for _, s := range specs {
		for _, w := range s.Windows() {
			if w.Severity == "ticket" {
				ticketHold = max(ticketHold, w.Short)
			}
		}
	}
	ticketHold += time.Hour
	for _, s := range specs {
		rules := map[string][]string{}
		for _, w := range s.Windows() {
			var pair []string
			for _, d := range []time.Duration{w.Long, w.Short} {
				th := w.Factor
				if d == w.Short {
					th = w.ShortFactor
				}
				key := fmt.Sprintf("%s_burn_%s_%s", s.Name, durName(d), factorName(th))
				alarms[key] = map[string]any{
					"alarm_name": fmt.Sprintf("${var.alarm_name_prefix}-%s-%s-slo-burn-%s-%s", "${var.function_name}", s.Name, durName(d), factorName(th)),
					"alarm_description": fmt.Sprintf("SLO %s (%.4g%% over %d days): error budget burning faster than %.4g× over %s (%s window of the %s/%s %s pair). No events (missing data) is not breaching.",
						s.Name, 100*s.Objective, s.WindowDays, th, durName(d), map[bool]string{true: "long", false: "short"}[d == w.Long], durName(w.Long), durName(w.Short), w.Severity),
					"comparison_operator": "GreaterThanThreshold",
					"threshold":           th,
					"evaluation_periods":  1,
					"treat_missing_data":  "notBreaching",
					"actions_enabled":     false, // the composite alarms notify
					"metric_query": func() []any {
						q := []any{query("bad", s.SLI.Bad, d), query("total", s.SLI.Total, d)}
						ex := s.ExcludeIDs("")
						for i, id := range ex {
							q = append(q, query(id, s.SLI.Exclude[i], d))
						}
						expr := s.BurnExpression("bad", "total", ex...)
						if w.Severity == "page" && d == w.Long {
							// A page needs a few bad events, not one.
							expr = s.GuardedBurnExpression("bad", "total", "${var.page_min_bad_events}", ex...)
						}
						return append(q, map[string]any{"id": "burn", "expression": expr, "label": "burn rate", "return_data": true})
					}(),
					"tags": map[string]any{"streamlens:slo": s.Name, "streamlens:severity": w.Severity},
				}
				pair = append(pair, fmt.Sprintf(`ALARM("${aws_cloudwatch_metric_alarm.%s.alarm_name}")`, key))
			}
			rules[w.Severity] = append(rules[w.Severity], "("+strings.Join(pair, " AND ")+")")
		}
		for _, sev := range []string{"page", "ticket"} {
			if len(rules[sev]) == 0 {
				continue // a short SLO window has no ticket pair
			}
			c := map[string]any{
				"alarm_name": fmt.Sprintf("${var.alarm_name_prefix}-${var.function_name}-%s-slo-%s", s.Name, sev),
				// The description is the spec author's text: escaped, so that a
				// "${" in it is not taken for a Terraform template.
				"alarm_description": tfjson.Literal(fmt.Sprintf("SLO %s: %s. Multi-window burn rate (%s).", s.Name, s.Description, sev)) + " " + tfjson.Runbook("slo-burn"),
				"alarm_rule":        strings.Join(rules[sev], " OR "),
				"alarm_actions":     "${var." + sev + "_sns_topic_arns}",
				"ok_actions":        "${var." + sev + "_sns_topic_arns}",
				"tags":              map[string]any{"streamlens:slo": s.Name, "streamlens:severity": sev},
			}
			if sev == "ticket" && len(rules["page"]) > 0 {
				// One incident, one notification: while the page fires (and
				// for a while after), the ticket of the same SLO is held back.
				// The wait is an hour: a ticket is not urgent, and a burn that
				// crosses the factor and dips back within the hour notifies
				// once, not per crossing.
				c["actions_suppressor"] = []any{map[string]any{
					"alarm":            fmt.Sprintf("${aws_cloudwatch_composite_alarm.%s_page.alarm_name}", s.Name),
					"extension_period": int(ticketHold / time.Second), "wait_period": 3600}}
			}
			composites[s.Name+"_"+sev] = c
		}
	}
	chainPages(specs, composites)
	return map[string]any{
		"terraform": tfjson.Providers(),
		"locals":    tfjson.RunbookLocals(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), tfjson.RunbookVars(), map[string]any{
			"alarm_name_prefix":     tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"page_sns_topic_arns":   tfjson.Var("list(string)", "SNS topics notified by page-severity burn-rate alerts", []any{}),
			"ticket_sns_topic_arns": tfjson.Var("list(string)", "SNS topics notified by ticket-severity burn-rate alerts", []any{}),
			"page_min_bad_events":   tfjson.Var("number", "a page's long window must hold at least this many bad events: one bad stream on a quiet night is a burn rate of hundreds, and no incident", 5),
		}),
		"resource": map[string]any{
			"aws_cloudwatch_metric_alarm":    alarms,
			"aws_cloudwatch_composite_alarm": composites,
		},
		"output": map[string]any{
			"composite_alarm_arns": map[string]any{
				"description": "the page and ticket composites, for the dashboard's alarm widget",
				"value":       compositeARNs(composites),
			},
			"page_alarm_names": map[string]any{
				"description": "SLO name → its page composite's name (the alarms module's truncation_suppressor_alarm_name takes completeness's)",
				"value":       pageNames(composites),
			},
		},
	}
}

// chainPages holds back a page while another SLO's already fires: an outage
// before the first byte burns every SLO at once, and pages once. The SLO with
// the smaller error budget crosses its factor first on a shared cause (for
// the shipped spec, completeness at 0.1 % before ttfb at 1 %), so each page
// is suppressed by the page of the SLO with the next smaller budget. The
// wait is one minute: a page of its own never waits for another SLO.
func chainPages(specs []Spec, composites map[string]any) {
	var paged []Spec
	for _, s := range specs {
		if _, ok := composites[s.Name+"_page"]; ok {
			paged = append(paged, s)
		}
	}
	slices.SortStableFunc(paged, func(a, b Spec) int { return cmp.Compare(a.ErrorBudget(), b.ErrorBudget()) })
	for i := 1; i < len(paged); i++ {
		composites[paged[i].Name+"_page"].(map[string]any)["actions_suppressor"] = []any{map[string]any{
			"alarm":            fmt.Sprintf("${aws_cloudwatch_composite_alarm.%s_page.alarm_name}", paged[i-1].Name),
			"extension_period": 3600, "wait_period": 60}}
	}
}

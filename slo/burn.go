package slo

import (
	"fmt"
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
	Severity    string // page or ticket
}

// Windows are the SRE workbook's recommendation for a 30-day-ish window:
// 14.4× over 1 h spends 2 % of a 30-day budget, 6× over 6 h 5 %, 3× over 24 h
// 10 %, 1× over 72 h 10 %.
func Windows() []Window {
	return []Window{
		{time.Hour, 5 * time.Minute, 14.4, "page"},
		{6 * time.Hour, 30 * time.Minute, 6, "page"},
		{24 * time.Hour, 2 * time.Hour, 3, "ticket"},
		{72 * time.Hour, 6 * time.Hour, 1, "ticket"},
	}
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
// window divided by the budget fraction. With no events there is no burn.
func (s Spec) BurnExpression(bad, total string) string {
	return fmt.Sprintf("IF(%s > 0, (%s / %s) / %s, 0)", total, bad, total, strconv.FormatFloat(s.ErrorBudget(), 'g', -1, 64))
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
	for _, s := range specs {
		rules := map[string][]string{}
		for _, w := range Windows() {
			var pair []string
			for _, d := range []time.Duration{w.Long, w.Short} {
				key := fmt.Sprintf("%s_burn_%s_%s", s.Name, durName(d), factorName(w.Factor))
				alarms[key] = map[string]any{
					"alarm_name": fmt.Sprintf("${var.alarm_name_prefix}-%s-%s-slo-burn-%s-%s", "${var.function_name}", s.Name, durName(d), factorName(w.Factor)),
					"alarm_description": fmt.Sprintf("SLO %s (%.4g%% over %d days): error budget burning faster than %.4g× over %s (%s window of the %s/%s pair).",
						s.Name, 100*s.Objective, s.WindowDays, w.Factor, durName(d), map[bool]string{true: "long", false: "short"}[d == w.Long], durName(w.Long), durName(w.Short)),
					"comparison_operator": "GreaterThanThreshold",
					"threshold":           w.Factor,
					"evaluation_periods":  1,
					"treat_missing_data":  "notBreaching",
					"actions_enabled":     false, // the composite alarms notify
					"metric_query": []any{
						query("bad", s.SLI.Bad, d),
						query("total", s.SLI.Total, d),
						map[string]any{"id": "burn", "expression": s.BurnExpression("bad", "total"), "label": "burn rate", "return_data": true},
					},
					"tags": map[string]any{"streamlens:slo": s.Name, "streamlens:severity": w.Severity},
				}
				pair = append(pair, fmt.Sprintf("ALARM(${aws_cloudwatch_metric_alarm.%s.alarm_name})", key))
			}
			rules[w.Severity] = append(rules[w.Severity], "("+strings.Join(pair, " AND ")+")")
		}
		for _, sev := range []string{"page", "ticket"} {
			composites[s.Name+"_"+sev] = map[string]any{
				"alarm_name":        fmt.Sprintf("${var.alarm_name_prefix}-${var.function_name}-%s-slo-%s", s.Name, sev),
				"alarm_description": fmt.Sprintf("SLO %s: %s. Multi-window burn rate (%s).", s.Name, s.Description, sev),
				"alarm_rule":        strings.Join(rules[sev], " OR "),
				"alarm_actions":     "${var." + sev + "_sns_topic_arns}",
				"ok_actions":        "${var." + sev + "_sns_topic_arns}",
				"tags":              map[string]any{"streamlens:slo": s.Name, "streamlens:severity": sev},
			}
		}
	}
	return map[string]any{
		"terraform": tfjson.Providers(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), map[string]any{
			"alarm_name_prefix":     tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"page_sns_topic_arns":   tfjson.Var("list(string)", "SNS topics notified by page-severity burn-rate alerts", []any{}),
			"ticket_sns_topic_arns": tfjson.Var("list(string)", "SNS topics notified by ticket-severity burn-rate alerts", []any{}),
		}),
		"resource": map[string]any{
			"aws_cloudwatch_metric_alarm":    alarms,
			"aws_cloudwatch_composite_alarm": composites,
		},
	}
}

// Package alarms renders the streamlens CloudWatch alarms as a Terraform JSON
// module, from the metric definitions.
package alarms

import (
	"maps"
	"slices"
	"strings"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

func alarm(name, description string, extra map[string]any) map[string]any {
	a := map[string]any{
		"alarm_name":         "${var.alarm_name_prefix}-${var.function_name}-" + name,
		"alarm_description":  description + " " + tfjson.Runbook(name),
		"namespace":          "${var.namespace}",
		"dimensions":         map[string]any{m.DimFunctionName: "${var.function_name}"},
		"alarm_actions":      "${var.alarm_sns_topic_arns}",
		"ok_actions":         "${var.alarm_sns_topic_arns}",
		"treat_missing_data": "notBreaching", // no streams is not an outage of streams
	}
	for k, v := range extra {
		a[k] = v
	}
	if _, ok := a["metric_query"]; ok {
		// A metric-math alarm names its metrics in its queries only.
		delete(a, "namespace")
		delete(a, "dimensions")
	}
	return a
}

// health is an alarm on streamlens's own health: it notifies the ops
// topics, not whoever owns the function's streams.
func health(name, description string, extra map[string]any) map[string]any {
	a := alarm(name, description, extra)
	a["alarm_actions"], a["ok_actions"] = "${var.ops_sns_topic_arns}", "${var.ops_sns_topic_arns}"
	return a
}

// mq is a metric_query row reading one statistic of one metric.
func mq(id, namespace, metric, stat, period string) map[string]any {
	return map[string]any{"id": id, "return_data": false, "metric": map[string]any{
		"namespace": namespace, "metric_name": metric, "stat": stat, "period": period,
		"dimensions": map[string]any{m.DimFunctionName: "${var.function_name}"}}}
}

// TruncationRateExpression is the share of streams the service truncated,
// in metric math over t (StreamTruncated Sum), n (its SampleCount), c
// (TruncationByCaller Sum) and u (TruncationUnobserved Sum): the caller's
// and the unjudged ones out of both counts. The dashboard draws the same.
const TruncationRateExpression = "IF(n - FILL(c, 0) - FILL(u, 0) > 0, (t - FILL(c, 0) - FILL(u, 0)) / (n - FILL(c, 0) - FILL(u, 0)), 0)"

// Module is the alarms module.
func Module() map[string]any {
	mod := module()
	res := mod["resource"].(map[string]any)
	metricAlarms := res["aws_cloudwatch_metric_alarm"].(map[string]any)
	// One incident, one notification: a truncation incident fires the
	// truncation alarm and the completeness SLO's page, a TTFB incident the
	// TTFB alarm and the ttfb SLO's page. With the page composite named, the
	// threshold alarm notifies through a composite that the page
	// suppresses. The threshold alarm fires first (minutes of data against
	// the page's hour), so the composite waits wait_period for the page:
	// 1200 s covers a 46× incident's page, which comes ~17 min after the
	// first records (the alarm fires ~6–10 min in); the alarm replay
	// (package replay) checks it.
	composites := map[string]any{}
	for _, n := range []struct{ key, page, slo, v string }{
		{"truncation_rate", "truncation-rate", "completeness", "truncation_suppressor_alarm_name"},
		{"ttfb_p99", "ttfb-p99", "ttfb", "ttfb_suppressor_alarm_name"},
	} {
		v, a := n.v, metricAlarms[n.key].(map[string]any)
		a["alarm_actions"] = `${var.` + v + ` == "" ? var.alarm_sns_topic_arns : []}`
		a["ok_actions"] = a["alarm_actions"]
		composites[n.key] = map[string]any{
			"count":             `${var.` + v + ` == "" ? 0 : 1}`,
			"alarm_name":        "${var.alarm_name_prefix}-${var.function_name}-" + n.page + "-notify",
			"alarm_description": "Notifies for the " + n.page + " alarm unless the " + n.slo + " SLO already pages. " + tfjson.Runbook(n.page),
			"alarm_rule":        `ALARM("${aws_cloudwatch_metric_alarm.` + n.key + `.alarm_name}")`, // the documented form: the name quoted
			"alarm_actions":     "${var.alarm_sns_topic_arns}",
			"ok_actions":        "${var.alarm_sns_topic_arns}",
			"actions_suppressor": []any{map[string]any{
				"alarm": "${var." + v + "}", "extension_period": 3600, "wait_period": SuppressorWaitSeconds}},
		}
	}
	res["aws_cloudwatch_composite_alarm"] = composites
	mod["output"] = map[string]any{"alarm_arns": map[string]any{
		"description": "every alarm of this module, for the dashboard's alarm widget",
		"value":       arns(metricAlarms),
	}}
	return mod
}

// SuppressorWaitSeconds is how long a threshold alarm's notify composite
// waits for its SLO page before notifying (see Module).
const SuppressorWaitSeconds = 1200

// arns is the Terraform expression listing the ARNs of alarms, whether
// they exist once or zero-or-once (count).
func arns(alarms map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(alarms)) {
		if _, counted := alarms[k].(map[string]any)["count"]; counted {
			parts = append(parts, "aws_cloudwatch_metric_alarm."+k+"[*].arn")
		} else {
			parts = append(parts, "[aws_cloudwatch_metric_alarm."+k+".arn]")
		}
	}
	return "${concat(" + strings.Join(parts, ", ") + ")}"
}

func module() map[string]any {
	mod := map[string]any{
		"terraform": tfjson.Providers(),
		"locals":    tfjson.RunbookLocals(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), tfjson.RunbookVars(), map[string]any{
			"alarm_name_prefix":                 tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"alarm_sns_topic_arns":              tfjson.Var("list(string)", "the function owners' SNS topics, notified on ALARM and OK by the alarms on the streams (truncation, TTFB, on-demand init) and when streamlens or its SLO metrics go missing (heartbeat, slo-metrics-absent)", []any{}),
			"ttfb_suppressor_alarm_name":        tfjson.Var("string", "name of the alarm that, while it fires, holds back the TTFB alarm's notifications: the ttfb SLO's page composite (the slo module's page_alarm_names.ttfb); empty: none", ""),
			"truncation_min_truncated":          tfjson.Var("number", "the truncation-rate alarm judges a period only when it holds at least this many truncated streams: one or two truncations in a quiet period are not a rate", 5),
			"ttfb_alarm_percentile":             tfjson.Var("number", "the TTFB alarm watches this percentile: 90 fires when more than 10 % of streams are over ttfb_p99_threshold_ms, ten times the ttfb SLO's 1 % budget (p99 would fire at the SLO's own rate, on days the SLO is met)", 90),
			"on_demand_init_threshold":          tfjson.Var("number", "the on-demand-init alarm fires when more than this many on-demand inits happen in each of two 5-minute periods (one init during a scale-out or a deployment is not a trend)", 2),
			"truncation_suppressor_alarm_name":  tfjson.Var("string", "name of the alarm that, while it fires, holds back the truncation alarm's notifications: the completeness SLO's page composite (the slo module's page_alarm_names.completeness); empty: none", ""),
			"ops_sns_topic_arns":                tfjson.Var("list(string)", "SNS topics notified by the alarms on streamlens's own health (heartbeat, dropped events, configuration, instrument overflow, span export)", []any{}),
			"ttfb_min_streams":                  tfjson.Var("number", "the TTFB p99 alarm looks at a period only when it has at least this many streams: a p99 of a handful is one slow stream", 20),
			"ttfb_anomaly_alarm":                tfjson.Var("bool", "also alarm when TTFB p99 leaves its learned band (CloudWatch anomaly detection: a regression below the fixed threshold shows too)", false),
			"ttfb_anomaly_band":                 tfjson.Var("number", "width of the anomaly band, in standard deviations", 3),
			"heartbeat_min_invocations":         tfjson.Var("number", "the heartbeat alarm looks at a period only when Lambda counted at least this many invocations", 10),
			"heartbeat_missing_ratio":           tfjson.Var("number", "alarm when more than this share of Lambda's invocations has no streamlens record", 0.5),
			"truncation_threshold_percent":      tfjson.Var("number", "alarm when more than this % of streams are truncated; 1 % is ten times the completeness SLO's 0.1 % budget (at the SLO's own rate the alarm would fire on days the SLO is met)", 1),
			"truncation_period_seconds":         tfjson.Var("number", "period of the truncation-rate alarm", 300),
			"truncation_evaluation_periods":     tfjson.Var("number", "periods evaluated by the truncation-rate alarm", 3),
			"truncation_datapoints_to_alarm":    tfjson.Var("number", "breaching periods (of those evaluated) that raise the alarm", 2),
			"ttfb_p99_threshold_ms":             tfjson.Var("number", "the TTFB alarm fires when its percentile (ttfb_alarm_percentile) of business TTFB exceeds this: the TTFB budget", 100),
			"ttfb_period_seconds":               tfjson.Var("number", "period of the TTFB p99 alarm", 60),
			"ttfb_evaluation_periods":           tfjson.Var("number", "periods evaluated by the TTFB p99 alarm", 5),
			"ttfb_datapoints_to_alarm":          tfjson.Var("number", "breaching periods that raise the TTFB p99 alarm", 3),
			"provisioned_concurrency_expected":  tfjson.Var("bool", "create the alarm on on-demand inits (provisioned concurrency should serve every invocation)", false),
			"dropped_events_period_seconds":     tfjson.Var("number", "period of the dropped-events alarm", 300),
			"dropped_events_evaluation_periods": tfjson.Var("number", "periods evaluated by the dropped-events alarm", 1),
			"span_export_period_seconds":        tfjson.Var("number", "period of the span-export-failures alarm", 300),
			"idle_cut_evaluation_periods":       tfjson.Var("number", "consecutive 5-minute periods with a stream near the idle limit that raise the idle-cut-risk alarm", 2),
			"span_export_evaluation_periods":    tfjson.Var("number", "periods evaluated (each must breach) by the span-export-failures alarm", 3),
		}),
		"resource": map[string]any{"aws_cloudwatch_metric_alarm": map[string]any{
			"truncation_rate": alarm("truncation-rate",
				"More than ${var.truncation_threshold_percent} % of response streams ended truncated by the service (timeout, crash, error, or fewer chunks than expected) although they may have returned HTTP 200, in periods with at least ${var.truncation_min_truncated} such streams. Streams whose caller went away, and streams streamlens could not judge, are not counted. No streams (missing data) is not breaching.",
				map[string]any{"threshold": "${var.truncation_threshold_percent / 100}", "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": "${var.truncation_evaluation_periods}", "datapoints_to_alarm": "${var.truncation_datapoints_to_alarm}",
					"metric_query": []any{
						mq("t", "${var.namespace}", m.StreamTruncated, "Sum", "${var.truncation_period_seconds}"),
						mq("n", "${var.namespace}", m.StreamTruncated, "SampleCount", "${var.truncation_period_seconds}"),
						mq("c", "${var.namespace}", m.TruncationByCaller, "Sum", "${var.truncation_period_seconds}"),
						mq("u", "${var.namespace}", m.TruncationUnobserved, "Sum", "${var.truncation_period_seconds}"),
						// A period with a handful of truncations is not judged:
						// one truncated stream in a quiet five minutes is a
						// rate far above any threshold and no incident.
						map[string]any{"id": "rate", "expression": "IF(t - FILL(c, 0) - FILL(u, 0) >= ${var.truncation_min_truncated}, " + TruncationRateExpression + ", 0)",
							"label": "truncated by the service (share)", "return_data": true},
					}}),
			"ttfb_p99": alarm("ttfb-p99",
				"Business time to first byte (handler start → first useful chunk), p${var.ttfb_alarm_percentile}, is above ${var.ttfb_p99_threshold_ms} ms, in periods with at least ${var.ttfb_min_streams} streams (at p90: more than 10 % of streams over the TTFB budget, ten times the ttfb SLO's 1 %). No streams (missing data) is not breaching.",
				map[string]any{"threshold": "${var.ttfb_p99_threshold_ms}", "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": "${var.ttfb_evaluation_periods}", "datapoints_to_alarm": "${var.ttfb_datapoints_to_alarm}",
					"metric_query": []any{
						mq("pct", "${var.namespace}", m.TimeToFirstByte, "p${var.ttfb_alarm_percentile}", "${var.ttfb_period_seconds}"),
						mq("n", "${var.namespace}", m.TimeToFirstByte, "SampleCount", "${var.ttfb_period_seconds}"),
						// A period with few streams is not judged: its p99 is
						// its slowest stream.
						map[string]any{"id": "guarded", "expression": "IF(n >= ${var.ttfb_min_streams}, pct, 0)", "label": "TTFB percentile (enough streams)", "return_data": true},
					}}),
			"ttfb_p99_anomaly": alarm("ttfb-p99-anomaly",
				"Business TTFB p99 is above the band CloudWatch learned for it (${var.ttfb_anomaly_band} standard deviations), for 3 of 5 periods: a regression, even below the fixed threshold.",
				map[string]any{"count": "${var.ttfb_anomaly_alarm ? 1 : 0}", "comparison_operator": "GreaterThanUpperThreshold",
					"evaluation_periods": 5, "datapoints_to_alarm": 3, "threshold_metric_id": "band",
					"metric_query": []any{
						map[string]any{"id": "p99", "return_data": true, "metric": map[string]any{"namespace": "${var.namespace}",
							"metric_name": m.TimeToFirstByte, "stat": "p99", "period": 300,
							"dimensions": map[string]any{m.DimFunctionName: "${var.function_name}"}}},
						map[string]any{"id": "band", "expression": "ANOMALY_DETECTION_BAND(p99, ${var.ttfb_anomaly_band})", "label": "TTFB p99 (expected)", "return_data": true},
					}}),
			"heartbeat": health("heartbeat",
				"More than ${var.heartbeat_missing_ratio} of the invocations Lambda counted (at least ${var.heartbeat_min_invocations} in 15 minutes) have no streamlens record, in two 15-minute periods: the extension is not attached, crashed, or cannot write its metrics, and the other alarms see nothing. Notifies the function's owners and ops. No invocations at all (missing data) is not breaching: there is nothing to miss.",
				map[string]any{"threshold": "${var.heartbeat_missing_ratio}", "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": 2, "datapoints_to_alarm": 2,
					"metric_query": []any{
						mq("inv", "AWS/Lambda", "Invocations", "Sum", "900"),
						mq("rec", "${var.namespace}", m.ColdStart, "SampleCount", "900"),
						// FILL: no streamlens data at all is the case this
						// alarm exists for.
						map[string]any{"id": "missing", "expression": "IF(inv >= ${var.heartbeat_min_invocations}, 1 - FILL(rec, 0) / inv, 0)",
							"label": "share of invocations without a streamlens record", "return_data": true},
					}}),
			"on_demand_init": alarm("on-demand-init",
				"More than ${var.on_demand_init_threshold} on-demand inits (InitType on-demand) in each of two 5-minute periods while provisioned concurrency is expected to serve every invocation: cold starts are reaching users. No inits (missing data) is not breaching.",
				map[string]any{"count": "${var.provisioned_concurrency_expected ? 1 : 0}",
					"metric_name": m.InitDuration, "statistic": "SampleCount", "threshold": "${var.on_demand_init_threshold}",
					"dimensions": map[string]any{m.DimFunctionName: "${var.function_name}", m.DimInitType: "on-demand"},
					// 5-minute periods: EMF reaches CloudWatch ~2 minutes late,
					// so a 1-minute period is still empty when evaluated and
					// the alarm never fires.
					"comparison_operator": "GreaterThanThreshold", "period": 300, "evaluation_periods": 2, "datapoints_to_alarm": 2}),
			"slo_metrics_absent": health("slo-metrics-absent",
				"Lambda counted at least ${var.heartbeat_min_invocations} invocations in each of two 15-minute periods and streamlens wrote records for most of them, but not one SLO outcome (StreamTruncated): the SLOs and their pages are blind. The function does not wrap its stream with the streamlens client, or the metrics go to another namespace or function name. Notifies the function's owners and ops. No invocations (missing data) is not breaching.",
				map[string]any{"threshold": 0.5, "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": 2, "datapoints_to_alarm": 2,
					"metric_query": []any{
						mq("inv", "AWS/Lambda", "Invocations", "Sum", "900"),
						mq("rec", "${var.namespace}", m.ColdStart, "SampleCount", "900"),
						mq("n", "${var.namespace}", m.StreamTruncated, "SampleCount", "900"),
						// Records missing too is the heartbeat's case: one
						// notification, not two.
						map[string]any{"id": "blind", "expression": "IF(inv >= ${var.heartbeat_min_invocations} AND FILL(rec, 0) >= inv * (1 - ${var.heartbeat_missing_ratio}), IF(FILL(n, 0) > 0, 0, 1), 0)",
							"label": "1: invocations with records but no SLO outcome", "return_data": true},
					}}),
			"idle_cut_risk": alarm("idle-cut-risk",
				"Streams went silent for 80 % or more of the idle limit a proxy cuts them at (STREAMLENS_IDLE_LIMIT_MS; API Gateway: 30 s edge-optimized, 5 min regional), in ${var.idle_cut_evaluation_periods} consecutive periods: callers behind such a proxy are about to lose streams that Lambda still reports as complete.",
				map[string]any{"metric_name": m.IdleNearLimit, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": 300,
					"evaluation_periods": "${var.idle_cut_evaluation_periods}", "datapoints_to_alarm": "${var.idle_cut_evaluation_periods}"}),
			"dropped_events": health("dropped-events",
				"streamlens lost events between the function and the extension (client drops or sequence gaps): metrics for some streams are incomplete.",
				map[string]any{"metric_name": m.DroppedEvents, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": "${var.dropped_events_period_seconds}",
					"evaluation_periods": "${var.dropped_events_evaluation_periods}"}),
			"config_errors": health("config-errors",
				"A STREAMLENS_* or OTEL_* value the extension could not use fell back to its default (the function's log names it): the configuration is not what was deployed.",
				map[string]any{"metric_name": m.ConfigErrors, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": 300, "evaluation_periods": 1}),
			"instrument_overflow": health("instrument-overflow",
				"More distinct instrument names than STREAMLENS_MAX_INSTRUMENTS in an hour (or names outside STREAMLENS_INSTRUMENT_ALLOW): their chunks go under Instrument=other. If the names come from callers, they are creating metrics; raise the cap only for real instruments.",
				map[string]any{"metric_name": m.InstrumentOverflow, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": 3600, "evaluation_periods": 1}),
			"span_export_failures": health("span-export-failures",
				"Spans the OTLP collector did not take, in every one of the evaluated periods: it refused them (SpanExportFailures: down, rejecting; the function's log says which, once a minute), or it did not answer within STREAMLENS_OTLP_TIMEOUT_MS for most of them (SpanExportUnknown over half of the spans exported: hanging, or a budget too short for it — an occasional cut is not counted here).",
				map[string]any{"threshold": 0, "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": "${var.span_export_evaluation_periods}", "datapoints_to_alarm": "${var.span_export_evaluation_periods}",
					"metric_query": []any{
						mq("f", "${var.namespace}", m.SpanExportFailures, "Sum", "${var.span_export_period_seconds}"),
						mq("u", "${var.namespace}", m.SpanExportUnknown, "Sum", "${var.span_export_period_seconds}"),
						mq("kept", "${var.namespace}", m.SpansKeptFailed, "Sum", "${var.span_export_period_seconds}"),
						mq("sampled", "${var.namespace}", m.SpansSampled, "Sum", "${var.span_export_period_seconds}"),
						map[string]any{"id": "lost", "return_data": true, "label": "spans refused, or mostly unanswered",
							"expression": "FILL(f, 0) + IF(FILL(u, 0) > 0.5 * (FILL(kept, 0) + FILL(sampled, 0)), FILL(u, 0), 0)"},
					}}),
		}},
	}
	// The owners hear when streamlens, or the SLOs' metrics, go missing:
	// every other alarm on their topic stays green on missing data.
	all := mod["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any)
	for _, k := range []string{"heartbeat", "slo_metrics_absent"} {
		a := all[k].(map[string]any)
		a["alarm_actions"] = OwnersAndOps
		a["ok_actions"] = OwnersAndOps
	}
	return mod
}

// OwnersAndOps is the topic list of the alarms on streamlens going missing.
const OwnersAndOps = "${concat(var.alarm_sns_topic_arns, var.ops_sns_topic_arns)}"

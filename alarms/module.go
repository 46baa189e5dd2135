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
	// One incident, one notification: with the completeness SLO's page
	// composite named, the truncation alarm notifies through a composite
	// that the page suppresses (a truncation incident fires both).
	tr := res["aws_cloudwatch_metric_alarm"].(map[string]any)["truncation_rate"].(map[string]any)
	tr["alarm_actions"] = `${var.truncation_suppressor_alarm_name == "" ? var.alarm_sns_topic_arns : []}`
	tr["ok_actions"] = tr["alarm_actions"]
	res["aws_cloudwatch_composite_alarm"] = map[string]any{"truncation_rate": map[string]any{
		"count":             `${var.truncation_suppressor_alarm_name == "" ? 0 : 1}`,
		"alarm_name":        "${var.alarm_name_prefix}-${var.function_name}-truncation-rate-notify",
		"alarm_description": "Notifies for the truncation-rate alarm unless the completeness SLO already pages. " + tfjson.Runbook("truncation-rate"),
		"alarm_rule":        `ALARM("${aws_cloudwatch_metric_alarm.truncation_rate.alarm_name}")`, // the documented form: the name quoted
		"alarm_actions":     "${var.alarm_sns_topic_arns}",
		"ok_actions":        "${var.alarm_sns_topic_arns}",
		"actions_suppressor": []any{map[string]any{
			"alarm": "${var.truncation_suppressor_alarm_name}", "extension_period": 3600, "wait_period": 300}},
	}}
	mod["output"] = map[string]any{"alarm_arns": map[string]any{
		"description": "every alarm of this module, for the dashboard's alarm widget",
		"value":       arns(mod["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any)),
	}}
	return mod
}

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
	return map[string]any{
		"terraform": tfjson.Providers(),
		"locals":    tfjson.RunbookLocals(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), tfjson.RunbookVars(), map[string]any{
			"alarm_name_prefix":                 tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"alarm_sns_topic_arns":              tfjson.Var("list(string)", "SNS topics notified on ALARM and OK by the alarms on the streams (truncation, TTFB, on-demand init)", []any{}),
			"truncation_suppressor_alarm_name":  tfjson.Var("string", "name of the alarm that, while it fires, holds back the truncation alarm's notifications: the completeness SLO's page composite (the slo module's page_alarm_names.completeness); empty: none", ""),
			"ops_sns_topic_arns":                tfjson.Var("list(string)", "SNS topics notified by the alarms on streamlens's own health (heartbeat, dropped events, configuration, instrument overflow, span export)", []any{}),
			"ttfb_min_streams":                  tfjson.Var("number", "the TTFB p99 alarm looks at a period only when it has at least this many streams: a p99 of a handful is one slow stream", 20),
			"ttfb_anomaly_alarm":                tfjson.Var("bool", "also alarm when TTFB p99 leaves its learned band (CloudWatch anomaly detection: a regression below the fixed threshold shows too)", false),
			"ttfb_anomaly_band":                 tfjson.Var("number", "width of the anomaly band, in standard deviations", 3),
			"heartbeat_min_invocations":         tfjson.Var("number", "the heartbeat alarm looks at a period only when Lambda counted at least this many invocations", 10),
			"heartbeat_missing_ratio":           tfjson.Var("number", "alarm when more than this share of Lambda's invocations has no streamlens record", 0.5),
			"truncation_threshold_percent":      tfjson.Var("number", "alarm when more than this % of streams are truncated", 0.1),
			"truncation_period_seconds":         tfjson.Var("number", "period of the truncation-rate alarm", 300),
			"truncation_evaluation_periods":     tfjson.Var("number", "periods evaluated by the truncation-rate alarm", 3),
			"truncation_datapoints_to_alarm":    tfjson.Var("number", "breaching periods (of those evaluated) that raise the alarm", 2),
			"ttfb_p99_threshold_ms":             tfjson.Var("number", "alarm when business TTFB p99 exceeds this", 100),
			"ttfb_period_seconds":               tfjson.Var("number", "period of the TTFB p99 alarm", 60),
			"ttfb_evaluation_periods":           tfjson.Var("number", "periods evaluated by the TTFB p99 alarm", 5),
			"ttfb_datapoints_to_alarm":          tfjson.Var("number", "breaching periods that raise the TTFB p99 alarm", 3),
			"provisioned_concurrency_expected":  tfjson.Var("bool", "create the alarm on on-demand inits (provisioned concurrency should serve every invocation)", false),
			"dropped_events_period_seconds":     tfjson.Var("number", "period of the dropped-events alarm", 300),
			"dropped_events_evaluation_periods": tfjson.Var("number", "periods evaluated by the dropped-events alarm", 1),
			"span_export_period_seconds":        tfjson.Var("number", "period of the span-export-failures alarm", 300),
			"span_export_evaluation_periods":    tfjson.Var("number", "periods evaluated (each must breach) by the span-export-failures alarm", 3),
		}),
		"resource": map[string]any{"aws_cloudwatch_metric_alarm": map[string]any{
			"truncation_rate": alarm("truncation-rate",
				"More than ${var.truncation_threshold_percent} % of response streams ended truncated by the service (timeout, crash, error, or fewer chunks than expected) although they may have returned HTTP 200. Streams whose caller went away, and streams streamlens could not judge, are not counted.",
				map[string]any{"threshold": "${var.truncation_threshold_percent / 100}", "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": "${var.truncation_evaluation_periods}", "datapoints_to_alarm": "${var.truncation_datapoints_to_alarm}",
					"metric_query": []any{
						mq("t", "${var.namespace}", m.StreamTruncated, "Sum", "${var.truncation_period_seconds}"),
						mq("n", "${var.namespace}", m.StreamTruncated, "SampleCount", "${var.truncation_period_seconds}"),
						mq("c", "${var.namespace}", m.TruncationByCaller, "Sum", "${var.truncation_period_seconds}"),
						mq("u", "${var.namespace}", m.TruncationUnobserved, "Sum", "${var.truncation_period_seconds}"),
						map[string]any{"id": "rate", "expression": TruncationRateExpression, "label": "truncated by the service (share)", "return_data": true},
					}}),
			"ttfb_p99": alarm("ttfb-p99",
				"Business time to first byte (handler start → first useful chunk), p99, is above ${var.ttfb_p99_threshold_ms} ms, in periods with at least ${var.ttfb_min_streams} streams.",
				map[string]any{"threshold": "${var.ttfb_p99_threshold_ms}", "comparison_operator": "GreaterThanThreshold",
					"evaluation_periods": "${var.ttfb_evaluation_periods}", "datapoints_to_alarm": "${var.ttfb_datapoints_to_alarm}",
					"metric_query": []any{
						mq("p99", "${var.namespace}", m.TimeToFirstByte, "p99", "${var.ttfb_period_seconds}"),
						mq("n", "${var.namespace}", m.TimeToFirstByte, "SampleCount", "${var.ttfb_period_seconds}"),
						// A period with few streams is not judged: its p99 is
						// its slowest stream.
						map[string]any{"id": "guarded", "expression": "IF(n >= ${var.ttfb_min_streams}, p99, 0)", "label": "TTFB p99 (enough streams)", "return_data": true},
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
				"More than ${var.heartbeat_missing_ratio} of the invocations Lambda counted have no streamlens record: the extension is not attached, crashed, or cannot write its metrics, and the other alarms see nothing. Missing data is breaching here.",
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
				"An on-demand init (InitDuration > 0 with InitType on-demand) happened while provisioned concurrency is expected to serve every invocation: cold starts are reaching users.",
				map[string]any{"count": "${var.provisioned_concurrency_expected ? 1 : 0}",
					"metric_name": m.InitDuration, "statistic": "SampleCount", "threshold": 0,
					"dimensions":          map[string]any{m.DimFunctionName: "${var.function_name}", m.DimInitType: "on-demand"},
					"comparison_operator": "GreaterThanThreshold", "period": 60, "evaluation_periods": 1}),
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
				"Spans the OTLP collector did not take, in every one of the evaluated periods: the collector (layer or backend) is down, too slow for STREAMLENS_OTLP_TIMEOUT_MS, or rejecting them (the function's log says which, once a minute).",
				map[string]any{"metric_name": m.SpanExportFailures, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": "${var.span_export_period_seconds}",
					"evaluation_periods": "${var.span_export_evaluation_periods}"}),
		}},
	}
}

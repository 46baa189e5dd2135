// Package alarms renders the streamlens CloudWatch alarms as a Terraform JSON
// module, from the metric definitions.
package alarms

import (
	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

func alarm(name, description string, extra map[string]any) map[string]any {
	a := map[string]any{
		"alarm_name":         "${var.alarm_name_prefix}-${var.function_name}-" + name,
		"alarm_description":  description,
		"namespace":          "${var.namespace}",
		"dimensions":         map[string]any{m.DimFunctionName: "${var.function_name}"},
		"alarm_actions":      "${var.alarm_sns_topic_arns}",
		"ok_actions":         "${var.alarm_sns_topic_arns}",
		"treat_missing_data": "notBreaching", // no streams is not an outage of streams
	}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

// Module is the alarms module.
func Module() map[string]any {
	return map[string]any{
		"terraform": tfjson.Providers(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), map[string]any{
			"alarm_name_prefix":                 tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"alarm_sns_topic_arns":              tfjson.Var("list(string)", "SNS topics notified on ALARM and OK", []any{}),
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
				"More than ${var.truncation_threshold_percent} % of response streams ended truncated (timeout, crash, error, client abort, or fewer chunks than expected) although they may have returned HTTP 200.",
				map[string]any{"metric_name": m.StreamTruncated, "statistic": "Average",
					"threshold":           "${var.truncation_threshold_percent / 100}",
					"comparison_operator": "GreaterThanThreshold", "period": "${var.truncation_period_seconds}",
					"evaluation_periods": "${var.truncation_evaluation_periods}", "datapoints_to_alarm": "${var.truncation_datapoints_to_alarm}"}),
			"ttfb_p99": alarm("ttfb-p99",
				"Business time to first byte (handler start → first useful chunk), p99, is above ${var.ttfb_p99_threshold_ms} ms.",
				map[string]any{"metric_name": m.TimeToFirstByte, "extended_statistic": "p99", "unit": "Milliseconds",
					"threshold": "${var.ttfb_p99_threshold_ms}", "comparison_operator": "GreaterThanThreshold",
					"period": "${var.ttfb_period_seconds}", "evaluation_periods": "${var.ttfb_evaluation_periods}",
					"datapoints_to_alarm": "${var.ttfb_datapoints_to_alarm}"}),
			"on_demand_init": alarm("on-demand-init",
				"An on-demand init (InitDuration > 0 with InitType on-demand) happened while provisioned concurrency is expected to serve every invocation: cold starts are reaching users.",
				map[string]any{"count": "${var.provisioned_concurrency_expected ? 1 : 0}",
					"metric_name": m.InitDuration, "statistic": "SampleCount", "threshold": 0,
					"dimensions":          map[string]any{m.DimFunctionName: "${var.function_name}", m.DimInitType: "on-demand"},
					"comparison_operator": "GreaterThanThreshold", "period": 60, "evaluation_periods": 1}),
			"dropped_events": alarm("dropped-events",
				"streamlens lost events between the function and the extension (client drops or sequence gaps): metrics for some streams are incomplete.",
				map[string]any{"metric_name": m.DroppedEvents, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": "${var.dropped_events_period_seconds}",
					"evaluation_periods": "${var.dropped_events_evaluation_periods}"}),
			"config_errors": alarm("config-errors",
				"A STREAMLENS_* or OTEL_* value the extension could not use fell back to its default (the function's log names it): the configuration is not what was deployed.",
				map[string]any{"metric_name": m.ConfigErrors, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": 300, "evaluation_periods": 1}),
			"instrument_overflow": alarm("instrument-overflow",
				"More distinct instrument names than STREAMLENS_MAX_INSTRUMENTS in an hour (or names outside STREAMLENS_INSTRUMENT_ALLOW): their chunks go under Instrument=other. If the names come from callers, they are creating metrics; raise the cap only for real instruments.",
				map[string]any{"metric_name": m.InstrumentOverflow, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": 3600, "evaluation_periods": 1}),
			"span_export_failures": alarm("span-export-failures",
				"Spans the OTLP collector did not take, in every one of the evaluated periods: the collector (layer or backend) is down, too slow for STREAMLENS_OTLP_TIMEOUT_MS, or rejecting them (the function's log says which, once a minute).",
				map[string]any{"metric_name": m.SpanExportFailures, "statistic": "Sum", "threshold": 0,
					"comparison_operator": "GreaterThanThreshold", "period": "${var.span_export_period_seconds}",
					"evaluation_periods": "${var.span_export_evaluation_periods}"}),
		}},
	}
}

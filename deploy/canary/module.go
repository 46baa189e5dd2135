// Package canary renders the canary's Terraform JSON module (canary.tf.json):
// the probe as a Lambda function (examples/canary) run on a schedule by
// EventBridge Scheduler, its IAM roles, and CloudWatch alarms on what its
// caller felt (the Caller* metrics under its own Probe dimension). It is
// generated from the metric definitions, as the other modules are, so that
// a renamed metric cannot leave an alarm behind; a test regenerates the
// committed file and fails on any difference (go generate ./deploy/canary
// writes it).
package canary

//go:generate go run gen.go

import (
	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

// File is the module's file, next to this source.
const File = "canary.tf.json"

// The alarms' runbook: the canary's section of docs/probe.md.
func runbook(anchor string) string { return "Runbook: ${local.runbook}#" + anchor }

// alarm is one alarm on the canary's metrics: its Probe dimension only.
func alarm(name, description string, extra map[string]any) map[string]any {
	a := map[string]any{
		"alarm_name":        "${var.alarm_name_prefix}-canary-${var.probe_name}-" + name,
		"alarm_description": description + " " + runbook("canary-"+name),
		"namespace":         "${var.namespace}",
		"dimensions":        map[string]any{m.DimProbe: "${var.probe_name}"},
		"alarm_actions":     "${var.alarm_sns_topic_arns}",
		"ok_actions":        "${var.alarm_sns_topic_arns}",
	}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

// Module is the canary module.
func Module() map[string]any {
	lambdaAssume := `${jsonencode({Version = "2012-10-17", Statement = [{Effect = "Allow", Action = "sts:AssumeRole", Principal = {Service = "lambda.amazonaws.com"}}]})}`
	// The scheduler's role may be assumed by Scheduler for this account's
	// schedules only (the confused-deputy guard AWS documents). The account
	// is read from the canary's ARN, not from a caller-identity data
	// source: that one needs AWS at plan time, and the module is planned
	// offline in its test.
	schedulerAssume := `${jsonencode({Version = "2012-10-17", Statement = [{Effect = "Allow", Action = "sts:AssumeRole", Principal = {Service = "scheduler.amazonaws.com"}, Condition = {StringEquals = {"aws:SourceAccount" = split(":", aws_lambda_function.canary.arn)[4]}}}]})}`
	// Since October 2025 a function URL wants both actions of its caller;
	// InvokeFunction only through the URL, not as a direct invoke.
	invokeURL := `${jsonencode({Version = "2012-10-17", Statement = [` +
		`{Effect = "Allow", Action = "lambda:InvokeFunctionUrl", Resource = [var.target_function_arn, "${var.target_function_arn}:*"], Condition = {StringEquals = {"lambda:FunctionUrlAuthType" = "AWS_IAM"}}}, ` +
		`{Effect = "Allow", Action = "lambda:InvokeFunction", Resource = [var.target_function_arn, "${var.target_function_arn}:*"], Condition = {Bool = {"lambda:InvokedViaFunctionUrl" = "true"}}}]})}`
	invokeCanary := `${jsonencode({Version = "2012-10-17", Statement = [{Effect = "Allow", Action = "lambda:InvokeFunction", Resource = [aws_lambda_function.canary.arn, "${aws_lambda_function.canary.arn}:*"]}]})}`

	alarms := map[string]any{
		"ttfb_p99": alarm("ttfb-p99",
			"The canary's p99 time to first byte, as its caller received it (DNS, connect and TLS included), was over ${var.ttfb_p99_threshold_ms} ms in ${var.ttfb_datapoints_to_alarm} of ${var.ttfb_evaluation_periods} periods of ${var.ttfb_period_seconds} s. With the canary's few probes a period's p99 is about its slowest probe. No probes (missing data) is the silent alarm's, not this one's.",
			map[string]any{
				"metric_name": m.CallerTimeToFirstByte, "extended_statistic": "p99",
				"comparison_operator": "GreaterThanThreshold", "threshold": "${var.ttfb_p99_threshold_ms}",
				"period": "${var.ttfb_period_seconds}", "evaluation_periods": "${var.ttfb_evaluation_periods}",
				"datapoints_to_alarm": "${var.ttfb_datapoints_to_alarm}", "treat_missing_data": "notBreaching",
			}),
		"truncation": alarm("truncation",
			"At least ${var.truncation_min_truncated} of the canary's responses were truncated as its caller saw them (the request failed, an error status or trailer, no end marker, a wrong SHA-256) in ${var.truncation_datapoints_to_alarm} of ${var.truncation_evaluation_periods} periods of ${var.truncation_period_seconds} s. The TruncationReason of the canary's log lines says why.",
			map[string]any{
				"metric_name": m.CallerTruncated, "statistic": "Sum",
				"comparison_operator": "GreaterThanOrEqualToThreshold", "threshold": "${var.truncation_min_truncated}",
				"period": "${var.truncation_period_seconds}", "evaluation_periods": "${var.truncation_evaluation_periods}",
				"datapoints_to_alarm": "${var.truncation_datapoints_to_alarm}", "treat_missing_data": "notBreaching",
			}),
		// The canary writes CallerTruncated on every probe, 0 or 1: no
		// sample in a period is a canary that did not run or could not
		// probe (no URL, its own errors), which the two alarms above
		// would take for good news.
		"silent": alarm("silent",
			"The canary wrote no result in ${var.silent_periods} periods of ${var.truncation_period_seconds} s: it did not run, failed before probing (its Errors metric, its log), or its schedule is disabled. Its other alarms see nothing meanwhile.",
			map[string]any{
				"metric_name": m.CallerTruncated, "statistic": "SampleCount",
				"comparison_operator": "LessThanThreshold", "threshold": 1,
				"period": "${var.truncation_period_seconds}", "evaluation_periods": "${var.silent_periods}",
				"treat_missing_data": "breaching",
			}),
	}

	return map[string]any{
		"terraform": tfjson.Providers(),
		"locals": map[string]any{
			"runbook": `${var.runbook_url != "" ? var.runbook_url : "docs/probe.md"}`,
		},
		"variable": map[string]any{
			"target_url":          tfjson.Var("string", "the URL the canary probes: the streaming function's URL, with its query (e.g. ?instruments=50)", nil),
			"probe_name":          tfjson.Var("string", "the canary's name: its Probe dimension, in its alarms' names", nil),
			"target_function_arn": tfjson.Var("string", "ARN of the probed function, for an AWS_IAM function URL: the canary's role may invoke it through its URL (requests are signed); empty: no such permission", ""),
			"canary_zip":          tfjson.Var("string", "zip holding the canary's bootstrap (examples/canary; GOOS=linux GOARCH=arm64, -tags lambda.norpc)", nil),
			"function_name":       tfjson.Var("string", "the canary function's name", "streamlens-canary"),
			"namespace":           tfjson.Var("string", "CloudWatch namespace of the canary's metrics (STREAMLENS_NAMESPACE)", m.DefaultNamespace),
			"schedule_expression": tfjson.Var("string", "when the canary runs: rate(), cron() or at() as EventBridge Scheduler takes them", "rate(5 minutes)"),
			"schedule_timezone":   tfjson.Var("string", "time zone of a cron() schedule", "UTC"),
			"schedule_enabled":    tfjson.Var("bool", "run the schedule (false: DISABLED, e.g. during a planned outage; the silent alarm then fires)", true),
			"probes_per_run":      tfjson.Var("number", "requests per invocation, one after another (STREAMLENS_CANARY_PROBES, 1 to 20)", 3),
			"envelope":            tfjson.Var("string", "how the body is read: pricing (the end marker's SHA-256 checked), lines, raw (STREAMLENS_PROBE_ENVELOPE)", "pricing"),
			"sigv4":               tfjson.Var("bool", "sign requests with the canary's role (an AWS_IAM function URL); false for a URL with auth NONE", true),
			"probe_timeout_ms":    tfjson.Var("number", "one probe's whole time (STREAMLENS_PROBE_TIMEOUT_MS); keep probes_per_run × this under the function's timeout", 20000),
			"memory_size":         tfjson.Var("number", "canary memory (MB)", 256),
			"timeout":             tfjson.Var("number", "canary timeout (s); 1.5 s of it is kept to report a probe the timeout cut", 90),
			"log_retention_days":  tfjson.Var("number", "retention of the canary's log group (its EMF lines)", 14),
			"otlp_endpoint":       tfjson.Var("string", "OTLP/HTTP base endpoint for the canary's client spans (OTEL_EXPORTER_OTLP_ENDPOINT); empty: no spans", ""),
			"runbook_url":         tfjson.Var("string", "URL of the published docs/probe.md; the alarms link its canary sections (default: the repository path)", ""),
			"alarm_name_prefix":   tfjson.Var("string", "prefix of every alarm name", "streamlens"),
			"alarm_sns_topic_arns": tfjson.Var("list(string)",
				"SNS topics notified on ALARM and OK by the canary's alarms", []any{}),
			"ttfb_p99_threshold_ms": tfjson.Var("number",
				"the TTFB alarm fires when the caller-side p99 time to first byte is over this; a new connection's DNS, TCP and TLS are in it, so it sits above the function's own TTFB budget", 1000),
			"ttfb_period_seconds":            tfjson.Var("number", "period of the TTFB alarm: a few runs of the canary", 900),
			"ttfb_evaluation_periods":        tfjson.Var("number", "periods evaluated by the TTFB alarm", 3),
			"ttfb_datapoints_to_alarm":       tfjson.Var("number", "breaching periods (of those evaluated) that raise the TTFB alarm", 2),
			"truncation_min_truncated":       tfjson.Var("number", "truncated probes in a period that make it breaching", 1),
			"truncation_period_seconds":      tfjson.Var("number", "period of the truncation and silent alarms", 900),
			"truncation_evaluation_periods":  tfjson.Var("number", "periods evaluated by the truncation alarm", 2),
			"truncation_datapoints_to_alarm": tfjson.Var("number", "breaching periods that raise the truncation alarm: 2 of 2, so that one blip does not page", 2),
			"silent_periods":                 tfjson.Var("number", "periods without any result that raise the silent alarm", 2),
		},
		"resource": map[string]any{
			"aws_iam_role": map[string]any{
				"canary":    map[string]any{"name": "${var.function_name}-lambda", "assume_role_policy": lambdaAssume},
				"scheduler": map[string]any{"name": "${var.function_name}-scheduler", "assume_role_policy": schedulerAssume},
			},
			"aws_iam_role_policy_attachment": map[string]any{
				"logs": map[string]any{"role": "${aws_iam_role.canary.name}", "policy_arn": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"},
			},
			"aws_iam_role_policy": map[string]any{
				"invoke_target_url": map[string]any{
					"count": `${var.target_function_arn != "" ? 1 : 0}`,
					"name":  "invoke-target-url", "role": "${aws_iam_role.canary.id}", "policy": invokeURL,
				},
				"invoke_canary": map[string]any{"name": "invoke-canary", "role": "${aws_iam_role.scheduler.id}", "policy": invokeCanary},
			},
			"aws_cloudwatch_log_group": map[string]any{
				"canary": map[string]any{"name": "/aws/lambda/${var.function_name}", "retention_in_days": "${var.log_retention_days}"},
			},
			"aws_lambda_function": map[string]any{"canary": map[string]any{
				"function_name":    "${var.function_name}",
				"description":      "streamlens canary: probes its target URL as a caller (Probe=${var.probe_name})",
				"role":             "${aws_iam_role.canary.arn}",
				"runtime":          "provided.al2023",
				"handler":          "bootstrap",
				"architectures":    []any{"arm64"},
				"filename":         "${var.canary_zip}",
				"source_code_hash": "${filebase64sha256(var.canary_zip)}",
				"memory_size":      "${var.memory_size}",
				"timeout":          "${var.timeout}",
				"environment": map[string]any{"variables": map[string]any{
					"STREAMLENS_CANARY_URL":       "${var.target_url}",
					"STREAMLENS_PROBE_NAME":       "${var.probe_name}",
					"STREAMLENS_CANARY_PROBES":    "${var.probes_per_run}",
					"STREAMLENS_CANARY_SIGV4":     `${var.sigv4 ? "on" : "off"}`,
					"STREAMLENS_PROBE_ENVELOPE":   "${var.envelope}",
					"STREAMLENS_PROBE_TIMEOUT_MS": "${var.probe_timeout_ms}",
					"STREAMLENS_NAMESPACE":        "${var.namespace}",
					"STREAMLENS_OTLP":             `${var.otlp_endpoint == "" ? "off" : "on"}`,
					"STREAMLENS_OTLP_ENDPOINT":    `${var.otlp_endpoint == "" ? "http://localhost:4318" : var.otlp_endpoint}`,
				}},
				"depends_on": []any{"aws_cloudwatch_log_group.canary", "aws_iam_role_policy_attachment.logs"},
			}},
			"aws_scheduler_schedule": map[string]any{"canary": map[string]any{
				"name":                         "${var.function_name}",
				"description":                  "streamlens canary ${var.probe_name}",
				"schedule_expression":          "${var.schedule_expression}",
				"schedule_expression_timezone": "${var.schedule_timezone}",
				"state":                        `${var.schedule_enabled ? "ENABLED" : "DISABLED"}`,
				"flexible_time_window":         map[string]any{"mode": "OFF"}, // on time: a canary's gaps are its silence
				"target": map[string]any{
					"arn": "${aws_lambda_function.canary.arn}", "role_arn": "${aws_iam_role.scheduler.arn}", "input": "{}",
					// No retry: a failed run is reported by the next one
					// and by the silent alarm; a retry would bunch probes.
					"retry_policy": map[string]any{"maximum_retry_attempts": 0, "maximum_event_age_in_seconds": 60},
				},
			}},
			"aws_cloudwatch_metric_alarm": alarms,
		},
		"output": map[string]any{
			"function_name": map[string]any{"description": "the canary function", "value": "${aws_lambda_function.canary.function_name}"},
			"schedule_arn":  map[string]any{"description": "the canary's schedule", "value": "${aws_scheduler_schedule.canary.arn}"},
			"alarm_arns": map[string]any{"description": "the canary's alarms, for a dashboard's alarm widget",
				"value": "${[aws_cloudwatch_metric_alarm.silent.arn, aws_cloudwatch_metric_alarm.truncation.arn, aws_cloudwatch_metric_alarm.ttfb_p99.arn]}"},
		},
	}
}

// Render is the module as committed: tfjson's deterministic form.
func Render() ([]byte, error) { return tfjson.Marshal(Module()) }

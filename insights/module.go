// Package insights renders, as a Terraform JSON module, the CloudWatch
// Contributor Insights rules and Logs Insights saved queries that find the
// truncating bundle, the slow one or the client behind them from the EMF
// properties: the ids that must never be metric dimensions (each distinct
// value would be a billed custom metric) are still searchable and ranked.
package insights

import (
	"encoding/json"

	"github.com/streamlens/streamlens/internal/tfjson"
	m "github.com/streamlens/streamlens/metrics"
)

// logGroup is the function's log group, where the extension's EMF lines go.
const logGroup = "${local.log_group}"

// Rule is one Contributor Insights rule over the stream documents.
type Rule struct {
	Name, Description string
	Keys              []string // properties to rank by (at most 4)
	Filters           []map[string]any
	ValueOf           string // a numeric property to sum; "" counts log events
}

// Rules lists the contributor rules.
func Rules() []Rule {
	stream := map[string]any{"Match": "$." + m.PropQuoteID, "IsPresent": true}
	return []Rule{
		{Name: "truncations-by-bundle", Description: "bundles (and why) whose streams ended truncated",
			Keys:    []string{"$." + m.PropBundleID, "$." + m.PropTruncateReason},
			Filters: []map[string]any{stream, {"Match": "$." + m.StreamTruncated, "EqualTo": 1}}},
		{Name: "truncations-by-client", Description: "clients whose streams ended truncated",
			Keys: []string{"$." + m.PropClientID}, Filters: []map[string]any{stream, {"Match": "$." + m.StreamTruncated, "EqualTo": 1}}},
		{Name: "slow-first-byte-by-bundle", Description: "bundles whose first useful chunk came after the TTFB threshold",
			Keys: []string{"$." + m.PropBundleID}, Filters: []map[string]any{stream, {"Match": "$." + m.TTFBBudgetBreach, "EqualTo": 1}}},
		{Name: "integrity-mismatches-by-bundle", Description: "bundles whose declared hash differed from the delivered bytes'",
			Keys: []string{"$." + m.PropBundleID}, Filters: []map[string]any{stream, {"Match": "$." + m.IntegrityMismatch, "EqualTo": 1}}},
	}
}

// Definition is the rule's JSON (the CloudWatchLogRule schema).
func (r Rule) Definition() (string, error) {
	contribution := map[string]any{"Keys": r.Keys, "Filters": r.Filters}
	aggregate := "Count"
	if r.ValueOf != "" {
		contribution["ValueOf"] = r.ValueOf
		aggregate = "Sum"
	}
	b, err := json.Marshal(map[string]any{
		"Schema":        map[string]any{"Name": "CloudWatchLogRule", "Version": 1},
		"LogGroupNames": []string{logGroup},
		"LogFormat":     "JSON",
		"Contribution":  contribution,
		"AggregateOn":   aggregate,
	})
	return string(b), err
}

// Query is one Logs Insights saved query.
type Query struct{ Name, Query string }

// Queries lists the saved queries.
func Queries() []Query {
	return []Query{
		{"truncated-streams", `fields @timestamp, BundleId, ClientId, TruncationReason, ChunksDelivered, ChunksExpected, RequestId, TraceParent
| filter StreamTruncated = 1
| sort @timestamp desc
| limit 100`},
		{"truncation-by-bundle", `filter ispresent(QuoteId)
| stats count(*) as streams, sum(StreamTruncated) as truncated, 100 * sum(StreamTruncated) / count(*) as truncated_pct, sum(TruncationByCaller) as callers_gone by BundleId
| sort truncated desc
| limit 50`},
		{"truncation-reasons", `filter StreamTruncated = 1
| stats count(*) as truncated by BundleId, TruncationReason
| sort truncated desc
| limit 50`},
		{"slowest-first-bytes", `fields @timestamp, TimeToFirstByte, TruncationReason, BundleId, ClientId, RequestId, TraceParent
| filter TTFBBudgetBreach = 1
| sort ispresent(TimeToFirstByte) asc, TimeToFirstByte desc
| limit 50`},
		{"ttfb-by-bundle", `filter ispresent(TTFBBudgetBreach)
| stats count(*) as outcomes, sum(TTFBBudgetBreach) as over_budget, count(*) - count(TimeToFirstByte) as no_first_byte, pct(TimeToFirstByte, 50) as p50, pct(TimeToFirstByte, 99) as p99 by BundleId
| sort over_budget desc
| limit 50`},
		// ExtensionOverhead is not here: an invocation whose outcome went
		// with its stream's document has it in the platform document, many
		// values an event; the dashboard draws its percentiles.
		{"what-streamlens-costs", `filter ispresent(ExtensionCPU)
| stats count(*) as invocations, pct(ExtensionCPU, 50) as cpu_p50_ms, pct(ExtensionCPU, 99) as cpu_p99_ms by bin(1h)`},
		{"streamlens-messages", `fields @timestamp, @message
| filter @message like /streamlens: |EXTENSION/
| sort @timestamp desc
| limit 100`},
		{"records-vs-invocations", `filter @type = "REPORT" or ispresent(ColdStart)
| stats count(@duration) as invocations, count(ColdStart) as streamlens_records by bin(5m)
| sort bin(5m) desc`},
		{"cold-starts", `filter ispresent(InitDuration)
| stats count(*) as cold_starts, pct(InitDuration, 50) as init_p50_ms, pct(InitDuration, 99) as init_p99_ms by InitType, bin(1h)`},
		{"failed-before-first-byte", `fields @timestamp, InvocationStatus, ErrorType, TruncationReason, RequestId
| filter FailedBeforeFirstByte = 1
| stats count(*) as invocations by InvocationStatus, ErrorType, bin(5m)
| sort invocations desc
| limit 50`},
		{"extension-problems", `filter ispresent(EventsReceived)
| stats sum(MalformedEvents) as malformed, sum(ConfigErrors) as config_errors, sum(SpanExportFailures) as span_export_failures, sum(DroppedEMFLines) as dropped_emf_lines, sum(EvictedStreams) as evicted, sum(KernelDrops) as kernel_drops, sum(EventAddressUnusable) as address_unusable by bin(1h)`},
	}
}

// Module is the insights module.
func Module() (map[string]any, error) {
	rules := map[string]any{}
	for _, r := range Rules() {
		def, err := r.Definition()
		if err != nil {
			return nil, err
		}
		rules[r.Name] = map[string]any{
			"count":           "${var.contributor_insights ? 1 : 0}",
			"rule_name":       "${var.name_prefix}-${var.function_name}-" + r.Name,
			"rule_state":      "ENABLED",
			"rule_definition": def,
		}
	}
	queries := map[string]any{}
	for _, q := range Queries() {
		queries[q.Name] = map[string]any{
			"name":            "${var.name_prefix}/${var.function_name}/" + q.Name,
			"log_group_names": []string{logGroup},
			"query_string":    q.Query,
		}
	}
	return map[string]any{
		"terraform": tfjson.Providers(),
		"variable": tfjson.Merge(tfjson.FunctionVars(m.DefaultNamespace), map[string]any{
			"name_prefix":          tfjson.Var("string", "prefix of every rule and query name", "streamlens"),
			"log_group_name":       tfjson.Var("string", "the function's log group (default /aws/lambda/<function_name>)", ""),
			"contributor_insights": tfjson.Var("bool", "create the Contributor Insights rules ($0.50 a rule and month, plus $0.02 per million matched log events, at list price)", true),
		}),
		"locals": map[string]any{
			"log_group": `${var.log_group_name != "" ? var.log_group_name : "/aws/lambda/${var.function_name}"}`,
		},
		"resource": map[string]any{
			"aws_cloudwatch_contributor_insight_rule": rules,
			"aws_cloudwatch_query_definition":         queries,
		},
	}, nil
}

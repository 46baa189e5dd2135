package insights

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/state"
)

// documents returns what the extension writes for a truncated stream with a
// hash mismatch and a slow first byte, its invocation, and the counters.
func documents(t *testing.T) []map[string]any {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	enc := emfsink.New(emfsink.Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond, InstrumentMetrics: true})
	b := emfsink.Batch{
		Streams: []state.Result{{QuoteID: "q", RequestID: "r", BundleID: "EQ-EU-50", ClientID: "desk-7", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			Time: now, HasTTFB: true, TTFBMs: 150, Delivered: 20, Expected: 50, Verdict: state.Verdict{Cause: state.EndStatus, Detail: "aborted", Class: state.Caller}, Status: "error", Integrity: 1, PlatformLatencyMs: -1}},
		Invocations: []state.InvocationResult{{RequestID: "r", Time: now, Done: &state.RuntimeDone{Status: "success"}, Report: &state.Report{DurationMs: 3}, CPU: time.Millisecond,
			ColdStart: true, FirstRecord: true, InitKnown: true, Init: state.InitReport{InitType: "on-demand", DurationMs: 180}},
			{RequestID: "r2", Time: now, Done: &state.RuntimeDone{Status: "error", ErrorType: "Runtime.HandlerError"},
				Verdict: state.Verdict{Cause: state.Platform, Detail: "error", Class: state.BeforeFirstByte}}},
		Counters: counters.Counters{Malformed: 1},
		Final:    true,
	}
	var out []byte
	if errs := enc.Write(b, now, now.Add(time.Second), func(p []byte) { out = append(out, p...) }); len(errs) > 0 {
		t.Fatal(errs)
	}
	var docs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	return docs
}

// Every rule matches the stream it is about, and ranks it by properties the
// document has: a renamed property would leave a rule matching nothing.
func TestRulesMatchTheStreamDocuments(t *testing.T) {
	docs := documents(t)
	for _, r := range Rules() {
		def, err := r.Definition()
		if err != nil || !json.Valid([]byte(def)) {
			t.Fatalf("%s: %v", r.Name, err)
		}
		matched := 0
		for _, d := range docs {
			ok := true
			for _, f := range r.Filters {
				v, present := d[strings.TrimPrefix(f["Match"].(string), "$.")]
				switch {
				case f["IsPresent"] == true:
					ok = ok && present
				case f["EqualTo"] != nil:
					ok = ok && present && v == float64(f["EqualTo"].(int))
				}
			}
			if !ok {
				continue
			}
			matched++
			for _, k := range r.Keys {
				if s, _ := d[strings.TrimPrefix(k, "$.")].(string); s == "" {
					t.Errorf("%s: key %s missing from %v", r.Name, k, d)
				}
			}
		}
		if matched != 1 {
			t.Errorf("%s matched %d documents, want the stream's", r.Name, matched)
		}
	}
}

// Every field a saved query names is one the extension writes.
func TestQueriesNameFieldsTheDocumentsHave(t *testing.T) {
	have := map[string]bool{}
	for _, d := range documents(t) {
		for k := range d {
			have[k] = true
		}
	}
	ident := regexp.MustCompile(`\b[A-Z][A-Za-z]+\b`)
	// Strings and the patterns after like are not field names: what a
	// query looks for in Lambda's own lines (REPORT, EXTENSION).
	literal := regexp.MustCompile(`"[^"]*"|like /[^/]*/`)
	for _, q := range Queries() {
		for _, f := range ident.FindAllString(literal.ReplaceAllString(q.Query, ""), -1) {
			if !have[f] {
				t.Errorf("query %s names %s, which no document has", q.Name, f)
			}
		}
	}
}

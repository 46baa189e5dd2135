package emfsink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/state"
	m "github.com/streamlens/streamlens/metrics"
)

// Every name the extension writes is defined once, in package metrics: each
// metric with its unit (Defs), each other key as a property (Properties) or
// a dimension. Documents of every kind, with every optional field present,
// are written and read back.
func TestEveryEmittedNameIsDefined(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var all counters.Counters
	v := reflect.ValueOf(&all).Elem()
	for i := 0; i < v.NumField(); i++ {
		v.Field(i).SetInt(1) // every count present
	}
	chunks := []state.Chunk{{Inst: "AAPL", LatencyMs: 3, IntervalMs: 2, Seq: 1, Bytes: 10}}
	stream := func(v state.Verdict) state.Result {
		return state.Result{QuoteID: "q", RequestID: "r", BundleID: "B", ClientID: "c", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			Time: now, HasTTFB: true, TTFBMs: 5, Chunks: chunks, Delivered: 1, Expected: 3, Bytes: 10, Verdict: v, Status: "error",
			Integrity: 1, InvocationStatus: "error", HasBlocked: true, BlockedMs: 5, BlockedMaxMs: 3, PlatformLatencyMs: -1,
			LongestGapMs: 29_000}
	}
	done := &state.RuntimeDone{Status: "error", ErrorType: "Runtime.HandlerError", ProducedBytes: 10, HasLatency: true, HasDuration: true,
		ResponseLatencyMs: 1, ResponseDurationMs: 2}
	b := Batch{
		Streams: []state.Result{stream(state.Verdict{Cause: state.EndStatus, Detail: "aborted", Class: state.Caller}),
			stream(state.Verdict{Cause: state.Shutdown, Detail: "spindown", Class: state.Unobserved})},
		Invocations: []state.InvocationResult{
			{RequestID: "r", Time: now, ColdStart: true, FirstRecord: true, InitKnown: true, Init: state.InitReport{InitType: "on-demand", DurationMs: 100},
				Done: done, Report: &state.Report{DurationMs: 5}, MissingDone: true, CPU: time.Millisecond,
				Verdict: state.Verdict{Cause: state.Platform, Detail: "error", Class: state.BeforeFirstByte}},
			{RequestID: "r2", Time: now, Done: &state.RuntimeDone{Status: "success"}, NonStreaming: true},
			// A response of megabytes: its delivery rate.
			{RequestID: "r3", Time: now, Done: &state.RuntimeDone{Status: "success", ProducedBytes: 8e6, HasDuration: true, ResponseDurationMs: 1000}, NonStreaming: true},
		},
		Counters: all, Final: true,
	}
	b.Streams[1].Bytes = 300 << 20 // past the bandwidth cap and the response limit
	var out []byte
	for _, instrumentMetrics := range []bool{false, true} {
		enc := New(Config{Namespace: "Streamlens", FunctionName: "f", TTFBThreshold: time.Millisecond, InstrumentMetrics: instrumentMetrics, Version: "7",
			IdleLimit: 30 * time.Second})
		if errs := enc.Write(b, now, now.Add(time.Hour), func(p []byte) { out = append(out, p...) }); len(errs) > 0 {
			t.Fatal(errs)
		}
		inst := NewInstruments(10)
		inst.Add(b.Streams, now)
		o, _ := enc.Take(nil, inst, now, true)
		out = append(out, o...)
	}
	units := map[string]string{}
	for _, d := range m.Defs() {
		units[d.Name] = string(d.Unit)
	}
	known := map[string]bool{"_aws": true, m.DimFunctionName: true, m.DimInstrument: true, m.DimInitType: true, m.DimVersion: true}
	for _, p := range m.Properties() {
		known[p] = true
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		var aws struct {
			CloudWatchMetrics []struct{ Metrics []struct{ Name, Unit string } }
		}
		_ = json.Unmarshal(doc["_aws"], &aws)
		metrics := map[string]bool{}
		for _, d := range aws.CloudWatchMetrics {
			for _, mt := range d.Metrics {
				metrics[mt.Name] = true
				seen[mt.Name] = true
				if u, ok := units[mt.Name]; !ok || u != mt.Unit {
					t.Errorf("metric %s written with unit %q; defined: %v (%q)", mt.Name, mt.Unit, ok, u)
				}
			}
		}
		for k := range doc {
			if !metrics[k] && !known[k] {
				t.Errorf("key %q is written but defined nowhere in package metrics", k)
			}
		}
	}
	// And the definitions are not dead: every defined metric but the
	// platform's response figures the encoder reads from elsewhere was seen.
	for _, d := range m.Defs() {
		if !seen[d.Name] && !slices.Contains([]string{m.InstrumentOverflow, m.InstrumentValuesDropped, m.InvalidDimensionValues}, d.Name) {
			t.Errorf("metric %s is defined but was not written by any document here", d.Name)
		}
	}
}

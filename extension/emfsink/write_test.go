package emfsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/cwcheck"
)

// A flush of 300 streams × 2,000 chunks with unique instrument names (the
// worst a function can send under the default caps): every stream's own
// document is written, per-chunk detail is shed past the budget and counted,
// stdout gets pieces, not one buffer of the whole flush.
func TestFlushIsBoundedAndShedsDetailFirst(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	var output []byte
	var sizes []int
	var b Batch
	for i := 0; i < 300; i++ {
		res := state.Result{QuoteID: fmt.Sprintf("q%d", i), RequestID: "r1", Time: time.Now(), Expected: 2000, Delivered: 2000, Status: "complete", Integrity: -1}
		for c := 0; c < 2000; c++ {
			res.Chunks = append(res.Chunks, state.Chunk{Inst: fmt.Sprintf("I%d-%d", i, c), LatencyMs: float32(c), IntervalMs: 1})
		}
		b.Streams = append(b.Streams, res)
	}
	if errs := enc.Write(b, time.Now(), time.Now().Add(time.Hour), func(p []byte) {
		sizes = append(sizes, len(p))
		output = append(output, p...)
	}); len(errs) > 0 {
		t.Fatal(errs)
	}

	streams, shed := 0, 0.0
	for _, line := range bytes.Split(bytes.TrimSpace(output), []byte("\n")) {
		var d map[string]any
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("invalid line: %v", err)
		}
		if _, ok := d["QuoteId"]; ok {
			if _, ok := d["StreamTruncated"]; ok {
				streams++
			}
		}
		if v, ok := d["ShedChunkDetail"].(float64); ok {
			shed += v
		}
	}
	if streams != 300 {
		t.Errorf("%d stream documents, want all 300", streams)
	}
	if detail := countStreamsWithDetail(output); detail == 0 || detail >= 300 || shed != float64(300-detail) {
		t.Errorf("streams with per-chunk detail: %d, shed counted %v", detail, shed)
	}
	total, largest := 0, 0
	for _, n := range sizes {
		total += n
		largest = max(largest, n)
	}
	// The detail budget plus the streams' own documents, not 300 × 2,000
	// values (~25 MB).
	if total > detailBytes+300*1024+pieceBytes {
		t.Errorf("flush wrote %d bytes", total)
	}
	if largest > 2*pieceBytes {
		t.Errorf("a piece of %d bytes handed to stdout", largest)
	}
}

// countStreamsWithDetail counts the streams (by quote id) that have at least
// one document with per-chunk values: a stream's 2,000 values span several
// documents of 100 each.
func countStreamsWithDetail(b []byte) int {
	ids := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var d map[string]any
		_ = json.Unmarshal(line, &d)
		if _, ok := d["ChunkLatency"]; ok {
			if q, ok := d["QuoteId"].(string); ok {
				ids[q] = true
			}
		}
	}
	return len(ids)
}

// A stream that ended before its first byte (a crash, a timeout before the
// first quote) has no TTFB, and is a TTFB failure all the same: it counts
// as a breach, so the TTFB SLO sees it. A stream that delivered chunks but
// has no start (no TTFB known) is not judged.
func TestNoFirstByteIsATTFBBreach(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for name, c := range map[string]struct {
		r    state.Result
		want any
	}{
		"nothing delivered":         {state.Result{QuoteID: "q", RequestID: "r", Time: now, Verdict: state.Verdict{Cause: state.Platform, Detail: "failure", Class: state.BeforeFirstByte}, Integrity: -1, Expected: 50}, 1.0},
		"caller left before a byte": {state.Result{QuoteID: "q", RequestID: "r", Time: now, Verdict: state.Verdict{Cause: state.EndStatus, Detail: "aborted", Class: state.Caller}, Integrity: -1, Expected: 50}, nil},
		"chunks but no start":       {state.Result{QuoteID: "q", RequestID: "r", Time: now, Verdict: state.Verdict{Cause: state.NoEnd, Class: state.Service}, Delivered: 3, Integrity: -1, Expected: -1}, nil},
		"complete, no TTFB known":   {state.Result{QuoteID: "q", RequestID: "r", Time: now, Delivered: 5, Integrity: -1, Expected: -1}, nil},
		"slow first byte":           {state.Result{QuoteID: "q", RequestID: "r", Time: now, HasTTFB: true, TTFBMs: 150, Delivered: 5, Integrity: -1, Expected: -1}, 1.0},
		"first byte within budget":  {state.Result{QuoteID: "q", RequestID: "r", Time: now, HasTTFB: true, TTFBMs: 15, Delivered: 5, Integrity: -1, Expected: -1}, 0.0},
	} {
		out, err := enc.AppendStream(nil, &c.r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		if d["TTFBBudgetBreach"] != c.want {
			t.Errorf("%s: TTFBBudgetBreach %v, want %v", name, d["TTFBBudgetBreach"], c.want)
		}
	}
}

// Truncations that are not the service's are told apart by their class: the
// caller went away, or streamlens could not judge the stream (open at a
// spin-down). Service truncations carry neither.
func TestTruncationsNotByTheService(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for class, want := range map[state.Class]string{
		state.Caller: "TruncationByCaller", state.Unobserved: "TruncationUnobserved", state.Service: "", state.BeforeFirstByte: "",
	} {
		r := state.Result{QuoteID: "q", RequestID: "r", Time: now, Verdict: state.Verdict{Cause: state.NoEnd, Class: class}, Delivered: 3, Integrity: -1, Expected: -1}
		out, err := enc.AppendStream(nil, &r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"TruncationByCaller", "TruncationUnobserved"} {
			if got, ok := d[k]; ok != (k == want) || ok && got != 1.0 {
				t.Errorf("%s: %s = %v", class, k, got)
			}
		}
		// The service's own truncations carry the one metric a query over
		// many functions ranks by; the others do not.
		if _, ok := d["TruncatedByService"]; ok != (want == "") {
			t.Errorf("%s: TruncatedByService present %v", class, ok)
		}
	}
}

// Every invocation's record is its outcome: one that failed before any
// stream started is one bad event for both SLOs (as a stream that never sent
// a byte), with the platform's status and error type; one that succeeded
// without a stream is counted apart; one with streams leaves the SLIs to them.
func TestInvocationOutcome(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	failed := &state.RuntimeDone{Status: "error", ErrorType: "Runtime.HandlerError"}
	for name, c := range map[string]struct {
		inv  state.InvocationResult
		want map[string]any // nil: absent
	}{
		"failed before the first byte": {state.InvocationResult{RequestID: "r", Done: failed, Verdict: state.Verdict{Cause: state.Platform, Detail: "error", Class: state.BeforeFirstByte}},
			map[string]any{"StreamTruncated": 1.0, "TTFBBudgetBreach": 1.0, "FailedBeforeFirstByte": 1.0, "TruncationReason": "runtime-error",
				"InvocationStatus": "error", "ErrorType": "Runtime.HandlerError", "NonStreamingInvocations": nil}},
		"failed with a stream": {state.InvocationResult{RequestID: "r", Done: failed, Streams: 1},
			map[string]any{"StreamTruncated": nil, "TTFBBudgetBreach": nil, "FailedBeforeFirstByte": nil, "InvocationStatus": "error"}},
		"no stream, success": {state.InvocationResult{RequestID: "r", Done: &state.RuntimeDone{Status: "success"}, NonStreaming: true},
			map[string]any{"StreamTruncated": nil, "NonStreamingInvocations": 1.0, "InvocationStatus": nil, "ErrorType": nil}},
		"Managed Instances report": {state.InvocationResult{RequestID: "r", Done: &state.RuntimeDone{Status: "timeout", FromReport: true, HasLatency: true, ResponseLatencyMs: 4},
			Report: &state.Report{DurationMs: 9}, Streams: 1},
			map[string]any{"ProducedBytes": nil, "ExtensionOverhead": nil, "ResponseLatency": 4.0, "InvocationStatus": "timeout", "RuntimeDoneMissing": nil}},
	} {
		out, err := enc.AppendInvocation(nil, &c.inv, now)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		for k, want := range c.want {
			if got, ok := d[k]; want == nil && ok || want != nil && got != want {
				t.Errorf("%s: %s = %v, want %v", name, k, got, want)
			}
		}
	}
}

// A record is stamped where an alarm evaluated now finds it: at its
// outcome's end, not its start (a stream that hung 10 minutes), and never
// more than a minute before it is written (a stream carried to the next thaw).
func TestRecordsAreStampedWhereAlarmsLook(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for name, c := range map[string]struct {
		r    state.Result
		want time.Time
	}{
		"a 10-minute hang, written at its end": {state.Result{Time: now.Add(-10 * time.Minute), EndTime: now.Add(-10*time.Minute + time.Second),
			InvocationEnd: now.Add(-2 * time.Second), Verdict: state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}}, now.Add(-2 * time.Second)},
		"a quick stream":            {state.Result{Time: now.Add(-300 * time.Millisecond), EndTime: now.Add(-100 * time.Millisecond)}, now.Add(-100 * time.Millisecond)},
		"carried to the next thaw":  {state.Result{Time: now.Add(-time.Hour), EndTime: now.Add(-time.Hour)}, now},
		"a clock ahead of the host": {state.Result{Time: now.Add(time.Minute), EndTime: now.Add(time.Minute)}, now},
	} {
		c.r.QuoteID, c.r.RequestID, c.r.Integrity, c.r.Expected = "q", "r", -1, -1
		out, err := enc.AppendStream(nil, &c.r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			AWS struct{ Timestamp int64 } `json:"_aws"`
		}
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		if d.AWS.Timestamp != c.want.UnixMilli() {
			t.Errorf("%s: stamped %v before now, want %v", name, now.Sub(time.UnixMilli(d.AWS.Timestamp)), now.Sub(c.want))
		}
	}
	inv := state.InvocationResult{RequestID: "r", Time: now.Add(-10 * time.Minute), End: now.Add(-3 * time.Second)}
	out, _ := enc.AppendInvocation(nil, &inv, now)
	if !bytes.Contains(out, []byte(fmt.Sprintf(`"Timestamp":%d`, now.Add(-3*time.Second).UnixMilli()))) {
		t.Errorf("invocation record not stamped at its end: %s", out)
	}
}

// With STREAMLENS_VERSION_DIMENSION=on the stream metrics are published
// per function version too; off (the default), the document is unchanged.
func TestVersionDimension(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := state.Result{QuoteID: "q", RequestID: "r", Time: now, Delivered: 5, Integrity: -1, Expected: -1, HasTTFB: true, TTFBMs: 12}
	for version, want := range map[string]string{"": `[["FunctionName"]]`, "7": `[["FunctionName"],["FunctionName","Version"]]`} {
		enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond, Version: version})
		out, err := enc.AppendStream(nil, &r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte(`"Dimensions":`+want)) || (version != "") != bytes.Contains(out, []byte(`"Version":"7"`)) {
			t.Errorf("version %q: %s", version, out)
		}
	}
}

// Backpressure the client measured is its own metric, written when the
// writer was blocked at least 1 ms: it no longer reads as a slow instrument.
func TestWriteBlockedTime(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for name, c := range map[string]struct {
		r          state.Result
		total, max any
	}{
		"blocked":      {state.Result{HasBlocked: true, BlockedMs: 250.5, BlockedMaxMs: 120}, 250.5, 120.0},
		"under 1 ms":   {state.Result{HasBlocked: true, BlockedMs: 0.4, BlockedMaxMs: 0.2}, nil, nil},
		"not measured": {state.Result{}, nil, nil},
	} {
		c.r.QuoteID, c.r.RequestID, c.r.Time, c.r.Integrity, c.r.Expected = "q", "r", now, -1, -1
		out, err := enc.AppendStream(nil, &c.r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		if d["WriteBlockedTime"] != c.total || d["WriteBlockedLongest"] != c.max {
			t.Errorf("%s: %v / %v, want %v / %v", name, d["WriteBlockedTime"], d["WriteBlockedLongest"], c.total, c.max)
		}
	}
}

// Stream health is written only when it applies: a silence of at least 1 s,
// one near the idle limit (80 %), Lambda's 6 MB bandwidth cap, its 200 MiB
// response limit.
func TestStreamHealth(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond, IdleLimit: 30 * time.Second})
	now := time.Unix(1_800_000_000, 0)
	for name, c := range map[string]struct {
		gap   float64
		bytes int64
		want  map[string]any
	}{
		"healthy":          {12, 5000, map[string]any{"LongestChunkGap": nil, "IdleNearLimit": nil, "BandwidthCapped": nil, "ResponseLimitReached": nil}},
		"a 2 s silence":    {2000, 5000, map[string]any{"LongestChunkGap": 2000.0, "IdleNearLimit": nil}},
		"near an idle cut": {25_000, 5000, map[string]any{"LongestChunkGap": 25000.0, "IdleNearLimit": 1.0}},
		"past 6 MB":        {12, 7_000_000, map[string]any{"BandwidthCapped": 1.0, "ResponseLimitReached": nil}},
		"at 200 MiB":       {12, 200 << 20, map[string]any{"BandwidthCapped": 1.0, "ResponseLimitReached": 1.0}},
	} {
		r := state.Result{QuoteID: "q", RequestID: "r", Time: now, Integrity: -1, Expected: -1, LongestGapMs: c.gap, Bytes: c.bytes}
		out, err := enc.AppendStream(nil, &r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		for k, want := range c.want {
			if got, ok := d[k]; want == nil && ok || want != nil && got != want {
				t.Errorf("%s: %s = %v, want %v", name, k, got, want)
			}
		}
	}
}

// An invocation with one stream is one document: the stream's carries its
// outcome (ColdStart, which counts records, and ExtensionCPU). Its record
// brings the platform's figures later: they join the platform document, one
// for many invocations, written when a metric has 100 values, the oldest
// waited a minute, or at SHUTDOWN; a failure the platform reported after
// the stream's document makes a record of its own, without ColdStart.
func TestFoldedInvocationIsOneDocument(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond, InstrumentMetrics: true})
	now := time.Unix(1_800_000_000, 0)
	lines := func(b Batch, at time.Time) []map[string]any {
		var out []byte
		if errs := enc.Write(b, at, at.Add(time.Second), func(p []byte) { out = append(out, p...) }); len(errs) > 0 {
			t.Fatal(errs)
		}
		var ds []map[string]any
		for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if _, err := cwcheck.Check(l, at); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			var d map[string]any
			if err := json.Unmarshal(l, &d); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
		return ds
	}
	r := state.Result{QuoteID: "q", RequestID: "r1", Status: "complete", Expected: -1, Integrity: -1, Delivered: 1, Folded: true, CPU: 1500 * time.Microsecond}
	ds := lines(Batch{Streams: []state.Result{r}}, now)
	if len(ds) != 1 || ds[0]["ColdStart"] != 0.0 || ds[0]["ExtensionCPU"] != 1.5 || ds[0]["QuoteId"] != "q" {
		t.Fatalf("folded stream: %v", ds)
	}
	done := func(status string) *state.RuntimeDone {
		return &state.RuntimeDone{Status: status, DurationMs: 20, ProducedBytes: 900, HasLatency: true, ResponseLatencyMs: 3, HasDuration: true, ResponseDurationMs: 9}
	}
	rec := func(id string, d *state.RuntimeDone) state.InvocationResult {
		return state.InvocationResult{RequestID: id, Streams: 1, Folded: true, Done: d, Report: &state.Report{DurationMs: 20.25}}
	}
	if ds := lines(Batch{Invocations: []state.InvocationResult{rec("r1", done("success"))}}, now); len(ds) != 0 {
		t.Fatalf("a folded record wrote %v", ds)
	}
	// A failure after the stream's document: a record of its own.
	ds = lines(Batch{Invocations: []state.InvocationResult{rec("r2", done("error"))}}, now)
	if len(ds) != 1 || ds[0]["RequestId"] != "r2" || ds[0]["InvocationStatus"] != "error" || ds[0]["ProducedBytes"] != 900.0 {
		t.Fatalf("late failure: %v", ds)
	}
	if _, ok := ds[0]["ColdStart"]; ok {
		t.Errorf("late failure counted as a second record: %v", ds[0])
	}
	// 100 more: a metric has a document's worth.
	var many []state.InvocationResult
	for i := range 99 {
		many = append(many, rec(fmt.Sprint("m", i), done("success")))
	}
	ds = lines(Batch{Invocations: many}, now)
	if len(ds) != 1 {
		t.Fatalf("platform document: %d lines", len(ds))
	}
	for k, n := range map[string]int{"ProducedBytes": 100, "ResponseLatency": 100, "ResponseDuration": 100, "ExtensionOverhead": 100} {
		if vs, _ := ds[0][k].([]any); len(vs) != n || vs[0] != map[string]float64{"ProducedBytes": 900, "ResponseLatency": 3, "ResponseDuration": 9, "ExtensionOverhead": 0.25}[k] {
			t.Errorf("%s: %v", k, ds[0][k])
		}
	}
	// One value waits for a minute, or SHUTDOWN.
	if ds := lines(Batch{Invocations: []state.InvocationResult{rec("x", done("success"))}}, now); len(ds) != 0 {
		t.Fatalf("one value written at once: %v", ds)
	}
	if ds := lines(Batch{}, now.Add(maxInstrumentAge)); len(ds) != 1 || ds[0]["ResponseLatency"] != 3.0 {
		t.Fatalf("after a minute: %v", ds)
	}
	lines(Batch{Invocations: []state.InvocationResult{rec("y", done("success"))}}, now)
	if ds := lines(Batch{Final: true}, now); len(ds) < 1 || ds[0]["ResponseLatency"] != 3.0 {
		t.Fatalf("at SHUTDOWN: %v", ds)
	}
}

// The delivery rate of a response of megabytes goes where its platform
// figures go: its own record, or the platform document of invocations
// whose outcome went with their stream. A small response has none.
func TestResponseThroughput(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	big := &state.RuntimeDone{Status: "success", ProducedBytes: 8e6, HasDuration: true, ResponseDurationMs: 4000}
	small := &state.RuntimeDone{Status: "success", ProducedBytes: 900, HasDuration: true, ResponseDurationMs: 9}
	var out []byte
	out, _ = enc.AppendInvocation(out, &state.InvocationResult{RequestID: "record-big", Time: now, Done: big}, now)
	out, _ = enc.AppendInvocation(out, &state.InvocationResult{RequestID: "record-small", Time: now, Done: small}, now)
	for _, done := range []*state.RuntimeDone{big, small} {
		out, _ = enc.AppendInvocation(out, &state.InvocationResult{RequestID: "folded", Time: now, Done: done, Folded: true, FoldedDone: true}, now)
	}
	out, _ = enc.AppendPlatform(out, now, true)
	var got []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var d map[string]any
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v:%v", d["RequestId"], d["ResponseThroughput"]))
	}
	// One value in the platform document (the small response has none):
	// written as a number, not an array of one.
	want := []string{"record-big:2e+06", "record-small:<nil>", "<nil>:2e+06"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
}

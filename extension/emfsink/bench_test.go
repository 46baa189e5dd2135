package emfsink

import (
	"bytes"
	"fmt"
	"github.com/streamlens/streamlens/protocol"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/cwcheck"
	"github.com/streamlens/streamlens/internal/streamtest"
)

// BenchmarkFlush50 is the work between "invocation over" and /event/next for
// one 50-instrument bundle: finalize and EMF encode.
func BenchmarkFlush50(b *testing.B) {
	dgs := streamtest.Datagrams(1)
	enc := New(Config{FunctionName: "pricing", Namespace: "Streamlens", TTFBThreshold: 100 * time.Millisecond})
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		tb := state.New(1024, 2000)
		now := time.Now()
		for _, d := range dgs {
			protocol.Decode(d, func(ev *protocol.Event) { tb.Apply(ev, now) }, func(error) {})
		}
		tb.BeginInvocation(state.Invoke{RequestID: streamtest.RequestID, Deadline: now}, now)
		b.StartTimer()
		bt := Batch{Streams: tb.Finalize(streamtest.RequestID, state.Failure{}, now), Invocations: tb.ReadyInvocations(now, false), Counters: tb.TakeCounters()}
		if errs := enc.Write(bt, now, now.Add(time.Second), func([]byte) {}); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkEMFBytesPerStream is what the extension writes to CloudWatch Logs
// per 50-chunk stream by default, for 1,000 invocations of one stream each
// and the same 50 instruments (as the pricing function streams), all in:
// the stream's document, which is its invocation's outcome too (one
// document an invocation), its share of the platform document (the figures
// runtimeDone and report bring after it), of the per-instrument documents
// (100 values a document), and of the records and counters documents that
// are not per stream (the cold start's record, SHUTDOWN's). It follows the
// lifecycle's order: an invocation's stream is flushed at its boundary, its
// runtimeDone and report arrive during the next one. Log ingestion is billed
// per byte, so this is the figure behind the cost of a stream. It also
// counts the distinct custom metrics the documents create (billed per metric
// and month, whatever the traffic).
func BenchmarkEMFBytesPerStream(b *testing.B) {
	const streams = 1000
	// Chunks 0.2 to 3 ms apart, in µs: latencies print as real ones do
	// (12.345), not as round numbers.
	rnd := rand.New(rand.NewPCG(1, 2))
	dgs := streamtest.DatagramsApart(streams, func(int, int) int64 { return int64(200+rnd.IntN(2800)) * 1000 })
	perStream := len(dgs) / streams
	reqID := func(i int) string { return fmt.Sprintf("8476a536-e9f4-11e8-9739-%012d", i) }
	enc := New(Config{FunctionName: "pricing", Namespace: "Streamlens", TTFBThreshold: 100 * time.Millisecond, InstrumentMetrics: true})
	var bytesOf map[string]int
	metrics := map[string]bool{}
	for b.Loop() {
		bytesOf = map[string]int{}
		now := time.Now()
		count := func(out []byte) {
			for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				keys, err := cwcheck.Check(line, now)
				if err != nil {
					b.Fatalf("CloudWatch would drop %s: %v", line, err)
				}
				for _, k := range keys {
					metrics[k] = true
				}
				bytesOf[kindOf(line)] += len(line) + 1
			}
		}
		write := func(bt Batch) {
			var out []byte
			if errs := enc.Write(bt, now, now.Add(time.Second), func(p []byte) { out = append(out, p...) }); len(errs) > 0 {
				b.Fatal(errs)
			}
			count(out)
		}
		tb := state.New(2*streams, 2000)
		tb.SetTelemetry(true)
		tb.ApplyInit(state.InitReport{InitType: "on-demand", DurationMs: 181.5})
		inst := NewInstruments(100)
		platform := func(i int) {
			// What the Telemetry API says of invocation i, during i+1.
			id := reqID(i)
			tb.ApplyRuntimeDone(state.RuntimeDone{RequestID: id, Status: "success", DurationMs: 23.456, ProducedBytes: 9634,
				ResponseLatencyMs: 9.941, ResponseDurationMs: 11.001, HasLatency: true, HasDuration: true}, now)
			tb.ApplyReport(state.Report{RequestID: id, Status: "success", DurationMs: 23.512, BilledDurationMs: 24, MemorySizeMB: 1769}, now)
		}
		for i := range streams {
			id := reqID(i)
			tb.BeginInvocation(state.Invoke{RequestID: id, Deadline: now.Add(time.Minute)}, now)
			for _, d := range dgs[i*perStream : (i+1)*perStream] {
				protocol.Decode(d, func(ev *protocol.Event) { ev.RequestID = id; tb.Apply(ev, now) }, func(error) {})
			}
			if i > 0 {
				platform(i - 1)
			}
			tb.SetCPU(id, 391*time.Microsecond)
			bt := Batch{Streams: tb.Finalize(id, state.Failure{}, now), Invocations: tb.ReadyInvocations(now, false), Counters: tb.TakeCounters()}
			if len(bt.Streams) != 1 {
				b.Fatalf("invocation %d: %d streams", i, len(bt.Streams))
			}
			write(bt)
			inst.Add(bt.Streams, now)
			out, _ := enc.Take(nil, inst, now, false)
			count(out)
		}
		// SHUTDOWN: the last invocation's platform events, then everything.
		platform(streams - 1)
		tb.ShutDown(state.ShutdownFailure("spindown"))
		write(Batch{Streams: tb.FinalizeAll(state.ShutdownFailure("spindown")), Invocations: tb.ReadyInvocations(now, true), Counters: tb.TakeCounters()})
		out, _ := enc.Take(nil, inst, now, true)
		count(out)
		write(Batch{Final: true, Counters: tb.TakeCounters()})
	}
	per := func(kind string) float64 { return float64(bytesOf[kind]) / streams }
	total := 0.0
	for k := range bytesOf {
		total += per(k)
	}
	b.ReportMetric(total, "emf-bytes/stream")
	b.ReportMetric(per("stream"), "stream-doc-bytes")
	b.ReportMetric(per("record"), "invocation-doc-bytes")
	b.ReportMetric(per("platform"), "platform-bytes/stream")
	b.ReportMetric(per("instrument"), "instrument-bytes/stream")
	b.ReportMetric(per("counters"), "counters-bytes/stream")
	// CloudWatch Logs ingestion at list price, $0.50 per GB.
	b.ReportMetric(total*1e6/1e9*0.50, "$-logs/M-streams")
	// Custom metrics at list price, $0.30 per metric and month (the first
	// 10,000).
	b.ReportMetric(float64(len(metrics)), "custom-metrics")
	b.ReportMetric(float64(len(metrics))*0.30, "$-metrics/month")
}

// kindOf names the document an EMF line is, for the cost figures: a
// stream's (with its invocation's outcome when folded), an invocation's
// record, the platform document, a per-instrument one, or the counters.
func kindOf(line []byte) string {
	switch {
	case bytes.Contains(line, []byte(`"Instrument":`)):
		return "instrument"
	case bytes.Contains(line, []byte(`"QuoteId":`)):
		return "stream"
	case bytes.Contains(line, []byte(`"RequestId":`)):
		return "record"
	case bytes.Contains(line, []byte(`"ResponseLatency":[`)), bytes.Contains(line, []byte(`"ProducedBytes":[`)):
		return "platform"
	}
	return "counters"
}

// BenchmarkCardinality: 6,001 distinct instrument names in one invocation
// (a function that takes them from its callers) create at most the cap's
// worth of custom metrics: STREAMLENS_MAX_INSTRUMENTS (100) names and
// "other", two metrics each, plus the function-level pair and the overflow
// counts. Counted by the CloudWatch checker over every line written.
func BenchmarkCardinality(b *testing.B) {
	enc := New(Config{FunctionName: "pricing", Namespace: "Streamlens", InstrumentMetrics: true})
	now := time.Now()
	var r state.Result
	for i := range 6001 {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: fmt.Sprintf("caller-%d", i), LatencyMs: float32(i%50) + 0.5, IntervalMs: 0.5})
	}
	metrics := map[string]bool{}
	for b.Loop() {
		inst := NewInstruments(100)
		inst.Add([]state.Result{r}, now)
		out, _ := enc.Take(nil, inst, now, true)
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			keys, err := cwcheck.Check(line, now)
			if err != nil {
				b.Fatalf("CloudWatch would drop %s: %v", line, err)
			}
			for _, k := range keys {
				metrics[k] = true
			}
		}
	}
	b.ReportMetric(float64(len(metrics)), "custom-metrics/6001-names")
}

// BenchmarkTake: the per-instrument documents of a 500-chunk bundle (100
// names and "other"), written as they come due; per chunk value.
func BenchmarkTake(b *testing.B) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(100)
	names := make([]string, 500)
	for i := range names {
		names[i] = fmt.Sprintf("I%d", i)
	}
	var r state.Result
	for i, in := range names {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: in, LatencyMs: float32(i%37) + 0.123, IntervalMs: 0.5})
	}
	res := []state.Result{r}
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		a.Add(res, now)
		if a.Due(now) {
			enc.Take(nil, a, now, false)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/500, "ns/value")
}

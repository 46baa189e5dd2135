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
// per 50-chunk stream by default, for 1,000 streams of the same 50
// instruments, one stream an invocation (as the pricing function streams):
// the stream's own document, its invocation's record, and its share of the
// per-instrument documents, aggregated across streams (100 values a
// document). Log ingestion is billed per byte, so this is the figure behind
// the cost of a stream. It also counts the distinct custom metrics the
// documents create (billed per metric and month, whatever the traffic).
func BenchmarkEMFBytesPerStream(b *testing.B) {
	const streams = 1000
	// Chunks 0.2 to 3 ms apart, in µs: latencies print as real ones do
	// (12.345), not as round numbers.
	rnd := rand.New(rand.NewPCG(1, 2))
	dgs := streamtest.DatagramsApart(streams, func(int, int) int64 { return int64(200+rnd.IntN(2800)) * 1000 })
	enc := New(Config{FunctionName: "pricing", Namespace: "Streamlens", TTFBThreshold: 100 * time.Millisecond, InstrumentMetrics: true})
	var perStream, perInvocation, perInstrument float64
	metrics := map[string]bool{}
	for b.Loop() {
		tb := state.New(2*streams, 2000)
		now := time.Now()
		for _, d := range dgs {
			protocol.Decode(d, func(ev *protocol.Event) { tb.Apply(ev, now) }, func(error) {})
		}
		results := tb.Finalize(streamtest.RequestID, state.Failure{}, now)
		if len(results) != streams {
			b.Fatalf("%d streams", len(results))
		}
		inst := NewInstruments(100)
		var own, rec, agg int
		count := func(out []byte) int {
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
			}
			return len(out)
		}
		for i := range results {
			var out []byte
			errs := enc.Write(Batch{Streams: results[i : i+1]}, now, now.Add(time.Second), func(p []byte) { out = append(out, p...) })
			if len(errs) > 0 {
				b.Fatal(errs)
			}
			own += count(out)
			// Its invocation's record, as a warm invocation writes it.
			inv := state.InvocationResult{RequestID: results[i].RequestID, Time: now, InitKnown: true, Init: state.InitReport{InitType: "on-demand"},
				Done: &state.RuntimeDone{Status: "success", DurationMs: 23.456, ProducedBytes: 9634, ResponseLatencyMs: 9.941,
					ResponseDurationMs: 11.001, HasLatency: true, HasDuration: true},
				Report: &state.Report{DurationMs: 23.512}, CPU: 391 * time.Microsecond}
			out, err := enc.AppendInvocation(nil, &inv, now)
			if err != nil {
				b.Fatal(err)
			}
			rec += count(out)
			inst.Add(results[i:i+1], now)
			out, _ = enc.Take(nil, inst, now, false)
			agg += count(out)
		}
		out, _ := enc.Take(nil, inst, now, true) // what SHUTDOWN writes
		agg += count(out)
		perStream, perInvocation, perInstrument = float64(own)/streams, float64(rec)/streams, float64(agg)/streams
	}
	total := perStream + perInvocation + perInstrument
	b.ReportMetric(total, "emf-bytes/stream")
	b.ReportMetric(perStream, "stream-doc-bytes")
	b.ReportMetric(perInvocation, "invocation-doc-bytes")
	b.ReportMetric(perInstrument, "instrument-bytes/stream")
	// CloudWatch Logs ingestion at list price, $0.50 per GB.
	b.ReportMetric(total*1e6/1e9*0.50, "$-logs/M-streams")
	// Custom metrics at list price, $0.30 per metric and month (the first
	// 10,000).
	b.ReportMetric(float64(len(metrics)), "custom-metrics")
	b.ReportMetric(float64(len(metrics))*0.30, "$-metrics/month")
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

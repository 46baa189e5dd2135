package emfsink

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
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
			tb.ApplyDatagram(d, len(d), now)
		}
		tb.BeginInvocation(state.Invoke{RequestID: streamtest.RequestID, Deadline: now}, now)
		b.StartTimer()
		bt := Batch{Streams: tb.Finalize(streamtest.RequestID, ""), Invocations: tb.ReadyInvocations(now, false), Counters: tb.TakeCounters()}
		if errs := enc.Write(bt, now, now.Add(time.Second), func([]byte) {}); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkEMFBytesPerStream is what the extension writes to CloudWatch Logs
// per 50-chunk stream by default: the stream's own document (with its 50
// latencies and intervals) and its share of the per-instrument documents,
// aggregated across streams (100 values a document), for 1,000 streams of
// the same 50 instruments. Log ingestion is billed per byte, so this is the
// figure behind the cost of a stream.
func BenchmarkEMFBytesPerStream(b *testing.B) {
	const streams = 1000
	// Chunks 0.2 to 3 ms apart, in µs: latencies print as real ones do
	// (12.345), not as round numbers.
	rnd := rand.New(rand.NewPCG(1, 2))
	dgs := streamtest.DatagramsApart(streams, func(int, int) int64 { return int64(200+rnd.IntN(2800)) * 1000 })
	enc := New(Config{FunctionName: "pricing", Namespace: "Streamlens", TTFBThreshold: 100 * time.Millisecond})
	var perStream, perInstrument float64
	for b.Loop() {
		tb := state.New(2*streams, 2000)
		now := time.Now()
		for _, d := range dgs {
			tb.ApplyDatagram(d, len(d), now)
		}
		results := tb.Finalize(streamtest.RequestID, "")
		if len(results) != streams {
			b.Fatalf("%d streams", len(results))
		}
		inst := NewInstruments(100)
		var own, agg int
		for i := range results {
			out, err := enc.AppendStream(nil, &results[i], now, true)
			if err != nil {
				b.Fatal(err)
			}
			own += len(out)
			inst.Add(results[i:i+1], now)
			out, _ = enc.Take(nil, inst, now, false)
			agg += len(out)
		}
		out, _ := enc.Take(nil, inst, now, true) // what SHUTDOWN writes
		agg += len(out)
		perStream, perInstrument = float64(own)/streams, float64(agg)/streams
	}
	total := perStream + perInstrument
	b.ReportMetric(total, "emf-bytes/stream")
	b.ReportMetric(perStream, "stream-doc-bytes")
	b.ReportMetric(perInstrument, "instrument-bytes/stream")
	// CloudWatch Logs ingestion at list price, $0.50 per GB.
	b.ReportMetric(total*1e6/1e9*0.50, "$-logs/M-streams")
}

package emfsink

import (
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
		tb.BeginInvocation(streamtest.RequestID, now, "", now)
		b.StartTimer()
		bt := Batch{Streams: tb.Finalize(streamtest.RequestID, ""), Invocations: tb.ReadyInvocations(now, false), Counters: tb.TakeCounters()}
		if _, errs := enc.Encode(bt, now); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

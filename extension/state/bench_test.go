package state

import (
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/streamtest"
	"github.com/streamlens/streamlens/protocol"
)

// BenchmarkIngest is decode + apply per event, on one goroutine, with a
// finalize after every 100 streams as invocation boundaries would do.
func BenchmarkIngest(b *testing.B) {
	dgs := streamtest.Datagrams(100)
	tb := New(1024, 2000)
	var dec protocol.Decoder
	b.ReportAllocs()
	i := 0
	now := time.Now()
	start := time.Now()
	for b.Loop() {
		// Decoded here as the ingest edge does: the figure is decode + apply.
		dec.Decode(dgs[i], func(ev *protocol.Event) { tb.Apply(ev, now) }, func(error) {})
		if i++; i == len(dgs) {
			i = 0
			tb.Finalize(streamtest.RequestID, Failure{}, now)
			tb.flushed, tb.flushedFIFO = map[key]struct{}{}, nil // the same ids come again
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

package lifecycle

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/state"
)

// Background work waits for the invocation's first chunk; only an invocation
// with no stream at all lets it run after the start wait.
func TestBackgroundWaitsForTheFirstChunk(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	startBy := t0.Add(20 * time.Millisecond)
	late := t0.Add(time.Second)
	for _, c := range []struct {
		name string
		p    state.Progress
		now  time.Time
		want bool
	}{
		{"no stream yet, within the start wait", state.Progress{}, t0, false},
		{"no stream by the start wait", state.Progress{}, late, true},
		{"a stream started, slow first chunk", state.Progress{Seen: 1, Open: 1}, late, false},
		{"the first chunk is out", state.Progress{Seen: 1, Open: 1, FirstChunk: true}, t0, true},
	} {
		if got := backgroundMayRun(c.p, c.now, startBy); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A collector that is down must not fill the function's log: one line per
// period, saying how many were held back.
func TestExportFailuresAreRateLimited(t *testing.T) {
	var lines []string
	l := &rateLimited{period: time.Hour, say: func(msg string) { lines = append(lines, msg) }}
	for range 5 {
		l.warn(errors.New("otlp: refused"))
	}
	l.warn(nil)
	if len(lines) != 1 || lines[0] != "otlp: refused" || l.suppressed != 4 {
		t.Fatalf("%q, %d held back", lines, l.suppressed)
	}
	l.last = l.last.Add(-2 * time.Hour) // the period is over
	l.warn(errors.New("otlp: refused"))
	if len(lines) != 2 || !strings.Contains(lines[1], "and 4 more") || l.suppressed != 0 {
		t.Errorf("%q", lines)
	}
}

// logBuf collects what the background gives the log.
type logBuf struct{ b []byte }

func (l *logBuf) Give(p []byte) int { l.b = append(l.b, p...); return len(p) }

// The per-instrument work is off the path to event/next: a write only
// queues the finished streams' chunk values; the worker (or SHUTDOWN) adds
// and writes them.
func TestInstrumentWorkIsOffThePathToNext(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	enc := emfsink.New(emfsink.Config{Namespace: "Streamlens", FunctionName: "f", TTFBThreshold: time.Millisecond, InstrumentMetrics: true})
	log := &logBuf{}
	b := newBackground(enc, nil, log, func(counters.Counters) {}, func(error) {}, time.Second, 10, true)
	chunks := make([]state.Chunk, 200)
	for i := range chunks {
		chunks[i] = state.Chunk{Inst: "AAPL", LatencyMs: float32(i), IntervalMs: 1}
	}
	b.add([]state.Result{{QuoteID: "q", Chunks: chunks}}, 128, now)
	if b.inst.Due(now) || len(b.instQueue) != 1 {
		t.Fatalf("the values were aggregated on the caller's path (queued %d)", len(b.instQueue))
	}
	b.writeInstruments(now)
	if !strings.Contains(string(log.b), `"Instrument":"AAPL"`) || len(b.instQueue) != 0 {
		t.Errorf("SHUTDOWN did not write the queued values: %s", log.b)
	}
}

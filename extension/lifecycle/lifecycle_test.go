package lifecycle

import (
	"errors"
	"strings"
	"testing"
	"time"

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

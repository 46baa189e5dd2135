package lifecycle

import (
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

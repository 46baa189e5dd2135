package state

import "testing"

// A response's delivery rate is the platform's: its bytes over the time the
// runtime took to send them, for a response of 1 MB or more.
func TestThroughput(t *testing.T) {
	for name, c := range map[string]struct {
		rd   RuntimeDone
		want float64
		ok   bool
	}{
		"8 MB in 4 s":      {RuntimeDone{ProducedBytes: 8e6, HasDuration: true, ResponseDurationMs: 4000}, 2e6, true},
		"under 1 MB":       {RuntimeDone{ProducedBytes: 999_999, HasDuration: true, ResponseDurationMs: 1}, 0, false},
		"no duration":      {RuntimeDone{ProducedBytes: 8e6}, 0, false},
		"zero duration":    {RuntimeDone{ProducedBytes: 8e6, HasDuration: true}, 0, false},
		"managed instance": {RuntimeDone{FromReport: true, ProducedBytes: 8e6, HasDuration: true, ResponseDurationMs: 4000}, 0, false},
	} {
		if v, ok := c.rd.Throughput(); v != c.want || ok != c.ok {
			t.Errorf("%s: %v %v, want %v %v", name, v, ok, c.want, c.ok)
		}
	}
}

package e2e

import (
	"strings"
	"testing"
)

// A crash is the failure streamlens exists to explain, and how far the
// stream got is what an auditor asks first. The Go client commits every
// event into its ring before the write that produced it returns, so a
// process that dies at any point of its stream — right after its start,
// mid-burst (back to back, no time for anything to be sent), by exit or by
// panic, or with every byte written and its end not recorded — leaves
// exactly the writes that returned: ChunksDelivered says so, and nothing is
// counted torn.
func TestCrashAtEveryPointKeepsWhatWasWritten(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		delivered   float64
	}{
		{"right after start", "instruments=20&delay_ms=0&crash_after=0", 0},
		{"mid-burst, exit", "instruments=20&delay_ms=0&crash_after=7", 7},
		{"mid-burst, panic", "instruments=20&delay_ms=0&panic_after=7", 7},
		{"twelve, exit", "instruments=20&delay_ms=0&crash_after=12", 12},
		{"right before end", "instruments=20&delay_ms=0&crash_before_end=1", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, nil)
			res, body := e.invoke(t, tc.query)
			if res.Status != "failure" && res.Status != "error" {
				t.Errorf("status %q, want the crash's failure", res.Status)
			}
			if n := quotes(body); float64(n) > tc.delivered {
				t.Errorf("the caller got %d quotes, more than the %v written", n, tc.delivered)
			}
			s := e.onlyStream(t)
			if s.num("StreamTruncated") != 1 || s.num("ChunksDelivered") != tc.delivered || !strings.HasPrefix(s.str("TruncationReason"), "runtime-") {
				t.Errorf("truncated=%v delivered=%v (want %v, the writes that returned) reason=%q",
					s["StreamTruncated"], s["ChunksDelivered"], tc.delivered, s.str("TruncationReason"))
			}
			if strings.Contains(e.log.String(), `"MissingStart":1`) || strings.Contains(e.log.String(), `"RingSlotsTorn":1`) {
				t.Errorf("start missing or a slot torn:\n%s", e.log.String())
			}
		})
	}
	// Before the stream starts there is nothing to keep: the platform's
	// failure is the outcome, a bad event for both SLOs.
	t.Run("before start", func(t *testing.T) {
		e := start(t, nil)
		e.invoke(t, "crash_before_start=1")
		ds := e.log.waitDocs(t, "the invocation's outcome", func(ds []doc) bool {
			for _, d := range ds {
				if d.num("FailedBeforeFirstByte") == 1 {
					return true
				}
			}
			return false
		})
		if n := len(streamDocs(ds)); n != 0 {
			t.Errorf("%d stream documents from a process that never started one", n)
		}
	})
}

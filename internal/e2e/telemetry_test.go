package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
)

func TestColdThenWarm(t *testing.T) {
	e := start(t, nil)
	var ids []string
	for i := 0; i < 3; i++ {
		res, _ := e.invoke(t, "instruments=5")
		ids = append(ids, res.RequestID)
	}
	e.sb.Close() // SHUTDOWN: the last invocation's record is flushed too
	ds := e.log.waitDocs(t, "3 invocation documents", func(ds []doc) bool { return len(invocationDocs(ds)) == 3 })
	byID := map[string]doc{}
	for _, d := range invocationDocs(ds) {
		byID[d.str("RequestId")] = d
	}
	for i, id := range ids {
		d := byID[id]
		if d == nil {
			t.Fatalf("no invocation document for %s", id)
		}
		wantCold := 0.0
		if i == 0 {
			wantCold = 1
		}
		if d.num("ColdStart") != wantCold {
			t.Errorf("invocation %d ColdStart %v", i, d["ColdStart"])
		}
		_, hasInit := d["InitDuration"]
		if hasInit != (i == 0) || (i == 0 && (d.num("InitDuration") <= 0 || d.str("InitType") != "on-demand")) {
			t.Errorf("invocation %d InitDuration %v InitType %q", i, d["InitDuration"], d.str("InitType"))
		}
		if d["InvocationStatus"] != nil {
			t.Errorf("invocation %d status %v", i, d)
		}
		// The cold start's record carries the init and its platform
		// figures; the warm ones' outcome is their stream's document, and
		// their figures are in the platform document.
		if _, folded := d["QuoteId"]; folded == (i == 0) {
			t.Errorf("invocation %d: outcome with its stream %v", i, folded)
		}
	}
	for _, k := range []string{"ResponseLatency", "ProducedBytes", "ExtensionOverhead"} {
		if n := platformValues(ds, k); n != len(ids) {
			t.Errorf("%d %s values, want %d", n, k, len(ids))
		}
	}
}

func TestProvisionedConcurrencyInitType(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.InitType = "provisioned-concurrency" })
	e.invoke(t, "instruments=3")
	e.sb.Close()
	ds := e.log.waitDocs(t, "invocation document", func(ds []doc) bool { return len(invocationDocs(ds)) == 1 })
	if d := invocationDocs(ds)[0]; d.str("InitType") != "provisioned-concurrency" || d.num("InitDuration") <= 0 {
		t.Errorf("%v", d)
	}
}

// A crash mid-stream: the stream is truncated with the runtime's reason.
// With one datagram per event every delivered chunk is counted; with chunk
// events sharing datagrams (the default) the crash can take the events still
// waiting (at most STREAMLENS_COALESCE, sent within 2 ms), never the verdict.
func TestCrashMidStream(t *testing.T) {
	for _, tc := range []struct {
		coalesce string
		least    float64
	}{{"1", 25}, {"16", 25 - 16}} {
		t.Run("coalesce="+tc.coalesce, func(t *testing.T) {
			e := start(t, func(c *sandbox.Config) { c.Env = append(c.Env, "STREAMLENS_COALESCE="+tc.coalesce) })
			res, body := e.invoke(t, "instruments=40&crash_after=25")
			if res.Status != "failure" {
				t.Errorf("status %q, want failure", res.Status)
			}
			// The caller gets at most the 25 quotes written before the crash,
			// and may miss the last ones: the process dies with bytes still on
			// their way from the runtime to the caller.
			if n := quotes(body); n > 25 || n < 20 {
				t.Errorf("%d quotes before the crash, want 20 to 25", n)
			}
			s := e.onlyStream(t)
			if d := s.num("ChunksDelivered"); s.num("StreamTruncated") != 1 || d < tc.least || d > 25 || s.str("TruncationReason") != "runtime-failure" {
				t.Errorf("truncated=%v delivered=%v (want %v to 25) reason=%q", s["StreamTruncated"], d, tc.least, s.str("TruncationReason"))
			}
			// The environment is reset: the next invocation is a cold start again and works.
			res, body = e.invoke(t, "instruments=3")
			if res.Status != "success" || !strings.Contains(body, "BUNDLE_COMPLETE") {
				t.Errorf("after reset: %+v", res)
			}
		})
	}
}

func TestTimeoutReportsStatusOnInvocation(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Timeout = 800 * time.Millisecond })
	res, _ := e.invoke(t, "instruments=20&hang_after=7")
	ds := e.log.waitDocs(t, "stream and invocation documents", func(ds []doc) bool {
		return len(streamDocs(ds)) == 1 && len(invocationDocs(ds)) == 1
	})
	s, inv := streamDocs(ds)[0], invocationDocs(ds)[0]
	if s.str("TruncationReason") != "runtime-timeout" || s.num("ChunksDelivered") != 7 || s.str("InvocationStatus") != "timeout" {
		t.Errorf("stream %v", s)
	}
	if inv.str("RequestId") != res.RequestID || inv.str("InvocationStatus") != "timeout" {
		t.Errorf("invocation %v", inv)
	}
}

// SHUTDOWN while a stream is still open (its end never came): it is flushed as
// truncated within the deadline, and the extension exits cleanly.
func TestShutdownWithOpenStream(t *testing.T) {
	e := start(t, nil)
	res, body := e.invoke(t, "instruments=10&skip_end=1")
	if res.Status != "success" || !strings.Contains(body, "BUNDLE_COMPLETE") {
		t.Fatalf("%+v", res)
	}
	if len(streamDocs(e.log.docs(t))) != 0 {
		t.Fatal("a successful invocation's open stream was flushed at once; it should wait one boundary for a late end")
	}
	e.sb.Close()
	s := e.onlyStream(t)
	// The function never ended its stream: truncated, but not judged (the
	// caller got BUNDLE_COMPLETE), so the completeness SLO leaves it out.
	if s.num("StreamTruncated") != 1 || s.str("TruncationReason") != "shutdown-spindown" || s.num("ChunksDelivered") != 10 ||
		s.num("TruncationUnobserved") != 1 {
		t.Errorf("%v", s)
	}
	if l := e.log.String(); strings.Contains(l, "did not exit before the shutdown deadline") || strings.Contains(l, "exited after SHUTDOWN") {
		t.Error("extension overran the SHUTDOWN deadline or exited non-zero")
	}
}

// The function's end event arrives after runtimeDone (an async sender): the
// sandbox freezes the function before it is sent; after the thaw it lands on
// the right request id and the stream counts as complete.
func TestEndAfterRuntimeDoneLandsAfterThaw(t *testing.T) {
	e := start(t, nil)
	first, _ := e.invoke(t, "instruments=5&late_end_ms=300")
	if n := len(streamDocs(e.log.docs(t))); n != 0 {
		t.Fatalf("%d stream documents before the end arrived", n)
	}
	// The sandbox stays frozen longer than the function's pending sleep, so its
	// timer has expired when the next invocation thaws it: the end goes out
	// during invocation 2, carrying invocation 1's request id.
	time.Sleep(400 * time.Millisecond)
	second, _ := e.invoke(t, "instruments=5")
	ds := e.log.waitDocs(t, "two stream documents", func(ds []doc) bool { return len(streamDocs(ds)) == 2 })
	for _, s := range streamDocs(ds) {
		if s.num("StreamTruncated") != 0 || s.str("StreamStatus") != "complete" {
			t.Errorf("stream of %s: %v", s.str("RequestId"), s)
		}
	}
	got := map[string]bool{}
	for _, s := range streamDocs(ds) {
		got[s.str("RequestId")] = true
	}
	if !got[first.RequestID] || !got[second.RequestID] {
		t.Errorf("request ids %v, want %s and %s", got, first.RequestID, second.RequestID)
	}
}

// runtimeDone never arrives: the extension flushes at the deadline (plus its
// documented wait), loses nothing it received, and says so.
func TestRuntimeDoneMissing(t *testing.T) {
	e := start(t, func(c *sandbox.Config) {
		c.Timeout = time.Second
		c.Suppress = []string{"platform.runtimeDone"}
		c.Env = append(c.Env, "STREAMLENS_RUNTIME_DONE_WAIT_MS=50")
	})
	res, _ := e.invoke(t, "instruments=5")
	if res.Status != "success" {
		t.Fatalf("%+v", res)
	}
	e.invoke(t, "instruments=5")
	e.sb.Close()
	ds := e.log.waitDocs(t, "documents", func(ds []doc) bool { return len(streamDocs(ds)) == 2 && len(invocationDocs(ds)) == 2 })
	for _, s := range streamDocs(ds) {
		// The streams ended complete; only the platform's word is missing, so
		// the deadline fallback marks them truncated by "deadline" only if
		// they had no end.
		if s.num("StreamTruncated") != 0 || s.num("ChunksDelivered") != 5 {
			t.Errorf("stream %v", s)
		}
	}
	missing := 0.0
	for _, d := range ds {
		if _, ok := d["RuntimeDoneMissingCount"]; ok {
			missing += d.num("RuntimeDoneMissingCount")
		}
	}
	if missing != 2 {
		t.Errorf("RuntimeDoneMissingCount adds up to %v, want 2", missing)
	}
	// Said on the records apart (the cold start's); an invocation whose
	// outcome went with its stream's document is counted only.
	for _, d := range recordsApart(ds) {
		if d["RuntimeDoneMissing"] != true {
			t.Errorf("invocation %s does not say runtimeDone was missing: %v", d.str("RequestId"), d)
		}
	}
}

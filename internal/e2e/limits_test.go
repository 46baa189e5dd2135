package e2e

import (
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
)

// A bundle of deep order books, 12.9 MB: past the first 6 MB the platform
// takes a streamed response in at 2 MiB/s (the sandbox paces it so). The
// stream is marked BandwidthCapped, and its invocation's ResponseThroughput
// is the platform's rate, which the cap bounds, and agrees with what the
// caller saw. The function's own writes were megabytes ahead of it: socket
// buffers took them, which is why the rate is the platform's figure.
func TestLargeResponseThroughputIsThePlatforms(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Timeout = 20 * time.Second })
	res, body := e.invoke(t, "instruments=100&depth=2000&delay_ms=0")
	if res.Status != "success" || quotes(body) != 100 {
		t.Fatalf("invocation %+v, %d quotes", res, quotes(body))
	}
	e.sb.Close() // SHUTDOWN writes what waits: the platform document
	ds := e.log.waitDocs(t, "the stream and the platform document", func(ds []doc) bool {
		n := 0
		for _, d := range ds {
			if d["ResponseThroughput"] != nil {
				n++
			}
		}
		return len(streamDocs(ds)) == 1 && n == 1
	})
	s := streamDocs(ds)[0]
	if s.num("BandwidthCapped") != 1 || s.num("StreamBytes") < 12e6 {
		t.Errorf("stream: capped %v, %v bytes", s["BandwidthCapped"], s["StreamBytes"])
	}
	var rate, produced float64
	for _, d := range ds {
		if d["ResponseThroughput"] != nil {
			rate, produced = d.num("ResponseThroughput"), d.num("ProducedBytes")
		}
	}
	// The cap bounds the rate: the bytes past the first 6 MiB (the sandbox
	// reads Lambda's "6 MB" as the larger, so the bound is the looser) took
	// at least their share of a second at 2 MiB/s.
	paced := (produced - 6<<20) / (2 << 20)
	if ceiling := produced / paced; rate <= 0 || rate > ceiling*1.01 {
		t.Errorf("ResponseThroughput %.0f B/s over the cap's ceiling %.0f (%.0f bytes)", rate, ceiling, produced)
	}
	// The caller's own view: its bytes from its first byte to its last.
	caller := float64(res.Bytes) / (res.ResponseEnd - res.ResponseLatency).Seconds()
	if r := rate / caller; r < 0.8 || r > 1.25 {
		t.Errorf("ResponseThroughput %.0f B/s, the caller got %.0f B/s", rate, caller)
	}
	t.Logf("%.1f MB: %.2f MB/s as the platform took it in, %.2f MB/s as the caller got it", produced/1e6, rate/1e6, caller/1e6)
}

// A stream silent between its chunks (a slow model: 0.3–0.9 s a quote) is
// a function at work: its invocation is let go when the stream ends, and its
// document is written before the environment freezes. Let go at the first
// silence, it waited for the next thaw — never, here. (The silence allowed
// is a tenth of the timeout: 1 s of 10 s.)
func TestSilentStreamIsWrittenBeforeTheFreeze(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Timeout = 10 * time.Second })
	res, body := e.invoke(t, "instruments=3&delay_ms=300")
	if res.Status != "success" || quotes(body) != 3 {
		t.Fatalf("invocation %+v, %d quotes", res, quotes(body))
	}
	// The environment is frozen now: what was not written stays unwritten.
	ds := e.log.waitDocs(t, "the stream's document, before the freeze", func(ds []doc) bool { return len(streamDocs(ds)) == 1 })
	if s := streamDocs(ds)[0]; s.str("StreamStatus") != "complete" || s.num("ChunksDelivered") != 3 || s.num("StreamTruncated") != 0 {
		t.Errorf("stream %v", s)
	}
}

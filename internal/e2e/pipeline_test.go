package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
)

func TestCompleteBundle(t *testing.T) {
	e := start(t, nil)
	res, body := e.invoke(t, "instruments=50&delay_ms=1&bundle=EQ-EU-50")
	if res.Status != "success" || !strings.Contains(body, "BUNDLE_COMPLETE") {
		t.Fatalf("invocation %+v, body %q", res, body)
	}
	if n := quotes(body); n != 50 {
		t.Fatalf("%d quotes in the response", n)
	}
	ds := e.log.waitDocs(t, "stream document", func(ds []doc) bool { return len(streamDocs(ds)) == 1 })
	s := streamDocs(ds)[0]
	if s.num("TimeToFirstByte") <= 0 {
		t.Errorf("TimeToFirstByte = %v", s["TimeToFirstByte"])
	}
	// The per-chunk values are in the per-instrument documents, which
	// publish them with and without the Instrument dimension: the stream's
	// own document does not repeat them.
	if s["ChunkLatency"] != nil || s["ChunkInterval"] != nil {
		t.Errorf("per-chunk values in the stream document: %v", s)
	}
	if s["ChunksMissing"] != nil {
		t.Errorf("ChunksMissing on a complete stream: %v", s["ChunksMissing"])
	}
	for k, want := range map[string]float64{"ChunksDelivered": 50, "ChunksExpected": 50, "StreamTruncated": 0, "IntegrityMismatch": 0, "DroppedEvents": 0} {
		if got := s.num(k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if s.str("BundleId") != "EQ-EU-50" || s.str("RequestId") != res.RequestID || s.str("StreamStatus") != "complete" {
		t.Errorf("properties: %v", s)
	}
	// Ids are properties, never dimensions.
	dims := s["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Dimensions"]
	if got := strings.Join(flatten(dims), ","); got != "FunctionName" {
		t.Errorf("stream dimensions %v", got)
	}
	// The quote id in the metrics is the one the function put on its quotes.
	if !strings.Contains(body, `"quoteId":"`+s.str("QuoteId")+`"`) {
		t.Errorf("quote id %s not in the response", s.str("QuoteId"))
	}
	// Per-instrument values are aggregated across invocations: none are
	// written yet (fewer than 100 values, younger than 60 s). SHUTDOWN
	// writes them: one document per instrument, with its one value.
	if n := perInstrument(ds); n != 0 {
		t.Errorf("%d per-instrument documents before they were due", n)
	}
	e.sb.Close()
	ds = e.log.waitDocs(t, "per-instrument documents", func(ds []doc) bool { return perInstrument(ds) == 50 })
	for _, d := range ds {
		if d.str("Instrument") == "" {
			continue
		}
		dims := d["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Dimensions"]
		if len(d.values("ChunkLatency")) != 1 || strings.Join(flatten(dims), ",") != "FunctionName,Instrument,FunctionName" {
			t.Errorf("instrument %s: %v, dimensions %v", d.str("Instrument"), d["ChunkLatency"], dims)
		}
	}
}

// With the per-instrument documents off, the stream's own document carries
// its per-chunk values.
func TestPerChunkValuesInTheStreamWithoutInstrumentMetrics(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Env = append(c.Env, "STREAMLENS_INSTRUMENT_METRICS=off") })
	e.invoke(t, "instruments=50&delay_ms=0")
	s := e.onlyStream(t)
	if len(s.values("ChunkLatency")) != 50 || len(s.values("ChunkInterval")) != 50 {
		t.Errorf("%d latencies, %d intervals", len(s.values("ChunkLatency")), len(s.values("ChunkInterval")))
	}
	e.sb.Close()
	if n := perInstrument(e.log.docs(t)); n != 0 {
		t.Errorf("%d per-instrument documents", n)
	}
}

func perInstrument(ds []doc) int {
	n := 0
	for _, d := range ds {
		if d.str("Instrument") != "" {
			n++
		}
	}
	return n
}

func flatten(v any) []string {
	var out []string
	for _, set := range v.([]any) {
		for _, k := range set.([]any) {
			out = append(out, k.(string))
		}
	}
	return out
}

func TestFailureMidStream(t *testing.T) {
	e := start(t, nil)
	res, body := e.invoke(t, "instruments=50&fail_after=20")
	if res.Status != "error" {
		t.Errorf("status %q, want error (trailer)", res.Status)
	}
	if n := quotes(body); n != 20 {
		t.Errorf("%d quotes before the failure", n)
	}
	s := e.onlyStream(t)
	if s.num("StreamTruncated") != 1 || s.num("ChunksDelivered") != 20 || s.num("ChunksExpected") != 50 || s.num("ChunksMissing") != 30 {
		t.Errorf("truncated=%v delivered=%v expected=%v missing=%v", s["StreamTruncated"], s["ChunksDelivered"], s["ChunksExpected"], s["ChunksMissing"])
	}
	if s.str("TruncationReason") != "status-error" {
		t.Errorf("reason %q", s.str("TruncationReason"))
	}
}

func TestTimeoutWithoutEnd(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Timeout = time.Second })
	res, body := e.invoke(t, "instruments=50&hang_after=10")
	if res.Status != "timeout" {
		t.Errorf("status %q, want timeout", res.Status)
	}
	if n := quotes(body); n != 10 {
		t.Errorf("%d quotes before the hang", n)
	}
	s := e.onlyStream(t)
	if s.num("StreamTruncated") != 1 || s.num("ChunksDelivered") != 10 {
		t.Errorf("truncated=%v delivered=%v", s["StreamTruncated"], s["ChunksDelivered"])
	}
	if s.str("StreamStatus") != "none" || !strings.Contains(s.str("TruncationReason"), "timeout") {
		t.Errorf("status %q reason %q", s.str("StreamStatus"), s.str("TruncationReason"))
	}
}

// A bad value falls back to its default: the function works, the value is
// named on stderr and counted. STREAMLENS_STRICT=on fails init instead.
func TestBadConfigDegradesUnlessStrict(t *testing.T) {
	e := start(t, func(c *sandbox.Config) {
		c.Env = append(c.Env, "STREAMLENS_TTFB_THRESHOLD_MS=fast", "STREAMLENS_NAMESPACE=AWS/Lambda")
	})
	if res, _ := e.invoke(t, "instruments=5"); res.Status != "success" {
		t.Fatalf("%+v", res)
	}
	ds := e.log.waitDocs(t, "the ConfigErrors count", func(ds []doc) bool {
		for _, d := range ds {
			if d.num("ConfigErrors") == 2 {
				return true
			}
		}
		return false
	})
	if s := streamDocs(ds); len(s) != 1 || s[0]["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)["Namespace"] != "Streamlens" {
		t.Errorf("stream documents %v: want one, in the default namespace", s)
	}
	for _, v := range []string{"STREAMLENS_TTFB_THRESHOLD_MS", "STREAMLENS_NAMESPACE"} {
		if !strings.Contains(e.log.String(), v) {
			t.Errorf("stderr does not name %s", v)
		}
	}

	e = start(t, func(c *sandbox.Config) { c.Env = append(c.Env, "STREAMLENS_ADDR=nonsense", "STREAMLENS_STRICT=on") })
	_, err := e.sb.Invoke(t.Context(), []byte(`{}`), &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "STREAMLENS_ADDR") || !strings.Contains(err.Error(), "Extension.ConfigError") {
		t.Fatalf("init error %v: want Extension.ConfigError naming STREAMLENS_ADDR", err)
	}
}

// Run by hand, outside Lambda, the extension says what it is and how to use
// its decode mode, instead of a bare error.
func TestExtensionRunByHandPrintsUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"decode"}} {
		cmd := exec.Command(bins.extension, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "streamlens decode ADDR") {
			t.Errorf("streamlens %v: exit %v, output %q", args, err, out)
		}
	}
}

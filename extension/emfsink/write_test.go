package emfsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
)

// A flush of 300 streams × 2,000 chunks with unique instrument names (the
// worst a function can send under the default caps): every stream's own
// document is written, per-chunk detail is shed past the budget and counted,
// stdout gets pieces, not one buffer of the whole flush.
func TestFlushIsBoundedAndShedsDetailFirst(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	var output []byte
	var sizes []int
	var b Batch
	for i := 0; i < 300; i++ {
		res := state.Result{QuoteID: fmt.Sprintf("q%d", i), RequestID: "r1", Time: time.Now(), Expected: 2000, Delivered: 2000, Status: "complete", Integrity: -1}
		for c := 0; c < 2000; c++ {
			res.Chunks = append(res.Chunks, state.Chunk{Inst: fmt.Sprintf("I%d-%d", i, c), LatencyMs: float32(c), IntervalMs: 1})
		}
		b.Streams = append(b.Streams, res)
	}
	if errs := enc.Write(b, time.Now(), time.Now().Add(time.Hour), func(p []byte) {
		sizes = append(sizes, len(p))
		output = append(output, p...)
	}); len(errs) > 0 {
		t.Fatal(errs)
	}

	streams, shed := 0, 0.0
	for _, line := range bytes.Split(bytes.TrimSpace(output), []byte("\n")) {
		var d map[string]any
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("invalid line: %v", err)
		}
		if _, ok := d["QuoteId"]; ok {
			if _, ok := d["StreamTruncated"]; ok {
				streams++
			}
		}
		if v, ok := d["ShedChunkDetail"].(float64); ok {
			shed += v
		}
	}
	if streams != 300 {
		t.Errorf("%d stream documents, want all 300", streams)
	}
	if detail := countStreamsWithDetail(output); detail == 0 || detail >= 300 || shed != float64(300-detail) {
		t.Errorf("streams with per-chunk detail: %d, shed counted %v", detail, shed)
	}
	total, largest := 0, 0
	for _, n := range sizes {
		total += n
		largest = max(largest, n)
	}
	// The detail budget plus the streams' own documents, not 300 × 2,000
	// values (~25 MB).
	if total > detailBytes+300*1024+pieceBytes {
		t.Errorf("flush wrote %d bytes", total)
	}
	if largest > 2*pieceBytes {
		t.Errorf("a piece of %d bytes handed to stdout", largest)
	}
}

// countStreamsWithDetail counts the streams (by quote id) that have at least
// one document with per-chunk values: a stream's 2,000 values span several
// documents of 100 each.
func countStreamsWithDetail(b []byte) int {
	ids := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var d map[string]any
		_ = json.Unmarshal(line, &d)
		if _, ok := d["ChunkLatency"]; ok {
			if q, ok := d["QuoteId"].(string); ok {
				ids[q] = true
			}
		}
	}
	return len(ids)
}

// A stream that ended before its first byte (a crash, a timeout before the
// first quote) has no TTFB, and is a TTFB failure all the same: it counts
// as a breach, so the TTFB SLO sees it. A stream that delivered chunks but
// has no start (no TTFB known) is not judged.
func TestNoFirstByteIsATTFBBreach(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for name, c := range map[string]struct {
		r    state.Result
		want any
	}{
		"nothing delivered":        {state.Result{QuoteID: "q", RequestID: "r", Time: now, Truncated: true, Reason: "runtime-failure", Integrity: -1, Expected: 50}, 1.0},
		"chunks but no start":      {state.Result{QuoteID: "q", RequestID: "r", Time: now, Truncated: true, Delivered: 3, Integrity: -1, Expected: -1}, nil},
		"complete, no TTFB known":  {state.Result{QuoteID: "q", RequestID: "r", Time: now, Delivered: 5, Integrity: -1, Expected: -1}, nil},
		"slow first byte":          {state.Result{QuoteID: "q", RequestID: "r", Time: now, HasTTFB: true, TTFBMs: 150, Delivered: 5, Integrity: -1, Expected: -1}, 1.0},
		"first byte within budget": {state.Result{QuoteID: "q", RequestID: "r", Time: now, HasTTFB: true, TTFBMs: 15, Delivered: 5, Integrity: -1, Expected: -1}, 0.0},
	} {
		out, err := enc.AppendStream(nil, &c.r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		if d["TTFBBudgetBreach"] != c.want {
			t.Errorf("%s: TTFBBudgetBreach %v, want %v", name, d["TTFBBudgetBreach"], c.want)
		}
	}
}

// Truncations that are not the service's are told apart: the caller went
// away (status-aborted), or streamlens could not judge the stream (evicted,
// open at a spin-down). Service truncations carry neither.
func TestTruncationsNotByTheService(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond})
	now := time.Unix(1_800_000_000, 0)
	for reason, want := range map[string]string{
		"status-aborted": "TruncationByCaller", "evicted": "TruncationUnobserved", "shutdown-spindown": "TruncationUnobserved",
		"runtime-timeout": "", "status-error": "", "short": "", "no-end": "", "shutdown-timeout": "",
	} {
		r := state.Result{QuoteID: "q", RequestID: "r", Time: now, Truncated: true, Reason: reason, Delivered: 3, Integrity: -1, Expected: -1}
		out, err := enc.AppendStream(nil, &r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"TruncationByCaller", "TruncationUnobserved"} {
			if got, ok := d[k]; ok != (k == want) || ok && got != 1.0 {
				t.Errorf("%s: %s = %v", reason, k, got)
			}
		}
	}
}

// With STREAMLENS_VERSION_DIMENSION=on the stream metrics are published
// per function version too; off (the default), the document is unchanged.
func TestVersionDimension(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := state.Result{QuoteID: "q", RequestID: "r", Time: now, Delivered: 5, Integrity: -1, Expected: -1, HasTTFB: true, TTFBMs: 12}
	for version, want := range map[string]string{"": `[["FunctionName"]]`, "7": `[["FunctionName"],["FunctionName","Version"]]`} {
		enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing", TTFBThreshold: 100 * time.Millisecond, Version: version})
		out, err := enc.AppendStream(nil, &r, now, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte(`"Dimensions":`+want)) || (version != "") != bytes.Contains(out, []byte(`"Version":"7"`)) {
			t.Errorf("version %q: %s", version, out)
		}
	}
}

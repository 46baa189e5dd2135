package e2e

import (
	"bufio"
	"strings"
	"testing"
)

// What 20 invocations of the pricing function (50 instruments, one stream
// each) write to the log, all in, SHUTDOWN included: an invocation with one
// stream is one outcome document (the cold start's record, which carries the
// init, stays apart), the platform's figures share one document, and the
// per-instrument documents are written at SHUTDOWN, 50 of them for 20 values
// each. Log ingestion is billed per byte.
func TestLogBytesPerInvocation(t *testing.T) {
	e := start(t, nil)
	const n = 20
	for i := 0; i < n; i++ {
		if res, _ := e.invoke(t, ""); res.Status != "success" {
			t.Fatalf("invocation %d: %+v", i, res)
		}
	}
	e.sb.Close()
	ds := e.log.docs(t) // every line checked as CloudWatch would
	outcomes, records := 0, 0
	for _, d := range ds {
		if _, ok := d["ColdStart"]; ok {
			outcomes++
			if d.str("QuoteId") == "" {
				records++
			}
		}
	}
	if outcomes != n || records != 1 {
		t.Errorf("%d outcomes, %d of them records apart from their stream; want %d and 1 (the cold start's)", outcomes, records, n)
	}
	sc := bufio.NewScanner(strings.NewReader(e.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	total := 0
	kinds := map[string]int{}
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, `{"_aws"`) {
			continue
		}
		total += len(l) + 1
		k := "counters"
		switch {
		case strings.Contains(l, `"Instrument":`):
			k = "instrument"
		case strings.Contains(l, `"QuoteId":`):
			k = "stream"
		case strings.Contains(l, `"RequestId":`):
			k = "record"
		case strings.Contains(l, `"ResponseLatency"`):
			k = "platform"
		}
		kinds[k] += len(l) + 1
	}
	per := func(k string) int { return kinds[k] / n }
	t.Logf("figure: %d invocations → %d EMF bytes, %d per invocation: stream documents (with their outcome) %d, records apart %d, platform %d, per-instrument %d, counters %d",
		n, total, total/n, per("stream"), per("record"), per("platform"), per("instrument"), per("counters"))
	// 2,996 before an invocation's outcome went with its stream. The
	// per-instrument documents alone are ~1.3 KB an invocation here: 50
	// documents at SHUTDOWN, ~300 bytes of each the same whatever it holds.
	if total/n > 2600 {
		t.Errorf("%d EMF bytes per invocation, want ≤ 2600", total/n)
	}
}

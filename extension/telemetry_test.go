package extension

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func applyBatch(t *Table, b []byte) (bad int) {
	evs, err := decodeTelemetryBatch(b)
	if err != nil {
		return 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ev := range evs {
		if !t.applyTelemetry(ev) {
			bad++
		}
	}
	return bad
}

func TestTelemetryJoinsInvocation(t *testing.T) {
	tb := newTable(10, 10)
	tb.beginInvocation("r1", time.Now(), "")
	bad := applyBatch(tb, []byte(`[
	 {"time":"2026-11-22T20:00:00.000Z","type":"platform.initReport","record":{"initializationType":"provisioned-concurrency","phase":"init","status":"success","metrics":{"durationMs":123.5}}},
	 {"time":"2026-11-22T20:00:01.000Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"timeout","metrics":{"durationMs":3000,"producedBytes":512},
	   "spans":[{"name":"responseLatency","start":"2026-11-22T20:00:00.100Z","durationMs":12.5},{"name":"responseDuration","start":"2026-11-22T20:00:00.112Z","durationMs":2900}]}},
	 {"time":"2026-11-22T20:00:01.000Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}},
	 {"time":"2026-11-22T20:00:01.100Z","type":"platform.report","record":{"requestId":"r1","status":"timeout","metrics":{"durationMs":3001,"billedDurationMs":3001,"memorySizeMB":128,"maxMemoryUsedMB":40}}},
	 {"time":"2026-11-22T20:00:01.100Z","type":"function","record":"a log line"},
	 {"time":"x","type":"platform.runtimeDone","record":"not an object"}
	]`))
	if bad != 2 {
		t.Errorf("%d items rejected, want 2 (duplicate runtimeDone, bad record)", bad)
	}
	inv := tb.invocations["r1"]
	if inv.runtimeDone == nil || inv.runtimeDone.status != "timeout" || inv.runtimeDone.responseLatencyMs != 12.5 || inv.report.billedDurationMs != 3001 {
		t.Errorf("%+v %+v", inv.runtimeDone, inv.report)
	}
	if tb.init.initType != "provisioned-concurrency" || tb.init.durationMs != 123.5 {
		t.Errorf("init %+v", tb.init)
	}
}

func TestTelemetryFloodIsBounded(t *testing.T) {
	tb := newTable(10, 10)
	for i := 0; i < 10000; i++ {
		applyBatch(tb, []byte(fmt.Sprintf(`[{"type":"platform.runtimeDone","record":{"requestId":"fake-%d","status":"success"}}]`, i)))
	}
	if n := len(tb.invocations); n > maxTelemetryOnly+8 {
		t.Errorf("%d invocations held after a flood of made-up runtimeDone", n)
	}
}

func FuzzTelemetryBatch(f *testing.F) {
	seeds := []string{
		`[{"time":"2026-11-22T20:00:00.000Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"init","metrics":{"durationMs":5}}}]`,
		`[{"type":"platform.runtimeDone","record":{"requestId":"r","status":"error","spans":[{"name":"responseLatency","durationMs":1e308}]}}]`,
		`[{"type":"platform.report","record":{"requestId":"r","metrics":{"billedDurationMs":-1}}}]`,
		`[]`, `{}`, `[null]`, `[{"type":"platform.runtimeDone","record":null}]`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tb := newTable(10, 10)
		tb.beginInvocation("r", time.Now(), "")
		applyBatch(tb, b)
		// Whatever arrived, a flush still produces valid EMF.
		tb.mu.Lock()
		bt := batch{streams: tb.finalizeAll("shutdown-spindown"), invocations: tb.readyInvocations(true), counters: tb.takeCounters()}
		tb.mu.Unlock()
		fl := &flusher{cfg: Config{FunctionName: "f", Namespace: "N", TTFBThreshold: time.Millisecond}, now: time.Now}
		out, errs := fl.encode(bt)
		if len(errs) > 0 {
			t.Fatalf("flush after batch %q: %v", b, errs)
		}
		for _, line := range splitLines(out) {
			if !json.Valid(line) {
				t.Fatalf("invalid EMF line %q", line)
			}
		}
	})
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		out = append(out, b[:i])
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

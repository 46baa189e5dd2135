package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/state"
)

func applyBatch(t *state.Table, b []byte) (bad int) {
	evs, bad, err := Decode(b)
	if err != nil {
		return 1
	}
	return bad + Apply(t, evs, time.Now())
}

func TestTelemetryJoinsInvocation(t *testing.T) {
	tb := state.New(10, 10)
	tb.BeginInvocation(state.Invoke{RequestID: "r1", Deadline: time.Now()}, time.Now())
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
	tb.Finalize("r1", state.Failure{}, time.Now())
	invs := tb.ReadyInvocations(time.Now(), false)
	if len(invs) != 1 {
		t.Fatalf("%d invocation records, want 1 (its report arrived)", len(invs))
	}
	inv := invs[0]
	if inv.Done == nil || inv.Done.Status != "timeout" || inv.Done.ResponseLatencyMs != 12.5 || inv.Report.BilledDurationMs != 3001 {
		t.Errorf("%+v %+v", inv.Done, inv.Report)
	}
	if !inv.InitKnown || inv.Init.InitType != "provisioned-concurrency" || inv.Init.DurationMs != 123.5 {
		t.Errorf("init %+v", inv.Init)
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
		tb := state.New(10, 10)
		tb.BeginInvocation(state.Invoke{RequestID: "r", Deadline: time.Now()}, time.Now())
		applyBatch(tb, b)
		// Whatever arrived, a flush still produces valid EMF.
		bt := emfsink.Batch{Streams: tb.FinalizeAll(state.ShutdownFailure("spindown")), Invocations: tb.ReadyInvocations(time.Now(), true), Counters: tb.TakeCounters()}
		enc := emfsink.New(emfsink.Config{FunctionName: "f", Namespace: "N", TTFBThreshold: time.Millisecond})
		var out []byte
		errs := enc.Write(bt, time.Now(), time.Now().Add(time.Hour), func(p []byte) { out = append(out, p...) })
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

// Connections that send half a request and stall cannot hold the platform's
// POST back: at the bound, the oldest that never delivered a request is
// closed to make room, and the POST is served while the others still stall
// (with a plain connection limit it waited for their read timeout).
func TestStalledConnectionsDoNotHoldThePlatformBack(t *testing.T) {
	got := make(chan int, 1)
	l, err := Listen("127.0.0.1:0", func(evs []Event, bad int) { got <- len(evs) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	addr := "127.0.0.1:" + strconv.Itoa(l.Port())
	var stalled []net.Conn
	for i := 0; i < maxTelemetryConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Le"))
		stalled = append(stalled, c)
	}
	time.Sleep(50 * time.Millisecond) // let the server accept them all
	body := `[{"time":"2026-11-22T20:00:01.100Z","type":"platform.report","record":{"requestId":"r1","status":"success","metrics":{"durationMs":3}}}]`
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+addr+"/", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || <-got != 1 {
		t.Fatalf("the platform's POST: %d", resp.StatusCode)
	}
	open := 0
	for _, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	// Served while the stalled ones still stall: one made room, no more.
	if open != maxTelemetryConns-1 || l.Evicted() != 1 {
		t.Errorf("%d of %d stalled connections still open, %d evicted: want all but one, 1", open, maxTelemetryConns, l.Evicted())
	}
}

// After a reset the environment's init is suppressed into the invocation
// that needs it (phase "invoke"): that is the new extension process's own
// init, and its record carries it — a cold start its caller waited for.
func TestSuppressedInitIsThisProcesssInit(t *testing.T) {
	tb := state.New(10, 10)
	applyBatch(tb, []byte(`[{"time":"2026-11-22T20:00:00.000Z","type":"platform.initReport","record":{"initializationType":"on-demand","phase":"invoke","status":"success","metrics":{"durationMs":321}}}]`))
	tb.BeginInvocation(state.Invoke{RequestID: "r", Deadline: time.Now()}, time.Now())
	tb.Finalize("r", state.Failure{}, time.Now())
	recs := tb.ReadyInvocations(time.Now(), true)
	if len(recs) != 1 || !recs[0].InitKnown || recs[0].Init.DurationMs != 321 || !recs[0].FirstRecord || !recs[0].ColdStart {
		t.Errorf("%+v", recs)
	}
}

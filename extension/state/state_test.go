package state

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

const t0 = int64(1732300000000000000)

type sender struct {
	t *Table
	h protocol.Header
}

func newSender(t *Table, id, req string) *sender {
	return &sender{t: t, h: protocol.Header{StreamID: id, RequestID: req, TimeNs: t0}}
}

func (s *sender) send(b []byte) {
	s.t.ApplyDatagram(b, len(b), time.Now())
}

func (s *sender) start(exp int64) {
	s.send(protocol.AppendStart(nil, s.h, protocol.Start{Expected: exp, BundleID: "B"}))
}

func (s *sender) chunk(inst string, atMs int64, flags protocol.Flags) {
	s.h.Seq++
	s.h.TimeNs = t0 + atMs*1e6
	s.send(protocol.AppendChunk(nil, s.h, protocol.Chunk{Instrument: inst, Bytes: 10, Flags: flags}))
}

func (s *sender) end(delivered, exp int64, st protocol.Status) {
	s.h.Seq++
	s.send(protocol.AppendEnd(nil, s.h, protocol.End{Delivered: delivered, Expected: exp, Bytes: 10 * delivered, Status: st}))
}

func finalize(t *Table, req, failure string) []Result {
	t.invocationFor(req)
	return t.Finalize(req, failure)
}

func TestCompleteStreamMetrics(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(3)
	s.chunk("ERR", 2, protocol.FlagError)
	s.chunk("AAPL", 5, 0)
	s.chunk("SPY", 9, protocol.FlagFirstUseful)
	s.chunk("", 10, protocol.FlagTrailer)
	s.end(3, 3, protocol.StatusComplete)
	rs := finalize(tb, "r1", "")
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	r := rs[0]
	// The flagged chunk ends TTFB, not the first payload chunk.
	if !r.HasTTFB || r.TTFBMs != 9 || r.Truncated || r.Delivered != 3 || r.Expected != 3 || r.Dropped != 0 {
		t.Errorf("result %+v", r)
	}
	var lat, intv []float64
	for _, c := range r.Chunks {
		lat, intv = append(lat, Ms(c.LatencyMs)), append(intv, Ms(c.IntervalMs))
	}
	if len(r.Chunks) != 3 || lat[1] != 5 || intv[1] != 3 || intv[2] != 4 || r.Chunks[1].Inst != "AAPL" {
		t.Errorf("chunks %+v", r.Chunks)
	}
}

func TestTTFBFallsBackToFirstPayloadChunk(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(-1)
	s.chunk("X", 4, protocol.FlagError)
	s.chunk("Y", 7, 0)
	s.end(2, -1, protocol.StatusComplete)
	if r := finalize(tb, "r1", "")[0]; r.TTFBMs != 7 || r.Expected != -1 {
		t.Errorf("TTFB %v expected %v", r.TTFBMs, r.Expected)
	}
}

func TestTruncationReasons(t *testing.T) {
	cases := []struct {
		name    string
		run     func(s *sender)
		failure string
		reason  string
	}{
		{"short", func(s *sender) { s.start(5); s.chunk("A", 1, 0); s.end(1, 5, protocol.StatusComplete) }, "", ReasonShort},
		{"error", func(s *sender) { s.start(5); s.end(0, 5, protocol.StatusError) }, "", "status-error"},
		{"aborted", func(s *sender) { s.start(5); s.end(0, 5, protocol.StatusAborted) }, "", "status-aborted"},
		{"runtime timeout, no end", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, "runtime-timeout", "runtime-timeout"},
	}
	for _, c := range cases {
		tb := New(10, 100)
		c.run(newSender(tb, "q", "r"))
		rs := finalize(tb, "r", c.failure)
		if len(rs) != 1 || !rs[0].Truncated || rs[0].Reason != c.reason {
			t.Errorf("%s: %+v", c.name, rs)
		}
	}
}

// A stream of a successful invocation with no end yet is carried one boundary:
// its end may still be in flight and is attributed by request id.
func TestOpenStreamCarriedThenAttributedByRequestID(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(2)
	s.chunk("A", 1, 0)
	if rs := finalize(tb, "r1", ""); len(rs) != 0 {
		t.Fatalf("flushed too early: %+v", rs)
	}
	// After the thaw, during invocation r2, the rest of r1's stream arrives.
	s.chunk("B", 2, 0)
	s.end(2, 2, protocol.StatusComplete)
	rs := finalize(tb, "r2", "")
	if len(rs) != 1 || rs[0].RequestID != "r1" || rs[0].Truncated || rs[0].Delivered != 2 {
		t.Fatalf("late end not attributed to r1: %+v", rs)
	}
	// Without an end, the second boundary truncates it.
	s2 := newSender(tb, "q2", "r3")
	s2.start(2)
	finalize(tb, "r3", "")
	rs = finalize(tb, "r4", "")
	if len(rs) != 1 || rs[0].QuoteID != "q2" || rs[0].Reason != ReasonNoEnd {
		t.Fatalf("carried stream not truncated at the next boundary: %+v", rs)
	}
}

func TestLateDuplicateAndForgedEvents(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(1)
	s.chunk("A", 1, 0)
	s.end(1, 1, protocol.StatusComplete)
	s.end(1, 1, protocol.StatusComplete) // duplicate end: before flush
	forged := newSender(tb, "q1", "r-other")
	forged.chunk("A", 2, 0) // same stream id, another request id: another stream, never this one
	if rs := finalize(tb, "r1", ""); len(rs) != 1 || rs[0].Truncated || rs[0].RequestID != "r1" || rs[0].Delivered != 1 {
		t.Fatalf("%+v", rs)
	}
	s.chunk("A", 3, 0) // after flush: late
	c := tb.TakeCounters()
	if c.DuplicateEnd != 1 || c.LateEvents != 1 {
		t.Errorf("counters %+v", c)
	}
}

func TestSequenceGapCountsAsDropped(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(4)
	s.chunk("A", 1, 0)
	s.h.Seq += 2 // two chunk events lost in transit
	s.chunk("D", 4, 0)
	s.end(4, 4, protocol.StatusComplete)
	r := finalize(tb, "r1", "")[0]
	if r.Dropped != 2 || r.Delivered != 4 || r.Truncated {
		t.Errorf("result %+v", r)
	}
}

func TestOpenStreamCapEvictsOldest(t *testing.T) {
	tb := New(3, 100)
	for i := 0; i < 10; i++ {
		newSender(tb, "q"+string(rune('0'+i)), "r1").start(1)
	}
	if len(tb.streams) != 3 {
		t.Fatalf("%d streams open, cap 3", len(tb.streams))
	}
	for _, id := range []string{"q7", "q8", "q9"} {
		if tb.streams[key{"r1", id}] == nil {
			t.Errorf("newest stream %s evicted", id)
		}
	}
	if c := tb.TakeCounters(); c.Evicted != 7 {
		t.Errorf("evicted %d", c.Evicted)
	}
	// Events of an evicted stream are late, not a resurrection.
	newSender(tb, "q0", "r1").chunk("A", 1, 0)
	if tb.streams[key{"r1", "q0"}] != nil || tb.TakeCounters().LateEvents != 1 {
		t.Error("evicted stream came back")
	}
}

func TestChunkCapKeepsCountsExact(t *testing.T) {
	tb := New(10, 5)
	s := newSender(tb, "q1", "r1")
	s.start(20)
	for i := int64(0); i < 20; i++ {
		s.chunk("A", i, 0)
	}
	s.end(20, 20, protocol.StatusComplete)
	r := finalize(tb, "r1", "")[0]
	if len(r.Chunks) != 5 || r.Delivered != 20 || r.Truncated {
		t.Errorf("chunks kept %d delivered %d", len(r.Chunks), r.Delivered)
	}
}

func TestMalformedAndOversizedCounted(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.send([]byte("garbage\nsl1 chunk q1 r1 1 5 bytes=1\n"))
	tb.ApplyDatagram(make([]byte, 100), protocol.MaxDatagram+1, time.Now())
	c := tb.TakeCounters()
	if c.Malformed != 3 || c.Oversized != 1 || len(tb.streams) != 0 {
		t.Errorf("counters %+v streams %d", c, len(tb.streams))
	}
}

func TestIntegrity(t *testing.T) {
	tb := New(10, 100)
	h := protocol.Header{StreamID: "q", RequestID: "r", TimeNs: t0}
	e := protocol.End{Delivered: 0, Status: protocol.StatusComplete, HasSHA256: true, HasDeclared: true}
	e.Declared[0] = 1
	b := protocol.AppendStart(nil, h, protocol.Start{Expected: -1})
	h.Seq = 1
	b = protocol.AppendEnd(b, h, e)
	tb.ApplyDatagram(b, len(b), time.Now())
	if r := finalize(tb, "r", "")[0]; r.Integrity != 1 {
		t.Errorf("integrity %d, want mismatch", r.Integrity)
	}
}

func TestReadyInvocationsWaitForReport(t *testing.T) {
	tb := New(10, 100)
	t0 := time.Unix(1_800_000_000, 0)
	tb.BeginInvocation(Invoke{RequestID: "r1", Deadline: t0}, t0)
	tb.Finalize("r1", "")
	if got := tb.ReadyInvocations(t0, false); len(got) != 0 {
		t.Fatalf("emitted before its report: %+v", got)
	}
	tb.invocationFor("r1").report = &Report{BilledDurationMs: 12}
	got := tb.ReadyInvocations(t0, false)
	if len(got) != 1 || !got[0].ColdStart || got[0].Report == nil {
		t.Fatalf("%+v", got)
	}
	// Without its report, a record waits reportBoundaries boundaries and the
	// report wait: a fast function passes many boundaries before the
	// Telemetry API's buffered batch arrives.
	tb.SetReportWait(100 * time.Millisecond)
	tb.BeginInvocation(Invoke{RequestID: "r2", Deadline: t0}, t0)
	tb.Finalize("r2", "")
	tb.SetTelemetry(true)
	for i := 0; i < 10*reportBoundaries; i++ {
		if got := tb.ReadyInvocations(t0.Add(time.Duration(i)*time.Millisecond), false); len(got) != 0 {
			t.Fatalf("boundary %d: emitted while its report may still come: %+v", i, got)
		}
	}
	got = tb.ReadyInvocations(t0.Add(100*time.Millisecond), false) // boundaries and time are up: emitted without report
	if len(got) != 1 || got[0].ColdStart || got[0].Report != nil || !got[0].MissingDone || tb.counters.NoRuntimeDone != 1 {
		t.Fatalf("%+v", got)
	}
	// However long the wait, at most maxHeldRecords wait: the oldest go first.
	tb.SetReportWait(time.Hour)
	for i := 0; i < maxHeldRecords+5; i++ {
		id := fmt.Sprintf("held-%d", i)
		tb.BeginInvocation(Invoke{RequestID: id, Deadline: t0}, t0)
		tb.Finalize(id, "")
	}
	got = tb.ReadyInvocations(t0, false)
	if len(got) != 5 || got[0].RequestID != "held-0" || got[4].RequestID != "held-4" {
		t.Errorf("%d records past the cap, first %v", len(got), got)
	}
}

// A flood of starts under made-up request ids never evicts the real
// invocation's stream, and memory stays within the caps.
func TestFloodUnderOtherRequestIDsSparesTheRealStream(t *testing.T) {
	tb := New(16, 100)
	tb.BeginInvocation(Invoke{RequestID: "real", Deadline: time.Now()}, time.Now())
	real := newSender(tb, "q-real", "real")
	real.start(2)
	real.chunk("A", 1, 0)
	for i := 0; i < 5000; i++ {
		newSender(tb, "flood-"+strconv.Itoa(i), "fake-"+strconv.Itoa(i%3)).start(1)
	}
	if n := len(tb.streams); n > 4*16 {
		t.Errorf("%d streams held, cap %d", n, 4*16)
	}
	real.chunk("B", 2, 0)
	real.end(2, 2, protocol.StatusComplete)
	rs := finalize(tb, "real", "")
	var got *Result
	for i := range rs {
		if rs[i].QuoteID == "q-real" {
			got = &rs[i]
		}
	}
	if got == nil || got.Truncated || got.Delivered != 2 {
		t.Fatalf("real stream lost or damaged: %+v", got)
	}
	if c := tb.TakeCounters(); c.Evicted < 5000-4*16 {
		t.Errorf("evicted %d", c.Evicted)
	}
}

// The protocol's edge cases: no false truncation, no absurd figure, each
// case counted.
func TestProtocolEdgeCases(t *testing.T) {
	t.Run("end before start", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1")
		s.h.Seq = 2
		s.h.TimeNs = t0 + 9e6
		s.send(protocol.AppendEnd(nil, s.h, protocol.End{Delivered: 1, Expected: -1, Bytes: 10, Status: protocol.StatusComplete}))
		s.h.Seq, s.h.TimeNs = 1, t0+5e6
		s.send(protocol.AppendChunk(nil, s.h, protocol.Chunk{Instrument: "A", Bytes: 10}))
		s.h.Seq, s.h.TimeNs = 0, t0
		s.start(1) // reordered: the start arrives last
		rs := finalize(tb, "r1", "")
		if len(rs) != 1 || rs[0].Truncated || !rs[0].HasTTFB || rs[0].TTFBMs != 5 || rs[0].Expected != 1 {
			t.Errorf("%+v", rs)
		}
	})
	t.Run("duplicate chunk cannot hide a lost one", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1")
		s.start(3)
		s.chunk("A", 1, 0)
		s.send(protocol.AppendChunk(nil, s.h, protocol.Chunk{Instrument: "A", Bytes: 10})) // the same chunk again
		s.h.Seq++                                                                          // chunk 2 lost
		s.chunk("C", 3, 0)
		s.end(3, 3, protocol.StatusComplete)
		r := finalize(tb, "r1", "")[0]
		if r.Dropped != 1 || len(r.Chunks) != 2 || tb.TakeCounters().DuplicateEvents != 1 {
			t.Errorf("dropped %d, %d chunks kept: %+v", r.Dropped, len(r.Chunks), r)
		}
	})
	t.Run("stream id first seen under another request id", func(t *testing.T) {
		tb := New(10, 100)
		newSender(tb, "q1", "r-forged").chunk("X", 1, 0) // arrives first
		s := newSender(tb, "q1", "r1")
		s.start(1)
		s.chunk("A", 1, 0)
		s.end(1, 1, protocol.StatusComplete)
		tb.BeginInvocation(Invoke{RequestID: "r1", Deadline: time.Now().Add(time.Second)}, time.Now())
		rs := tb.Finalize("r1", "")
		if len(rs) != 1 || rs[0].RequestID != "r1" || rs[0].Truncated {
			t.Errorf("the real stream: %+v", rs)
		}
	})
	t.Run("quote id reused in a later invocation", func(t *testing.T) {
		tb := New(10, 100)
		for _, req := range []string{"r1", "r2"} {
			s := newSender(tb, "q-same", req)
			s.start(1)
			s.chunk("A", 1, 0)
			s.end(1, 1, protocol.StatusComplete)
			if rs := finalize(tb, req, ""); len(rs) != 1 || rs[0].Truncated || rs[0].RequestID != req {
				t.Errorf("%s: %+v", req, rs)
			}
		}
		if c := tb.TakeCounters(); c.LateEvents != 0 {
			t.Errorf("the second invocation's stream was taken for late events: %+v", c)
		}
	})
	t.Run("forged seq 2^32-1", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1")
		s.start(1)
		s.chunk("A", 1, 0)
		s.h.Seq = 1<<32 - 2
		s.end(1, 1, protocol.StatusComplete)
		r := finalize(tb, "r1", "")[0]
		if r.Dropped != 0 || r.Truncated || tb.TakeCounters().Implausible != 1 {
			t.Errorf("dropped %d: %+v", r.Dropped, r)
		}
	})
	t.Run("start skewed by years", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1")
		s.h.TimeNs = t0 - 20*365*24*int64(time.Hour) // within the wire format's 2000–2100
		s.start(1)
		s.chunk("A", 1, 0)
		s.end(1, 1, protocol.StatusComplete)
		r := finalize(tb, "r1", "")[0]
		if r.HasTTFB || r.Truncated || r.Chunks[0].LatencyMs != -1 || tb.TakeCounters().Implausible == 0 {
			t.Errorf("TTFB %v (has %v), latency %v: %+v", r.TTFBMs, r.HasTTFB, r.Chunks[0].LatencyMs, r)
		}
	})
	t.Run("lost start", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1") // start never sent
		s.chunk("A", 1, 0)
		s.chunk("B", 2, 0)
		s.end(2, 2, protocol.StatusComplete)
		r := finalize(tb, "r1", "")[0]
		if r.Truncated || r.HasTTFB || r.Delivered != 2 || r.Expected != 2 || r.Dropped != 1 || tb.TakeCounters().MissingStart != 1 {
			t.Errorf("%+v", r)
		}
	})
}

func TestTelemetryFloodIsBounded(t *testing.T) {
	tb := New(10, 10)
	for i := 0; i < 10000; i++ {
		tb.ApplyRuntimeDone(RuntimeDone{RequestID: fmt.Sprintf("fake-%d", i), Status: "success"}, time.Now())
	}
	if n := len(tb.invocations); n > maxTelemetryOnly+8 {
		t.Errorf("%d invocations held after a flood of made-up runtimeDone", n)
	}
}

// Only what changes an invocation's Progress wakes the lifecycle: a new
// stream, its first payload chunk, its end; not every chunk.
func TestApplyReportsProgressOnlyWhenItChanges(t *testing.T) {
	tb := New(10, 100)
	h := protocol.Header{StreamID: "q1", RequestID: "r1", TimeNs: t0}
	apply := func(b []byte) bool { return tb.ApplyDatagram(b, len(b), time.Now()) }
	if !apply(protocol.AppendStart(nil, h, protocol.Start{Expected: 3})) {
		t.Error("a new stream is progress")
	}
	for i, want := range []bool{true, false, false} {
		h.Seq++
		if got := apply(protocol.AppendChunk(nil, h, protocol.Chunk{Instrument: "A", Bytes: 1})); got != want {
			t.Errorf("chunk %d: progress %v, want %v", i+1, got, want)
		}
	}
	h.Seq++
	if !apply(protocol.AppendEnd(nil, h, protocol.End{Delivered: 3, Expected: 3, Status: protocol.StatusComplete})) {
		t.Error("an end is progress")
	}
	if apply(protocol.AppendEnd(nil, h, protocol.End{Delivered: 3, Expected: 3, Status: protocol.StatusComplete})) {
		t.Error("a duplicate end is not progress")
	}
	if p := tb.Progress("r1"); p.Seen != 1 || p.Open != 0 || !p.FirstChunk {
		t.Errorf("progress %+v", p)
	}
}

// A stream of a failed invocation ends, for its caller, when the platform
// ended the invocation: runtimeDone's time, else the invocation's start plus
// runtimeDone's duration, else the deadline of a timeout; a stream of a
// successful invocation has no such end.
func TestInvocationEndOfAFailedInvocation(t *testing.T) {
	started := time.Unix(0, t0).Add(-time.Millisecond)
	deadline := started.Add(3 * time.Second)
	for name, c := range map[string]struct {
		done    *RuntimeDone
		failure string
		want    time.Time
	}{
		"runtimeDone's time":     {&RuntimeDone{RequestID: "r", Status: "timeout", Time: deadline.Add(2 * time.Millisecond), DurationMs: 1}, "", deadline.Add(2 * time.Millisecond)},
		"start + duration":       {&RuntimeDone{RequestID: "r", Status: "failure", DurationMs: 250}, "", started.Add(250 * time.Millisecond)},
		"shutdown of a timeout":  {nil, ReasonShutdown + "timeout", deadline},
		"success: none":          {&RuntimeDone{RequestID: "r", Status: "success", Time: deadline}, "", time.Time{}},
		"spindown, no telemetry": {nil, ReasonShutdown + "spindown", time.Time{}},
	} {
		tb := New(10, 100)
		tb.BeginInvocation(Invoke{RequestID: "r", Deadline: deadline, InvokedARN: "arn:aws:lambda:us-east-1:1:function:f"}, started)
		s := newSender(tb, "q", "r")
		s.start(5)
		s.chunk("A", 1, 0)
		if c.done != nil {
			tb.ApplyRuntimeDone(*c.done, time.Now())
		}
		rs := tb.FinalizeAll(c.failure)
		if len(rs) != 1 || !rs[0].InvocationEnd.Equal(c.want) || rs[0].InvokedARN == "" || !rs[0].ColdStart {
			t.Errorf("%s: %+v, want end %v", name, rs, c.want)
		}
	}
}

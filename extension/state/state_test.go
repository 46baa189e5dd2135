package state

import (
	"fmt"
	"math"
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
	applyDatagram(s.t, b)
}

// applyDatagram decodes b as the ingest edge does and applies its events; it
// reports whether any made progress.
func applyDatagram(t *Table, b []byte) (progress bool) {
	protocol.Decode(b, func(ev *protocol.Event) {
		progress = t.Apply(ev, time.Now()) || progress
	}, func(error) {})
	return progress
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

// finalize ends invocation req once EndGrace has passed: a carried stream
// without its end is then judged.
func finalize(t *Table, req string, failure Failure) []Result {
	t.invocationFor(req)
	return t.Finalize(req, failure, time.Now().Add(EndGrace))
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
	rs := finalize(tb, "r1", Failure{})
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	r := rs[0]
	// The flagged chunk ends TTFB, not the first payload chunk.
	if !r.HasTTFB || r.TTFBMs != 9 || r.Verdict.Truncated() || r.Delivered != 3 || r.Expected != 3 || r.Dropped != 0 {
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
	if r := finalize(tb, "r1", Failure{})[0]; r.TTFBMs != 7 || r.Expected != -1 {
		t.Errorf("TTFB %v expected %v", r.TTFBMs, r.Expected)
	}
}

// Every way a stream ends maps to one verdict: its reason, as written, and
// its class, which decides the SLOs that count it.
func TestVerdicts(t *testing.T) {
	cases := []struct {
		name    string
		run     func(s *sender)
		failure Failure
		reason  string
		class   Class
	}{
		{"complete", func(s *sender) { s.start(1); s.chunk("A", 1, 0); s.end(1, 1, protocol.StatusComplete) }, Failure{}, "", Good},
		{"short", func(s *sender) { s.start(5); s.chunk("A", 1, 0); s.end(1, 5, protocol.StatusComplete) }, Failure{}, "short", Service},
		{"error after a chunk", func(s *sender) { s.start(5); s.chunk("A", 1, 0); s.end(1, 5, protocol.StatusError) }, Failure{}, "status-error", Service},
		{"error before a chunk", func(s *sender) { s.start(5); s.end(0, 5, protocol.StatusError) }, Failure{}, "status-error", BeforeFirstByte},
		{"aborted", func(s *sender) { s.start(5); s.end(0, 5, protocol.StatusAborted) }, Failure{}, "status-aborted", Caller},
		{"aborted after a chunk", func(s *sender) { s.start(5); s.chunk("A", 1, 0); s.end(1, 5, protocol.StatusAborted) }, Failure{}, "status-aborted", Caller},
		{"runtime timeout, no end", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, PlatformFailure("timeout"), "runtime-timeout", Service},
		{"runtime failure before a chunk", func(s *sender) { s.start(5) }, PlatformFailure("failure"), "runtime-failure", BeforeFirstByte},
		{"no end", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, Failure{}, "", Good}, // carried: judged below
		{"spindown", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, ShutdownFailure("spindown"), "shutdown-spindown", Unobserved},
		{"emulator's Timeout", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, ShutdownFailure("Timeout"), "shutdown-timeout", Service},
		{"emulator's ReleaseFail", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, ShutdownFailure("ReleaseFail"), "shutdown-failure", Service},
		{"emulator's SandboxTerminated", func(s *sender) { s.start(5); s.chunk("A", 1, 0) }, ShutdownFailure("SandboxTerminated"), "shutdown-spindown", Unobserved},
	}
	for _, c := range cases {
		tb := New(10, 100)
		c.run(newSender(tb, "q", "r"))
		var rs []Result
		if c.failure.Cause == Shutdown {
			rs = tb.FinalizeAll(c.failure)
		} else {
			rs = finalize(tb, "r", c.failure)
		}
		if c.name == "no end" {
			if len(rs) != 0 {
				t.Errorf("%s: judged at its own boundary: %+v", c.name, rs)
			}
			continue
		}
		if len(rs) != 1 || rs[0].Verdict.Reason() != c.reason || rs[0].Verdict.Class != c.class || rs[0].Verdict.Truncated() != (c.reason != "") {
			t.Errorf("%s: %+v, want %q %v", c.name, rs, c.reason, c.class)
		}
	}
}

// Each class has a name, and every cause has a reason but Complete.
func TestClassAndReasonNames(t *testing.T) {
	for c, want := range map[Class]string{Good: "good", Service: "service", BeforeFirstByte: "before-first-byte", Caller: "caller", Unobserved: "unobserved"} {
		if c.String() != want {
			t.Errorf("%d: %q, want %q", c, c.String(), want)
		}
	}
	for c := NoEnd; c <= Shutdown; c++ {
		if (Verdict{Cause: c, Detail: "x"}).Reason() == "" {
			t.Errorf("cause %d has no reason", c)
		}
	}
	if got := NormalShutdownReason("Bad\"Reason\n"); got != "bad-reason-" {
		t.Errorf("unsafe reason kept as %q", got)
	}
}

// An end that arrives within EndGrace of the runtimeDone that said the
// invocation succeeded is not a truncation, however many boundaries pass in
// that time (a fast caller, an async sender); after it, the stream is no-end.
func TestLateEndWithinGrace(t *testing.T) {
	tb := New(10, 100)
	now := time.Now()
	tb.BeginInvocation(Invoke{RequestID: "r1", Deadline: now.Add(time.Minute)}, now)
	s := newSender(tb, "q1", "r1")
	s.start(1)
	s.chunk("A", 1, 0)
	tb.ApplyRuntimeDone(RuntimeDone{RequestID: "r1", Status: "success"}, now)
	for i, at := range []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond} {
		id := fmt.Sprintf("r%d", i+2)
		tb.BeginInvocation(Invoke{RequestID: id, Deadline: now.Add(time.Minute)}, now.Add(at))
		if rs := tb.Finalize(id, Failure{}, now.Add(at)); len(rs) != 0 {
			t.Fatalf("boundary %d, %v after runtimeDone: judged %+v", i, at, rs)
		}
	}
	s.end(1, 1, protocol.StatusComplete)
	rs := tb.Finalize("r5", Failure{}, now.Add(400*time.Millisecond))
	if len(rs) != 1 || rs[0].Verdict.Truncated() {
		t.Fatalf("an end 300 ms late: %+v", rs)
	}
	s2 := newSender(tb, "q2", "r5")
	s2.start(1)
	tb.Finalize("r5", Failure{}, now.Add(500*time.Millisecond))
	if rs := tb.Finalize("r6", Failure{}, now.Add(500*time.Millisecond+EndGrace)); len(rs) != 1 || rs[0].Verdict.Cause != NoEnd {
		t.Fatalf("after the grace: %+v", rs)
	}
}

// A stream of a successful invocation with no end yet is carried one boundary:
// its end may still be in flight and is attributed by request id.
func TestOpenStreamCarriedThenAttributedByRequestID(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q1", "r1")
	s.start(2)
	s.chunk("A", 1, 0)
	if rs := finalize(tb, "r1", Failure{}); len(rs) != 0 {
		t.Fatalf("flushed too early: %+v", rs)
	}
	// After the thaw, during invocation r2, the rest of r1's stream arrives.
	s.chunk("B", 2, 0)
	s.end(2, 2, protocol.StatusComplete)
	rs := finalize(tb, "r2", Failure{})
	if len(rs) != 1 || rs[0].RequestID != "r1" || rs[0].Verdict.Truncated() || rs[0].Delivered != 2 {
		t.Fatalf("late end not attributed to r1: %+v", rs)
	}
	// Without an end, the second boundary truncates it.
	s2 := newSender(tb, "q2", "r3")
	s2.start(2)
	finalize(tb, "r3", Failure{})
	rs = finalize(tb, "r4", Failure{})
	if len(rs) != 1 || rs[0].QuoteID != "q2" || rs[0].Verdict.Cause != NoEnd {
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
	if rs := finalize(tb, "r1", Failure{}); len(rs) != 1 || rs[0].Verdict.Truncated() || rs[0].RequestID != "r1" || rs[0].Delivered != 1 {
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
	r := finalize(tb, "r1", Failure{})[0]
	if r.Dropped != 2 || r.Delivered != 4 || r.Verdict.Truncated() {
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
	r := finalize(tb, "r1", Failure{})[0]
	if len(r.Chunks) != 5 || r.Delivered != 20 || r.Verdict.Truncated() {
		t.Errorf("chunks kept %d delivered %d", len(r.Chunks), r.Delivered)
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
	applyDatagram(tb, b)
	if r := finalize(tb, "r", Failure{})[0]; r.Integrity != 1 {
		t.Errorf("integrity %d, want mismatch", r.Integrity)
	}
}

func TestReadyInvocationsWaitForReport(t *testing.T) {
	tb := New(10, 100)
	t0 := time.Unix(1_800_000_000, 0)
	tb.BeginInvocation(Invoke{RequestID: "r1", Deadline: t0}, t0)
	tb.Finalize("r1", Failure{}, time.Now().Add(EndGrace))
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
	tb.Finalize("r2", Failure{}, time.Now().Add(EndGrace))
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
		tb.Finalize(id, Failure{}, time.Now().Add(EndGrace))
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
	rs := finalize(tb, "real", Failure{})
	var got *Result
	for i := range rs {
		if rs[i].QuoteID == "q-real" {
			got = &rs[i]
		}
	}
	if got == nil || got.Verdict.Truncated() || got.Delivered != 2 {
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
		rs := finalize(tb, "r1", Failure{})
		if len(rs) != 1 || rs[0].Verdict.Truncated() || !rs[0].HasTTFB || rs[0].TTFBMs != 5 || rs[0].Expected != 1 {
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
		r := finalize(tb, "r1", Failure{})[0]
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
		rs := tb.Finalize("r1", Failure{}, time.Now().Add(EndGrace))
		if len(rs) != 1 || rs[0].RequestID != "r1" || rs[0].Verdict.Truncated() {
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
			if rs := finalize(tb, req, Failure{}); len(rs) != 1 || rs[0].Verdict.Truncated() || rs[0].RequestID != req {
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
		r := finalize(tb, "r1", Failure{})[0]
		if r.Dropped != 0 || r.Verdict.Truncated() || tb.TakeCounters().Implausible != 1 {
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
		r := finalize(tb, "r1", Failure{})[0]
		if r.HasTTFB || r.Verdict.Truncated() || r.Chunks[0].LatencyMs != -1 || tb.TakeCounters().Implausible == 0 {
			t.Errorf("TTFB %v (has %v), latency %v: %+v", r.TTFBMs, r.HasTTFB, r.Chunks[0].LatencyMs, r)
		}
	})
	t.Run("lost start", func(t *testing.T) {
		tb := New(10, 100)
		s := newSender(tb, "q1", "r1") // start never sent
		s.chunk("A", 1, 0)
		s.chunk("B", 2, 0)
		s.end(2, 2, protocol.StatusComplete)
		r := finalize(tb, "r1", Failure{})[0]
		if r.Verdict.Truncated() || r.HasTTFB || r.Delivered != 2 || r.Expected != 2 || r.Dropped != 1 || tb.TakeCounters().MissingStart != 1 {
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
	apply := func(b []byte) bool { return applyDatagram(tb, b) }
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
		failure Failure
		want    time.Time
	}{
		"runtimeDone's time":     {&RuntimeDone{RequestID: "r", Status: "timeout", Time: deadline.Add(2 * time.Millisecond), DurationMs: 1}, ShutdownFailure("spindown"), deadline.Add(2 * time.Millisecond)},
		"start + duration":       {&RuntimeDone{RequestID: "r", Status: "failure", DurationMs: 250}, ShutdownFailure("spindown"), started.Add(250 * time.Millisecond)},
		"shutdown of a timeout":  {nil, ShutdownFailure("timeout"), deadline},
		"success: none":          {&RuntimeDone{RequestID: "r", Status: "success", Time: deadline}, ShutdownFailure("spindown"), time.Time{}},
		"spindown, no telemetry": {nil, ShutdownFailure("spindown"), time.Time{}},
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

// Every invocation the platform reports gets one outcome, whether or not the
// function sent a single event: a failure before any stream started is a
// failure before the first byte; a success without one is counted apart; an
// invocation with streams is judged by them.
func TestEveryInvocationGetsAnOutcome(t *testing.T) {
	now := time.Now()
	for name, c := range map[string]struct {
		status       string
		stream       bool
		shutdown     Failure
		reason       string
		nonStreaming bool
	}{
		"error before start":         {status: "error", reason: "runtime-error"},
		"crash before start":         {status: "failure", reason: "runtime-failure"},
		"timeout, no word but reset": {shutdown: ShutdownFailure("timeout"), reason: "shutdown-timeout"},
		"success, no stream":         {status: "success", nonStreaming: true},
		"error with a stream":        {status: "error", stream: true},
		"spindown, no word":          {shutdown: ShutdownFailure("spindown")},
	} {
		tb := New(10, 100)
		tb.SetTelemetry(true)
		tb.BeginInvocation(Invoke{RequestID: "r", Deadline: now.Add(time.Minute)}, now)
		if c.stream {
			newSender(tb, "q", "r").start(1)
		}
		if c.status != "" {
			tb.ApplyRuntimeDone(RuntimeDone{RequestID: "r", Status: c.status}, now)
		}
		tb.Finalize("r", PlatformFailure(c.status), now)
		tb.ShutDown(c.shutdown)
		f := c.shutdown
		if !f.Failed() {
			f = ShutdownFailure("spindown")
		}
		tb.FinalizeAll(f)
		recs := tb.ReadyInvocations(now, true)
		if len(recs) != 1 {
			t.Fatalf("%s: %d records", name, len(recs))
		}
		r := recs[0]
		want := Good
		if c.reason != "" {
			want = BeforeFirstByte
		}
		if r.Verdict.Reason() != c.reason || r.Verdict.Class != want || r.NonStreaming != c.nonStreaming || r.Streams != map[bool]int{true: 1}[c.stream] {
			t.Errorf("%s: %+v", name, r)
		}
	}
}

// Lambda Managed Instances send no runtimeDone: platform.report's status
// judges the invocation's streams. A stream without an end is truncated at
// its invocation's report, with the report's status; an ended stream waits
// for the report, since a timed-out invocation's code runs on and may end
// its stream complete after the deadline; records carry no
// RuntimeDoneMissing, and the first carries the init.
func TestManagedInstancesJudgeByReport(t *testing.T) {
	now := time.Now()
	tb := New(64, 100)
	tb.SetTelemetry(true)
	tb.SetManaged(true)
	tb.ApplyInit(InitReport{InitType: "lambda-managed-instances", DurationMs: 120})
	open := newSender(tb, "q1", "r1")
	open.start(3)
	open.chunk("A", 1, 0)
	late := newSender(tb, "q2", "r2")
	late.start(1)
	late.chunk("A", 1, 0)
	late.end(1, 1, protocol.StatusComplete)
	if rs := tb.FinalizeEnded(now, time.Second); len(rs) != 0 {
		t.Fatalf("judged before any report: %+v", rs)
	}
	tb.ApplyReport(Report{RequestID: "r1", Status: "timeout", ErrorType: "Sandbox.Timedout", Time: now, HasLatency: true, ResponseLatencyMs: 3}, now)
	tb.ApplyReport(Report{RequestID: "r2", Status: "timeout", Time: now}, now)
	rs := tb.FinalizeEnded(now, time.Second)
	if len(rs) != 2 {
		t.Fatalf("%d streams judged at their reports, want 2: %+v", len(rs), rs)
	}
	for _, r := range rs {
		if r.Verdict.Reason() != "runtime-timeout" || r.Verdict.Class != Service || r.PlatformLatencyMs < 0 && r.RequestID == "r1" {
			t.Errorf("%s: %+v", r.QuoteID, r.Verdict)
		}
	}
	recs := tb.ReadyInvocations(now, false)
	if len(recs) != 2 || recs[0].MissingDone || !recs[0].FirstRecord || recs[1].FirstRecord || recs[0].Done == nil || !recs[0].Done.FromReport {
		t.Fatalf("records %+v", recs)
	}
	if c := tb.TakeCounters(); c.NoRuntimeDone != 0 {
		t.Errorf("%d runtimeDone counted missing where none is sent", c.NoRuntimeDone)
	}
	// An ended stream whose report never comes goes out once it is overdue.
	lost := newSender(tb, "q3", "r3")
	lost.start(1)
	lost.end(0, 1, protocol.StatusComplete)
	if rs := tb.FinalizeEnded(time.Now(), time.Hour); len(rs) != 0 {
		t.Fatalf("flushed before its report was overdue: %+v", rs)
	}
	if rs := tb.FinalizeEnded(time.Now().Add(2*time.Second), time.Second); len(rs) != 1 {
		t.Fatalf("held past its hold: %+v", rs)
	}
}

// At 128 invocations at once, every report makes a record: on Managed
// Instances each invocation is known only from telemetry.
func TestManagedInstancesLoseNoRecordAt128(t *testing.T) {
	now := time.Now()
	tb := New(64, 100)
	tb.SetTelemetry(true)
	tb.SetManaged(true)
	for i := 0; i < 128; i++ {
		s := newSender(tb, "q", fmt.Sprintf("r%d", i))
		s.start(1)
		s.chunk("A", 1, 0)
		s.end(1, 1, protocol.StatusComplete)
	}
	for i := 0; i < 128; i++ {
		tb.ApplyReport(Report{RequestID: fmt.Sprintf("r%d", i), Status: "success", Time: now}, now)
	}
	if rs := tb.FinalizeEnded(now, time.Second); len(rs) != 128 {
		t.Fatalf("%d streams", len(rs))
	}
	if recs := tb.ReadyInvocations(now, false); len(recs) != 128 {
		t.Fatalf("%d records of 128", len(recs))
	}
	if c := tb.TakeCounters(); c.InvocationsDropped != 0 {
		t.Fatalf("%d dropped", c.InvocationsDropped)
	}
}

// Under a flood of chunks the table keeps at most its budget of per-chunk
// records, whatever the input; every stream's counts, TTFB and verdict stay
// exact, and what was not kept is counted. Flushed streams give their
// budget back.
func TestChunkDetailStaysUnderTheMemoryLimit(t *testing.T) {
	tb := New(64, 2000)
	tb.SetMemoryLimit(64 * chunkRecordBytes * 4 * 10) // a budget of 640 records
	for q := 0; q < 8; q++ {
		s := newSender(tb, fmt.Sprintf("q%d", q), "r")
		s.start(200)
		for i := 0; i < 200; i++ {
			s.chunk("A", int64(i+1), 0)
		}
		s.end(200, 200, protocol.StatusComplete)
		if tb.chunkRecords > 640 {
			t.Fatalf("stream %d: %d records kept, budget 640", q, tb.chunkRecords)
		}
	}
	rs := finalize(tb, "r", Failure{})
	kept := 0
	for _, r := range rs {
		kept += len(r.Chunks)
		if r.Delivered != 200 || r.Verdict.Truncated() || !r.HasTTFB {
			t.Errorf("%s: %+v", r.QuoteID, r)
		}
	}
	if c := tb.TakeCounters(); kept != 640 || c.ChunkDetailShed != 8*200-640 || tb.chunkRecords != 0 {
		t.Errorf("kept %d, shed %d, held after the flush %d", kept, c.ChunkDetailShed, tb.chunkRecords)
	}
}

// An end that claims more than a response can hold (200 MiB; a chunk is a
// byte at least) is forged: the counts that arrived stand, and it is
// counted as implausible rather than published.
func TestForgedCountsInAnEndAreNotPublished(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q", "r")
	s.start(math.MaxInt32)
	s.chunk("A", 1, 0)
	s.h.Seq++
	s.send(protocol.AppendEnd(nil, s.h, protocol.End{Delivered: math.MaxInt32, Expected: math.MaxInt32, Bytes: 10, Status: protocol.StatusComplete}))
	r := finalize(tb, "r", Failure{})[0]
	if r.Delivered != 1 || r.Expected != -1 || tb.TakeCounters().Implausible < 2 {
		t.Errorf("delivered %d, expected %d: a forged count was kept", r.Delivered, r.Expected)
	}
}

// The longest silence the caller saw is measured from the start to a chunk
// and between chunks, whatever the order the events arrive in.
func TestLongestGap(t *testing.T) {
	tb := New(10, 100)
	s := newSender(tb, "q", "r")
	s.start(3)
	s.chunk("A", 5, 0)
	s.chunk("B", 2005, 0) // 2 s of silence
	s.chunk("C", 2010, 0)
	s.end(3, 3, protocol.StatusComplete)
	if r := finalize(tb, "r", Failure{})[0]; r.LongestGapMs != 2000 {
		t.Errorf("longest gap %v ms, want 2000", r.LongestGapMs)
	}
}

// A flood of made-up starts cannot push out a real stream that is
// delivering, even before its INVOKE made it the current invocation's (a
// starved extension may read the socket before the Extensions API).
func TestFloodSparesADeliveringStreamNotYetCurrent(t *testing.T) {
	tb := New(16, 100)
	tb.BeginInvocation(Invoke{RequestID: "previous", Deadline: time.Now().Add(time.Minute)}, time.Now())
	real := newSender(tb, "q", "real")
	real.start(3)
	real.chunk("A", 1, 0)
	for i := 0; i < 10*16; i++ {
		newSender(tb, fmt.Sprintf("flood-%d", i), fmt.Sprintf("fake-%d", i%4)).start(1)
	}
	if _, ok := tb.streams[key{"real", "q"}]; !ok {
		t.Fatal("the delivering stream was evicted by made-up starts")
	}
	if c := tb.TakeCounters(); c.Evicted == 0 || len(tb.streams) > 4*16 {
		t.Errorf("evicted %d, %d streams held", c.Evicted, len(tb.streams))
	}
}

// An invocation with one stream has one outcome document: the stream's
// carries it (Folded, with the CPU and a failure known by then), and its
// record, when the platform's figures come, says it was folded. Two
// streams, or the record that carries the environment's init, keep a
// record of their own.
func TestOneStreamInvocationFoldsItsOutcome(t *testing.T) {
	now := time.Now()
	tb := New(64, 100)
	tb.SetTelemetry(true)
	tb.ApplyInit(InitReport{InitType: "on-demand", DurationMs: 100})
	one := func(req string, streams int) []Result {
		tb.BeginInvocation(Invoke{RequestID: req, Deadline: now.Add(time.Minute)}, now)
		for i := range streams {
			s := newSender(tb, fmt.Sprintf("q%d", i), req)
			s.start(1)
			s.chunk("A", 1, 0)
			s.end(1, 1, protocol.StatusComplete)
		}
		tb.SetCPU(req, 2*time.Millisecond)
		return tb.Finalize(req, Failure{}, now)
	}
	// The cold start's record carries the init: not folded.
	if rs := one("cold", 1); len(rs) != 1 || rs[0].Folded {
		t.Fatalf("cold start: %+v", rs)
	}
	tb.ApplyRuntimeDone(RuntimeDone{RequestID: "cold", Status: "success"}, now)
	tb.ApplyReport(Report{RequestID: "cold", DurationMs: 5}, now)
	if recs := tb.ReadyInvocations(now, false); len(recs) != 1 || recs[0].Folded || !recs[0].FirstRecord {
		t.Fatalf("cold record: %+v", recs)
	}
	rs := one("warm", 1)
	if len(rs) != 1 || !rs[0].Folded || rs[0].CPU != 2*time.Millisecond || rs[0].ColdStart {
		t.Fatalf("one stream: %+v", rs)
	}
	rs = one("two", 2)
	if len(rs) != 2 || rs[0].Folded || rs[1].Folded {
		t.Fatalf("two streams: %+v", rs)
	}
	// The warm invocation failed after its stream's end: its record says
	// so, and that it was folded before runtimeDone came.
	tb.ApplyRuntimeDone(RuntimeDone{RequestID: "warm", Status: "error", ErrorType: "Runtime.ExitError"}, now)
	tb.ApplyReport(Report{RequestID: "warm", DurationMs: 5}, now)
	tb.ApplyRuntimeDone(RuntimeDone{RequestID: "two", Status: "success"}, now)
	tb.ApplyReport(Report{RequestID: "two", DurationMs: 5}, now)
	recs := map[string]InvocationResult{}
	for _, r := range tb.ReadyInvocations(now, false) {
		recs[r.RequestID] = r
	}
	if r := recs["warm"]; !r.Folded || r.FoldedDone || r.Done == nil || r.Streams != 1 {
		t.Errorf("warm record: %+v", r)
	}
	if r := recs["two"]; r.Folded || r.Streams != 2 {
		t.Errorf("two-stream record: %+v", r)
	}
	// A failure known at the boundary goes with the stream.
	tb.BeginInvocation(Invoke{RequestID: "crash", Deadline: now.Add(time.Minute)}, now)
	s := newSender(tb, "q", "crash")
	s.start(3)
	s.chunk("A", 1, 0)
	tb.ApplyRuntimeDone(RuntimeDone{RequestID: "crash", Status: "error", ErrorType: "Runtime.ExitError"}, now)
	rs = tb.Finalize("crash", PlatformFailure("error"), now)
	if len(rs) != 1 || !rs[0].Folded || rs[0].ErrorType != "Runtime.ExitError" || rs[0].InvocationStatus != "error" {
		t.Fatalf("crash: %+v", rs)
	}
	tb.ApplyReport(Report{RequestID: "crash", DurationMs: 5}, now)
	if recs := tb.ReadyInvocations(now, false); len(recs) != 1 || !recs[0].Folded || !recs[0].FoldedDone {
		t.Fatalf("crash record: %+v", recs)
	}
}

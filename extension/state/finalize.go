package state

import (
	"sort"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/protocol"
)

// maxResponseBytes is Lambda's largest streamed response, 200 MiB: no stream
// delivers more bytes, nor more chunks (a chunk is a byte at least).
const maxResponseBytes = 200 << 20

// maxFlushedMemory bounds the set of flushed quote ids kept to recognise late
// events.
const maxFlushedMemory = 4096

// Result is one finished stream, ready to be written as EMF.
type Result struct {
	QuoteID, RequestID              string
	BundleID, ClientID, TraceParent string
	// CallerParent: TraceParent is the caller's span (the function made
	// none of its own), not the function's.
	CallerParent        bool
	Time                time.Time
	TTFBMs              float64
	HasTTFB             bool
	Chunks              []Chunk
	Delivered, Expected int64 // Expected -1: unknown
	Bytes               int64
	Verdict             Verdict // decided once, here: sinks read it
	Status              string
	Dropped             int64
	// BlockedMs is the time the function's writer spent blocked writing the
	// stream (backpressure from a slow caller), BlockedMaxMs the longest
	// single block, as the client measured them (HasBlocked).
	BlockedMs, BlockedMaxMs float64
	HasBlocked              bool
	// LongestGapMs is the longest time the caller got nothing between the
	// stream's start and a chunk, or two chunks.
	LongestGapMs     float64
	Integrity        int       // -1 unknown, 0 match, 1 mismatch
	InvocationStatus string    // the platform's status of its invocation; "" unknown
	EndTime          time.Time // end event, else the last event
	// InvocationEnd is when the platform ended the stream's invocation, when
	// that is known and the invocation failed (timeout, crash: the caller
	// waited until then, not until the stream's last event); else zero.
	InvocationEnd     time.Time
	XRayTrace         string  // the INVOKE event's trace header
	InvokedARN        string  // the INVOKE event's invokedFunctionArn
	ColdStart         bool    // the stream's invocation was the environment's first
	PlatformLatencyMs float64 // runtimeDone responseLatency; -1 unknown
	// Folded: the stream is its invocation's only one, and its document is
	// the invocation's outcome too (its ColdStart, the extension's CPU, the
	// platform's status when known by then): one document an invocation,
	// not two. What the platform says later (runtimeDone, report) comes
	// with the invocation's InvocationResult, Folded.
	Folded bool
	// CPU is the extension's CPU time for the stream's invocation, with
	// Folded; 0 unknown.
	CPU time.Duration
	// ErrorType is the platform's error type of the stream's failed
	// invocation, with Folded, when runtimeDone had come.
	ErrorType string
}

// InvocationResult is one finished invocation: its outcome. Every
// invocation the platform reports gets exactly one, whether or not the
// function sent a single event.
type InvocationResult struct {
	RequestID string
	Time      time.Time
	// End is when the invocation ended, as best known (the platform's time
	// of runtimeDone or report, else its start plus its duration); zero
	// unknown. Its record is stamped there (see emfsink).
	End       time.Time
	ColdStart bool
	// FirstRecord: the environment's first record, which carries its init
	// (the cold start's, or on Managed Instances, where no invocation waits
	// for the init, the first one reported).
	FirstRecord bool
	Init        InitReport
	InitKnown   bool
	Done        *RuntimeDone
	Report      *Report
	MissingDone bool
	CPU         time.Duration // the extension's CPU time for it; 0 unknown
	// Streams is how many streams of it streamlens saw.
	Streams int
	// Verdict is the invocation's own judgement when it has no stream: a
	// failure the platform reported (BeforeFirstByte: the caller got
	// nothing), else Complete. An invocation with streams is judged by them.
	Verdict Verdict
	// NonStreaming: it succeeded without starting a stream (counted apart:
	// no SLO counts it).
	NonStreaming bool
	// Folded: its outcome went out with the document of its only stream
	// (Result.Folded); this record brings only what the platform said
	// since. FoldedDone: its runtimeDone had come by then (its status was
	// written with the stream).
	Folded, FoldedDone bool
}

// SetCPU records the extension's CPU time for the invocation of requestID.
func (t *Table) SetCPU(requestID string, cpu time.Duration) {
	if inv := t.invocations[requestID]; inv != nil {
		inv.cpu = cpu
	}
}

// Invoke is what streamlens keeps of an INVOKE event.
type Invoke struct {
	RequestID  string
	Deadline   time.Time
	Tracing    string // the X-Ray trace header
	InvokedARN string
}

// BeginInvocation records an INVOKE that arrived at now.
func (t *Table) BeginInvocation(ev Invoke, now time.Time) {
	requestID := ev.RequestID
	t.invokes++
	inv := t.invocations[requestID]
	if inv == nil {
		inv = &invocation{requestID: requestID}
		t.invocations[requestID] = inv
		t.invOrder = append(t.invOrder, requestID)
	}
	t.current = requestID
	inv.started = now
	inv.deadline = ev.Deadline
	inv.tracing = ev.Tracing
	inv.arn = ev.InvokedARN
	inv.coldStart = t.invokes == 1
}

// Progress is what the lifecycle needs to know of an invocation to decide
// whether to let it go.
type Progress struct {
	RuntimeStatus string    // runtimeDone's status; "" until it arrived
	Seen          int       // its streams not yet flushed
	Open          int       // of which without their end
	LastArrival   time.Time // when the last event of an open one arrived
	FirstChunk    bool      // a payload chunk of one of its streams arrived
}

// Progress reports on the invocation of requestID.
func (t *Table) Progress(requestID string) Progress {
	var p Progress
	if inv := t.invocations[requestID]; inv != nil && inv.runtimeDone != nil {
		p.RuntimeStatus = inv.runtimeDone.Status
	}
	for _, s := range t.streams {
		if s.requestID != requestID {
			continue
		}
		p.Seen++
		if s.payloadChunks > 0 || s.end != nil {
			p.FirstChunk = true
		}
		if s.end == nil {
			p.Open++
			if s.lastArrival.After(p.LastArrival) {
				p.LastArrival = s.lastArrival
			}
		}
	}
	return p
}

// platformFailure is why the invocation of request failed, from what the
// platform said of it (none if it did not, or is not known to have).
func (t *Table) platformFailure(requestID string) Failure {
	if inv := t.invocations[requestID]; inv != nil && inv.runtimeDone != nil {
		return PlatformFailure(inv.runtimeDone.Status)
	}
	return Failure{}
}

// EndGrace is how long a stream may stay open after the platform said its
// invocation succeeded (or after its last event, without telemetry) before it
// is judged no-end: the end of an async sender may still be on its way.
const EndGrace = time.Second

// Finalize ends the invocation of requestID at now and returns the streams
// to flush. failure, if any, is why it did not end normally (the platform's
// status, a SHUTDOWN): its open streams are truncated at once. Otherwise an
// open stream is carried to a later boundary, because its last events may
// still be in flight (an async sender, a freeze); once it was carried one
// boundary and EndGrace passed since the last word on it, it is truncated as
// no-end.
func (t *Table) Finalize(requestID string, failure Failure, now time.Time) []Result {
	if inv := t.invocations[requestID]; inv != nil {
		inv.ended = true
	}
	return t.take(func(s *stream) (Failure, bool) {
		if s.requestID == requestID && failure.Failed() {
			return failure, true
		}
		if f := t.platformFailure(s.requestID); f.Failed() {
			// The platform's word came after the stream's own boundary.
			return f, true
		}
		if !s.carried {
			s.carried = true
			return Failure{}, false
		}
		if now.Sub(t.lastWord(s)) < EndGrace {
			return Failure{}, false
		}
		return Failure{Cause: NoEnd}, true
	}, nil)
}

// lastWord is the latest of a stream's last event and its invocation's
// runtimeDone: what an end arriving late is measured from.
func (t *Table) lastWord(s *stream) time.Time {
	last := s.lastArrival
	if inv := t.invocations[s.requestID]; inv != nil && inv.doneAt.After(last) {
		last = inv.doneAt
	}
	return last
}

// FinalizeEnded flushes what is final without a boundary (Lambda Managed
// Instances): streams whose invocation the platform reported on — ended
// ones, and open ones at once when it failed, or after EndGrace when it
// succeeded — and ended streams whose report is overdue (hold: their
// invocation may still turn out to have timed out, its code finishing after
// the deadline). An invocation whose report arrived is ended, so that its
// record can go out.
func (t *Table) FinalizeEnded(now time.Time, hold time.Duration) []Result {
	t.EndReported()
	out := t.take(func(s *stream) (Failure, bool) {
		if f := t.platformFailure(s.requestID); f.Failed() {
			return f, true
		}
		if inv := t.invocations[s.requestID]; inv != nil && inv.runtimeDone != nil && now.Sub(inv.doneAt) >= EndGrace {
			return Failure{Cause: NoEnd}, true
		}
		return Failure{}, false
	}, func(s *stream) bool {
		inv := t.invocations[s.requestID]
		return inv != nil && inv.runtimeDone != nil || now.Sub(s.lastArrival) >= hold
	})
	// A flushed stream stands for an invocation whose platform record is
	// still to come: known now, so that SHUTDOWN waits for its report.
	for _, r := range out {
		t.invocationFor(r.RequestID).ended = true
	}
	return out
}

// AwaitReports ends the invocation of every stream still in the table (Lambda
// Managed Instances, at SHUTDOWN): known only from their streams until their
// reports arrive, they then wait for those reports like any ended
// invocation (PendingReports), and get a record even if none comes.
func (t *Table) AwaitReports() {
	for _, s := range t.streams {
		t.invocationFor(s.requestID).ended = true
	}
}

// EndReported ends the invocations the platform reported on (runtimeDone or
// report), where no INVOKE boundary ends them (Lambda Managed Instances).
func (t *Table) EndReported() {
	for _, inv := range t.invocations {
		if inv.report != nil || inv.runtimeDone != nil {
			inv.ended = true
		}
	}
}

// FinalizeAll flushes every open stream (SHUTDOWN): nothing is carried. A
// stream whose invocation failed (a timeout, a crash: the shutdown of a reset)
// gets that failure rather than the shutdown's.
func (t *Table) FinalizeAll(shutdown Failure) []Result {
	return t.take(func(s *stream) (Failure, bool) {
		if f := t.platformFailure(s.requestID); f.Failed() {
			return f, true
		}
		return shutdown, true
	}, nil)
}

// take removes and returns the ended streams that ready accepts (all, when
// ready is nil), and those open ones for which decide says so (with why
// they are truncated), oldest first.
func (t *Table) take(decide func(*stream) (Failure, bool), ready func(*stream) bool) []Result {
	var out []Result
	for _, s := range t.streams {
		var f Failure
		if s.end == nil {
			var flush bool
			if f, flush = decide(s); !flush {
				continue
			}
			if !f.Failed() {
				f = Failure{Cause: NoEnd} // an open stream is never complete
			}
		} else if ready != nil && !ready(s) {
			continue
		}
		out = append(out, t.result(s, f))
		t.remove(s)
	}
	t.compactFIFO()
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// reportBoundaries is how many boundaries an ended invocation waits for its
// platform.report at least: the extension no longer waits for telemetry
// before next, so the report of N arrives during N+1 (after the thaw) or
// later.
const reportBoundaries = 3

// maxHeldRecords bounds the ended invocations waiting for their report; past
// it the oldest are written without it.
const maxHeldRecords = 256

// SetReportWait sets how long an ended invocation's record waits for its
// platform.report, at least, besides reportBoundaries boundaries: the
// Telemetry API buffers events (buffering.timeoutMs), so a function whose
// invocations are a few ms apart passes many boundaries before the batch
// with its reports arrives.
func (t *Table) SetReportWait(d time.Duration) { t.reportWait = d }

// ReadyInvocations returns the invocations whose record is complete: ended,
// and their platform.report arrived, or they waited reportBoundaries
// boundaries and the report wait (the report comes only after the extension
// itself finished the invocation, and in a buffered batch). all returns every
// ended one (SHUTDOWN).
func (t *Table) ReadyInvocations(now time.Time, all bool) []InvocationResult {
	var out []InvocationResult
	held := 0
	for _, id := range t.invOrder {
		if inv := t.invocations[id]; inv != nil && inv.ended && inv.report == nil {
			held++
		}
	}
	overflow := held - maxHeldRecords // the oldest this many go without their report
	keep := t.invOrder[:0]
	for _, id := range t.invOrder {
		inv := t.invocations[id]
		if inv == nil {
			continue
		}
		if inv.ended && inv.endedAt.IsZero() {
			inv.endedAt = now
		}
		waited := inv.boundaries >= reportBoundaries && now.Sub(inv.endedAt) >= t.reportWait
		if inv.ended && inv.report == nil && overflow > 0 {
			waited = true
			overflow--
		}
		if inv.ended && (all || inv.report != nil || waited) {
			out = append(out, t.record(inv))
			delete(t.invocations, id)
			continue
		}
		inv.boundaries++
		if !inv.ended && inv.started.IsZero() && (all || inv.boundaries > 2) {
			// Telemetry for a request no INVOKE named: keep it briefly in case the
			// INVOKE is still on its way, then let it go.
			delete(t.invocations, id)
			continue
		}
		keep = append(keep, id)
	}
	t.invOrder = keep
	return out
}

// record is the outcome of invocation inv, whose record goes out now.
func (t *Table) record(inv *invocation) InvocationResult {
	if t.telemetry && !t.managed && (inv.runtimeDone == nil || inv.runtimeDone.FromReport) {
		inv.missingDone = true
		t.counters.NoRuntimeDone++
	}
	r := InvocationResult{RequestID: inv.requestID, Time: inv.started, End: inv.endTime(), ColdStart: inv.coldStart,
		Done: inv.runtimeDone, Report: inv.report, MissingDone: inv.missingDone, CPU: inv.cpu, Streams: inv.streams,
		Folded: inv.folded, FoldedDone: inv.foldedDone}
	// Every invocation carries the init type of its sandbox (a dimension of
	// its metrics); only the first record its duration.
	r.Init, r.InitKnown = t.init, t.initKnown
	if !t.initWritten && (inv.coldStart || t.managed) {
		r.FirstRecord, t.initWritten = true, true
	}
	if inv.streams == 0 {
		status := ""
		if inv.runtimeDone != nil {
			status = inv.runtimeDone.Status
		}
		f := PlatformFailure(status)
		if !f.Failed() && inv.shutdown.Failed() {
			f = inv.shutdown
		}
		switch {
		case f.Failed():
			// It failed before any stream started: the caller got nothing.
			r.Verdict = judge(f.Cause, f.Detail, false)
		case status == "success":
			r.NonStreaming = true
		}
	}
	return r
}

// ShutDown records that the environment shuts down for reason f. A reset
// (timeout, failure) ends the invocation in progress: if the platform said
// nothing of it, the shutdown is its failure.
func (t *Table) ShutDown(f Failure) {
	if f.Detail != "timeout" && f.Detail != "failure" {
		return
	}
	if inv := t.invocations[t.current]; inv != nil && inv.runtimeDone == nil {
		inv.shutdown = f
	}
}

// PendingReports reports whether an ended invocation still waits for its
// platform.report.
func (t *Table) PendingReports() bool {
	for _, inv := range t.invocations {
		if inv.ended && inv.report == nil {
			return true
		}
	}
	return false
}

// TakeCounters returns the counters since the last call.
func (t *Table) TakeCounters() counters.Counters {
	c := t.counters
	t.counters = counters.Counters{}
	return c
}

func (t *Table) result(s *stream, open Failure) Result {
	r := Result{
		QuoteID: s.streamID, RequestID: s.requestID, BundleID: s.bundleID, ClientID: s.clientID, TraceParent: s.traceParent, CallerParent: s.callerParent,
		Chunks: s.chunks, Delivered: s.payloadChunks, Expected: s.expected, Bytes: s.payloadBytes,
		Status: "none", Integrity: -1, PlatformLatencyMs: -1,
	}
	if r.Expected > maxResponseBytes {
		r.Expected = -1 // more chunks than a response can hold: forged
		t.counters.Implausible++
	}
	r.Time = s.firstSeenAt
	if s.hasStart {
		r.Time = time.Unix(0, s.startNs)
	}
	if s.hasStart {
		first := s.firstUsefulNs
		if first == 0 {
			first = s.firstPayloadNs
		}
		if first != 0 {
			if plausible(s.startNs, first) {
				r.TTFBMs, r.HasTTFB = msBetween(s.startNs, first), true
			} else {
				t.counters.Implausible++ // a skewed or forged start time: no TTFB rather than an absurd one
			}
		}
	} else {
		t.counters.MissingStart++
	}
	r.LongestGapMs = float64(s.maxGapNs) / 1e6
	r.EndTime = r.Time
	if s.lastNs != 0 {
		r.EndTime = time.Unix(0, s.lastNs)
	}
	inv := t.invocations[s.requestID]
	if inv != nil {
		r.XRayTrace, r.InvokedARN, r.ColdStart = inv.tracing, inv.arn, inv.coldStart
		if rd := inv.runtimeDone; rd != nil {
			r.InvocationStatus = NormalStatus(rd.Status)
			if rd.HasLatency {
				r.PlatformLatencyMs = rd.ResponseLatencyMs
			}
		}
	}
	var received int64 = s.events
	if e := s.end; e != nil {
		r.Status = e.Status.String()
		r.Delivered, r.Bytes = e.Delivered, e.Bytes
		if e.Delivered > maxResponseBytes || e.Bytes > maxResponseBytes {
			// More than a response can hold (every chunk is a byte at
			// least): a forged end. What arrived stands instead.
			r.Delivered, r.Bytes = s.payloadChunks, s.payloadBytes
			t.counters.Implausible++
		}
		if e.Expected >= 0 && e.Expected <= maxResponseBytes {
			r.Expected = e.Expected
		} else if e.Expected > maxResponseBytes {
			t.counters.Implausible++
		}
		r.Dropped = e.Dropped
		if e.HasBlocked {
			r.BlockedMs, r.BlockedMaxMs, r.HasBlocked = float64(e.BlockedUs)/1000, float64(e.BlockedMaxUs)/1000, true
		}
		// Events lost in transit: the end's sequence number says how many were
		// sent (start is 0), received says how many arrived. A gap far beyond
		// what the stream reported delivering is a forged sequence number.
		if gap := int64(s.endSeq) + 1 - received; gap > 0 && gap <= max(e.Delivered, s.payloadChunks)+2 {
			r.Dropped += gap
		} else if gap > 0 {
			t.counters.Implausible++
		}
		if e.HasDeclared && e.HasSHA256 {
			r.Integrity = 0
			if e.Declared != e.SHA256 {
				r.Integrity = 1
			}
		}
	}
	if !s.counted {
		t.invocationFor(s.requestID).streams++
	}
	if inv := t.invocations[s.requestID]; inv != nil && t.foldable(inv, s) {
		inv.folded, inv.foldedDone = true, inv.runtimeDone != nil
		r.Folded, r.CPU = true, inv.cpu
		if rd := inv.runtimeDone; rd != nil && NormalStatus(rd.Status) != "success" {
			r.ErrorType = rd.ErrorType
		}
	}
	cause, detail := Complete, ""
	switch {
	case s.end == nil:
		cause, detail = open.Cause, open.Detail
	case s.end.Status != protocol.StatusComplete:
		cause, detail = EndStatus, s.end.Status.String()
	case r.Expected >= 0 && r.Delivered < r.Expected:
		cause = Short
	case r.InvocationStatus != "" && r.InvocationStatus != "success":
		// The function ended its stream complete, but the platform says
		// the invocation failed (a Managed Instances timeout whose code
		// finished after the deadline; an error after the end).
		cause, detail = Platform, r.InvocationStatus
	}
	r.Verdict = judge(cause, detail, r.HasTTFB || r.Delivered > 0)
	if r.Verdict.Truncated() && inv != nil {
		r.InvocationEnd = inv.failedAt(r.Verdict)
	}
	return r
}

// foldable reports whether stream s, being flushed, carries the outcome of
// its invocation inv: inv ended (no stream of it is still to come at a
// boundary), s is its only stream, and inv's record is not the one that
// carries the environment's init (InitType is a dimension of that record's
// metrics, not of a stream's). Its record then waits for the platform's
// figures as before, but its outcome is already written.
func (t *Table) foldable(inv *invocation, s *stream) bool {
	return inv.ended && !inv.folded && inv.streams == 1 && t.byReq[s.requestID] == 1 &&
		(t.initWritten || !(inv.coldStart || t.managed))
}

// endTime is when the invocation ended, as best known: the platform's time
// of runtimeDone (or of the report that stands for it), else its start plus
// its duration; zero when not known.
func (inv *invocation) endTime() time.Time {
	if rd := inv.runtimeDone; rd != nil {
		if !rd.Time.IsZero() {
			return rd.Time
		}
		if !inv.started.IsZero() && rd.DurationMs > 0 {
			return inv.started.Add(time.Duration(rd.DurationMs * float64(time.Millisecond)))
		}
	}
	if rp := inv.report; rp != nil && !rp.Time.IsZero() {
		return rp.Time
	}
	return time.Time{}
}

// failedAt is when the platform ended a failed invocation whose stream got
// verdict v: its end time, else the deadline when it timed out; zero when
// not known (the invocation did not fail, or nothing says when it ended).
func (inv *invocation) failedAt(v Verdict) time.Time {
	if rd := inv.runtimeDone; rd != nil && rd.Status != "success" {
		if end := inv.endTime(); !end.IsZero() {
			return end
		}
	}
	if (v.Cause == Shutdown || v.Cause == Platform) && v.Detail == "timeout" {
		return inv.deadline
	}
	return time.Time{}
}

func (t *Table) markFlushed(k key) {
	if _, ok := t.flushed[k]; ok {
		return
	}
	t.flushed[k] = struct{}{}
	t.flushedFIFO = append(t.flushedFIFO, k)
	if len(t.flushedFIFO) > maxFlushedMemory {
		delete(t.flushed, t.flushedFIFO[0])
		t.flushedFIFO = t.flushedFIFO[1:]
	}
}

func (t *Table) compactFIFO() {
	keep := t.fifo[:0]
	for _, e := range t.fifo {
		if s := t.streams[e.id]; s != nil && s.arrivalSeq == e.seq {
			keep = append(keep, e)
		}
	}
	t.fifo = keep
}

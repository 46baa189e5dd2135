// Package state is streamlens's stream state machine: it turns decoded events
// from the function and platform events from the Telemetry API into finished
// streams and invocations. It is pure: no I/O, no locks, no clock of its own
// (every method that needs the time is given it), so the lifecycle, the
// listeners and the sinks around it stay thin and it can be tested exactly.
package state

import (
	"math"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/protocol"
)

// Chunk is one chunk as kept until the flush: 32 bytes, times in float32
// milliseconds (µs precision up to hours), the instrument name interned.
type Chunk struct {
	Inst       string
	LatencyMs  float32 // -1: unknown (no start)
	IntervalMs float32 // -1: unknown
	Seq        uint32
	Bytes      uint32
}

// Ms widens a kept chunk time (LatencyMs, IntervalMs) for output, rounded to
// the microsecond so float32 noise (1.4114969968795776) reaches no sink.
func Ms(v float32) float64 { return math.Round(float64(v)*1000) / 1000 }

// stream is the state of one quote stream, keyed by request id and quote id
// (key): a quote id is the client's, and the same one under another
// invocation is another stream, never a late event of the first.
type stream struct {
	key                // requestID, streamID
	hasStart           bool
	startNs            int64
	expected           int64
	traceParent        string
	callerParent       bool // traceParent is the caller's span, not the function's
	bundleID, clientID string
	chunks             []Chunk
	payloadChunks      int64
	payloadBytes       int64
	chunkEventsOverCap int64
	firstUsefulNs      int64
	firstPayloadNs     int64
	lastNs             int64
	maxGapNs           int64 // the longest time between two of its events up to a chunk
	events             int64
	end                *protocol.End
	carried            bool
	endSeq             uint32
	arrivalSeq         uint64
	firstSeenAt        time.Time
	lastArrival        time.Time // when its last event was applied (extension clock)
	seqs               []uint64  // chunk sequence numbers seen, as a bitset up to maxSeqTracked
	counted            bool      // counted in its invocation's streams
}

// key is a stream's key in the table. Two strings, not one joined: the
// decoder hands out shared copies of both, and a joined key cost an
// allocation per event.
type key struct{ requestID, streamID string }

// maxPlausibleMs bounds any time between two events of one stream: Lambda's
// longest invocation is 15 minutes, so more is a skewed or forged clock.
const maxPlausibleMs = 900_000

// invocation is what the extension knows of one Lambda invocation.
type invocation struct {
	requestID   string
	tracing     string // the INVOKE event's X-Ray trace header
	arn         string // the INVOKE event's invokedFunctionArn
	started     time.Time
	deadline    time.Time
	coldStart   bool
	runtimeDone *RuntimeDone
	doneAt      time.Time // when runtimeDone arrived (extension clock)
	report      *Report
	boundaries  int // flush boundaries passed since it ended
	ended       bool
	missingDone bool          // runtimeDone never came within the wait
	cpu         time.Duration // the extension's CPU time for it
	endedAt     time.Time     // the first boundary that saw it ended
	streams     int           // streams of it seen
	shutdown    Failure       // the reset that ended it, when the platform said nothing of it
	folded      bool          // its outcome went out with its only stream's document
	foldedDone  bool          // and its runtimeDone had come by then
}

type fifoEntry struct {
	id  key
	seq uint64
}

// Table holds all stream and invocation state. It is not safe for concurrent
// use: the lifecycle guards it with one lock, under which the socket reader
// also reads (a read and its application are one step, so "socket empty"
// under the lock means "everything sent is applied").
type Table struct {
	streams     map[key]*stream
	flushed     map[key]struct{} // recently flushed quote ids, to count late events
	flushedFIFO []key
	invocations map[string]*invocation
	invOrder    []string
	fifo        []fifoEntry    // open streams, oldest first (may hold stale entries)
	byReq       map[string]int // open streams per request id
	current     string         // request id of the invocation in progress
	telemetry   bool           // subscribed: platform events are expected
	managed     bool           // Lambda Managed Instances: no INVOKE, no runtimeDone
	initWritten bool           // the record carrying the init went out
	init        InitReport
	initKnown   bool
	invokes     int64
	arrivals    uint64
	counters    counters.Counters // what the table itself counted since the last take
	maxOpen     int
	maxChunks   int
	// chunkBudget bounds the chunk records kept in all open streams
	// (SetMemoryLimit); chunkRecords is how many are kept now.
	chunkBudget  int
	chunkRecords int
	reportWait   time.Duration // see SetReportWait
}

// New returns an empty table that keeps at most maxOpen open streams per
// invocation (4× that in all) and maxChunks chunk records per stream.
func New(maxOpen, maxChunks int) *Table {
	return &Table{
		streams:     make(map[key]*stream),
		flushed:     make(map[key]struct{}),
		invocations: make(map[string]*invocation),
		byReq:       make(map[string]int),
		maxOpen:     maxOpen,
		maxChunks:   maxChunks,
		chunkBudget: math.MaxInt,
	}
}

// chunkRecordBytes is what one kept chunk record costs, with the slack of
// a growing slice: a Chunk is 32 bytes, and append may hold twice that.
const chunkRecordBytes = 64

// SetMemoryLimit bounds the per-chunk detail the table keeps to a quarter of
// limit bytes, the extension's memory ceiling (the rest is for the streams'
// own state, the sinks and the runtime). Past it, chunks are still counted
// exactly — delivered, bytes, TTFB, the verdict — but their latencies and
// intervals are not kept (ChunkDetailShed): detail is shed first, never a
// stream's verdict.
func (t *Table) SetMemoryLimit(limit int) {
	t.chunkBudget = max(limit/4/chunkRecordBytes, 1)
}

// SetTelemetry says whether platform events are expected (the subscription
// succeeded): without them an invocation record lacking runtimeDone is no
// loss worth counting.
func (t *Table) SetTelemetry(on bool) { t.telemetry = on }

// SetManaged says the environment is a Lambda Managed Instances one: no
// INVOKE events and no platform.runtimeDone (platform.report carries the
// status), many invocations at once.
func (t *Table) SetManaged(on bool) { t.managed = on }

// Telemetry reports whether platform events are expected.
func (t *Table) Telemetry() bool { return t.telemetry }

// Apply applies one event that arrived at now; decoding is the caller's (the
// ingest edge), and the event's strings must stay valid (protocol.Decoder
// shares repeated ones). It reports whether an invocation's Progress may
// have changed (a stream opened, delivered its first chunk or ended): a
// chunk in the middle of a stream changes nothing a waiting lifecycle needs
// to wake for.
func (t *Table) Apply(ev *protocol.Event, now time.Time) (progress bool) {
	t.counters.Events++
	k := key{ev.RequestID, ev.StreamID}
	s := t.streams[k]
	if s == nil {
		if _, done := t.flushed[k]; done {
			t.counters.LateEvents++
			return false
		}
		s = t.open(k, now)
		progress = true
	}
	if s.end != nil && !reordered(s, ev) {
		if ev.Kind == protocol.KindEnd {
			t.counters.DuplicateEnd++
		} else {
			t.counters.LateEvents++
		}
		return progress
	}
	if (ev.Kind == protocol.KindStart && s.hasStart) || (ev.Kind == protocol.KindChunk && s.seen(ev.Seq)) {
		t.counters.DuplicateEvents++
		return progress
	}
	progress = progress || ev.Kind == protocol.KindEnd || (ev.Kind == protocol.KindChunk && s.payloadChunks == 0)
	s.events++
	s.lastArrival = now
	switch ev.Kind {
	case protocol.KindStart:
		s.hasStart = true
		s.startNs = ev.TimeNs
		s.expected = ev.Start.Expected
		s.traceParent = ev.Start.TraceParent
		s.callerParent = ev.Start.CallerParent
		s.bundleID = ev.Start.BundleID
		s.clientID = ev.Start.ClientID
		if s.lastNs == 0 || !plausible(s.startNs, s.lastNs) {
			s.lastNs = ev.TimeNs
		}
		if s.end != nil && s.end.Expected < 0 {
			s.end.Expected = s.expected
		}
	case protocol.KindChunk:
		c := ev.Chunk
		if s.lastNs != 0 && plausible(s.lastNs, ev.TimeNs) {
			// The caller saw nothing for this long: what an idle cut (API
			// Gateway's 30 s) measures. Out-of-order arrivals give no gap.
			s.maxGapNs = max(s.maxGapNs, ev.TimeNs-s.lastNs)
		}
		if c.Flags&protocol.FlagTrailer == 0 {
			s.payloadChunks++
			s.payloadBytes += c.Bytes
			if s.firstPayloadNs == 0 && c.Flags&protocol.FlagError == 0 {
				s.firstPayloadNs = ev.TimeNs
			}
			if s.firstUsefulNs == 0 && c.Flags&protocol.FlagFirstUseful != 0 {
				s.firstUsefulNs = ev.TimeNs
			}
			if len(s.chunks) < t.maxChunks && t.chunkRecords >= t.chunkBudget {
				t.counters.ChunkDetailShed++
				s.chunkEventsOverCap++
			} else if len(s.chunks) < t.maxChunks {
				t.chunkRecords++
				// The name is the decoder's shared copy (protocol.Decoder):
				// a bundle's names repeat in every stream.
				rec := Chunk{Inst: c.Instrument, LatencyMs: -1, IntervalMs: -1, Seq: ev.Seq, Bytes: uint32(min(c.Bytes, math.MaxUint32))}
				if s.hasStart {
					rec.LatencyMs = t.plausibleMs(s.startNs, ev.TimeNs)
				}
				if s.lastNs != 0 {
					rec.IntervalMs = t.plausibleMs(s.lastNs, ev.TimeNs)
				}
				if s.chunks == nil && s.expected > 0 {
					// Sized once from the start's expected count: growing
					// by appends makes about twice the stream's chunk
					// records in garbage, which the GC pays for after
					// some invocation's runtime finished. At most
					// presizeChunks: a start is the function's word, and a
					// flood of starts promising thousands must not reserve
					// what they never send.
					s.chunks = make([]Chunk, 0, min(s.expected, int64(t.maxChunks), presizeChunks))
				}
				s.chunks = append(s.chunks, rec)
			} else {
				s.chunkEventsOverCap++
			}
		}
		s.lastNs = ev.TimeNs
	case protocol.KindEnd:
		e := ev.End
		s.end = &e
		s.endSeq = ev.Seq
		s.lastNs = ev.TimeNs
	}
	return progress
}

// reordered reports whether ev, arriving after its stream's end, belongs
// before it: datagrams from an async sender may arrive out of order, so a
// start not seen yet, or a chunk numbered below the end's, still counts.
func reordered(s *stream, ev *protocol.Event) bool {
	switch ev.Kind {
	case protocol.KindStart:
		return !s.hasStart
	case protocol.KindChunk:
		return ev.Seq < s.endSeq
	}
	return false
}

// presizeChunks bounds the chunk records reserved for a stream from its
// start's expected count (4 KiB): a bundle of up to 128 instruments, in one
// allocation.
const presizeChunks = 128

// maxSeqTracked bounds the per-stream bitset of chunk sequence numbers;
// beyond it duplicates are not recognised (counts stay bounded either way).
const maxSeqTracked = 1 << 14

// seen records chunk sequence number seq and reports whether it was seen
// before.
func (s *stream) seen(seq uint32) bool {
	if seq >= maxSeqTracked {
		return false
	}
	w, bit := int(seq/64), uint64(1)<<(seq%64)
	if w >= len(s.seqs) {
		s.seqs = append(s.seqs, make([]uint64, w+1-len(s.seqs))...)
	}
	if s.seqs[w]&bit != 0 {
		return true
	}
	s.seqs[w] |= bit
	return false
}

func plausible(fromNs, toNs int64) bool {
	d := toNs - fromNs
	return d >= 0 && d <= maxPlausibleMs*1e6
}

// plausibleMs is the time between two events in ms, or -1 (unknown, counted)
// when no real stream could produce it.
func (t *Table) plausibleMs(fromNs, toNs int64) float32 {
	if !plausible(fromNs, toNs) && toNs-fromNs > 0 {
		t.counters.Implausible++
		return -1
	}
	return float32(msBetween(fromNs, toNs))
}

func msBetween(fromNs, toNs int64) float64 {
	d := toNs - fromNs
	if d < 0 {
		return 0 // clocks within one process do not run backwards; a forged event might
	}
	return float64(d) / 1e6
}

// open creates a stream. Memory stays bounded under a flood of starts without
// ends: at most maxOpen streams per request id (the documented per-invocation
// cap; its oldest stream is evicted first) and 4×maxOpen in all, where the
// oldest stream of another request than the current invocation goes first, so
// a flood under made-up request ids cannot push out a real stream.
func (t *Table) open(k key, now time.Time) *stream {
	if t.byReq[k.requestID] >= t.maxOpen {
		t.evictOldest(func(s *stream) bool { return s.requestID == k.requestID })
	}
	if len(t.streams) >= 4*t.maxOpen {
		// First a stream of another request that never delivered a chunk
		// (a flood's made-up starts), then any of another request: a real
		// stream that is delivering survives even when its events were
		// read before its own INVOKE made it the current one (a starved
		// extension reads the socket and the Extensions API in either order).
		if !t.evictOldest(func(s *stream) bool { return s.requestID != t.current && s.payloadChunks == 0 && s.end == nil }) &&
			!t.evictOldest(func(s *stream) bool { return s.requestID != t.current }) {
			t.evictOldest(func(*stream) bool { return true })
		}
	}
	t.arrivals++
	s := &stream{key: k, expected: -1, arrivalSeq: t.arrivals, firstSeenAt: now, lastArrival: now}
	t.streams[k] = s
	if inv := t.invocations[k.requestID]; inv != nil {
		inv.streams++
		s.counted = true
	}
	t.byReq[k.requestID]++
	t.fifo = append(t.fifo, fifoEntry{k, t.arrivals})
	return s
}

// evictOldest drops the oldest open stream that pred accepts. Its data is
// dropped, not flushed: the caps are only reached under a flood, and keeping
// evicted streams around would defeat them.
func (t *Table) evictOldest(pred func(*stream) bool) bool {
	for i := 0; i < len(t.fifo); i++ {
		e := t.fifo[i]
		s := t.streams[e.id]
		if s == nil || s.arrivalSeq != e.seq {
			t.fifo = append(t.fifo[:i], t.fifo[i+1:]...) // stale entry
			i--
			continue
		}
		if pred(s) {
			t.fifo = append(t.fifo[:i], t.fifo[i+1:]...)
			t.remove(s)
			t.counters.Evicted++
			return true
		}
	}
	return false
}

// remove forgets a stream (flushed or evicted); later events for it count as
// late.
func (t *Table) remove(s *stream) {
	t.chunkRecords -= len(s.chunks)
	delete(t.streams, s.key)
	if t.byReq[s.requestID]--; t.byReq[s.requestID] <= 0 {
		delete(t.byReq, s.requestID)
	}
	t.markFlushed(s.key)
}

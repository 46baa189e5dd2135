package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"math/rand/v2"
	"sync"
	"time"
	"unsafe"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// StartOptions describe a stream at its start.
type StartOptions struct {
	// RequestID is the Lambda request id; empty means take it from ctx
	// (lambdacontext).
	RequestID string
	// Expected is the number of payload chunks the stream will carry, or 0 if
	// unknown.
	Expected int
	// TraceParent is the W3C traceparent of the function's span. Empty means:
	// take it from the span context in ctx (OpenTelemetry), if there is one;
	// a remote one there (the caller's, extracted from the request, with no
	// span of the function's own) is sent as the caller's.
	TraceParent string
	// BundleID and ClientID become searchable properties, never dimensions.
	BundleID, ClientID string
	// StartTime is when the handler started; zero means now. TTFB is measured
	// from it, so pass the handler's entry time if Start is called later.
	StartTime time.Time
	// SkipPayloadHash leaves out the SHA-256 of the payload (the end event then
	// has no sha256 and IntegrityMismatch is not reported). Hashing costs about
	// as much per chunk as encoding the event; skip it only if integrity is
	// checked elsewhere.
	SkipPayloadHash bool
	// ExplicitFirstUseful: the function marks the first useful chunk itself with
	// ChunkOptions.FirstUseful. Otherwise the first payload chunk that is not an
	// error envelope is the first useful one.
	ExplicitFirstUseful bool
}

// ChunkOptions describe one chunk.
type ChunkOptions struct {
	Instrument    string
	FirstUseful   bool // this chunk ends business TTFB
	ErrorEnvelope bool // an error sent in place of a quote
	// Trailer marks a control chunk such as BUNDLE_COMPLETE: it is written to the
	// stream but is not a payload chunk, so it is neither counted as delivered nor
	// part of the payload hash.
	Trailer bool
}

// EndOptions describe how the stream ended.
type EndOptions struct {
	// Status: StatusComplete, StatusError or StatusAborted. StatusUnknown
	// (zero) means complete, unless a write to the response failed (aborted).
	Status Status
	// Declared is the SHA-256 the function announced for its payload (e.g. in
	// BUNDLE_COMPLETE); the extension compares it with the hash of the bytes
	// that were actually written.
	Declared *[32]byte
}

// Summary is what End reports and sends.
type Summary struct {
	QuoteID   string
	Delivered int64
	Bytes     int64
	SHA256    [32]byte
	Status    Status
	Dropped   int64 // events of this stream the client could not send
}

// Stream wraps a response writer. It is used by one goroutine at a time, like
// the writer it wraps.
type Stream struct {
	// mu guards the events waiting in buf, which the client's coalescing
	// timer may send from its own goroutine.
	mu            sync.Mutex
	c             *Client
	w             io.Writer
	h             wire.Header
	expected      int64
	explicitFirst bool
	firstSent     bool
	delivered     int64
	bytes         int64
	dropped       int64
	blockedNs     int64 // time inside w.Write, all chunks: backpressure from a slow caller
	blockedMaxNs  int64 // the longest single write
	writeFailed   bool
	ended         bool
	final         Summary   // what End reported, for a second call
	hashed        bool      // the payload is hashed (SkipPayloadHash not set)
	sum           hash.Hash // from hashPool; back there at End
	chunkPrefix   []byte
	wall0         int64     // wall clock at Start, Unix ns
	mono0         time.Time // the same instant, for monotonic offsets
	n             int       // bytes of buf holding chunk events not sent yet
	pending       int64     // how many events those are
	// ring is the client's ring when the stream writes its events there
	// (decided at Start, for the whole stream), nil when they go by
	// datagram; ringEvents and ringSkipped are its share of the client's
	// counts, added at End.
	ring        *ring
	ringEvents  int64
	ringSkipped int64
	// buf holds the events waiting: up to coalesceBytes, and the event that
	// goes past it. An event longer than the rest of buf (an instrument name
	// of kilobytes) still goes out, from a buffer of its own. It comes from
	// bufPool at Start and goes back at End: a Stream allocated with a
	// datagram's worth of buffer inside would make Start slower.
	buf *[bufBytes]byte
	// The stream id and the chunk prefix live in the Stream itself: Start
	// allocates nothing but the Stream (it is on the path to the first byte).
	idBuf     [36]byte
	prefixBuf [160]byte
}

// hashPool holds SHA-256 states between streams: one per stream would be an
// allocation on the path to the first byte.
var hashPool = sync.Pool{New: func() any { return sha256.New() }}

// bufPool holds the buffers of waiting events between streams.
var bufPool = sync.Pool{New: func() any { return new([bufBytes]byte) }}

// Start begins recording a stream written to w. The quote id is generated
// here (UUIDv7): it is never taken from the request. A nil Client gives a
// Stream that only writes through.
//
// The start event is not sent here but with the first chunk, in the same
// datagram, once the chunk's bytes are out (or within coalesceWait if no
// chunk comes, so the extension still learns of a stream that is slow to
// its first byte): Start costs no system call and one allocation, the
// Stream, on the path to the first byte.
func (c *Client) Start(ctx context.Context, w io.Writer, o StartOptions) *Stream {
	s := &Stream{c: c, w: w, expected: -1, explicitFirst: o.ExplicitFirstUseful, hashed: !o.SkipPayloadHash}
	if s.hashed {
		s.sum = hashPool.Get().(hash.Hash)
		s.sum.Reset()
	}
	if o.Expected > 0 {
		s.expected = int64(o.Expected)
	}
	now := time.Now() // one clock read: the id's time, the start and the monotonic base
	encodeUUID(&s.idBuf, newV7(now))
	// The string shares the Stream's array, which never changes after this
	// and lives as long as the string does (the GC keeps the Stream).
	s.h.StreamID = unsafe.String(&s.idBuf[0], len(s.idBuf))
	s.h.RequestID = o.RequestID
	if s.h.RequestID == "" {
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			s.h.RequestID = lc.AwsRequestID
		}
	}
	if s.h.RequestID == "" {
		s.h.RequestID = "unknown"
	}
	start := o.StartTime
	if start.IsZero() {
		start = now
	}
	s.h.TimeNs = start.UnixNano()
	s.mono0, s.wall0 = now, now.UnixNano()
	s.chunkPrefix = wire.AppendChunkPrefix(s.prefixBuf[:0], s.h.StreamID, s.h.RequestID)
	tp, caller := o.TraceParent, false
	if tp == "" {
		tp, caller = traceParent(ctx)
	}
	st := wire.Start{Expected: s.expected, TraceParent: tp, CallerParent: caller, BundleID: o.BundleID, ClientID: o.ClientID}
	if r := c.usableRing(); r != nil {
		// Committed now, in memory: a crash before the first chunk still
		// leaves the stream's start for the extension to read.
		s.ring = r
		idx, used, ok := r.reserve()
		p := s.slot(idx, ok)
		s.ringDone(idx, used, ok, p, wire.AppendStart(p, s.h, st), false, 0)
		return s
	}
	// Events wait in buf to share a datagram; a ring stream takes one
	// only if it has to send by datagram (slot).
	s.buf = bufPool.Get().(*[bufBytes]byte)
	b := wire.AppendStart(s.buf[:0], s.h, st)
	s.n, s.pending = len(b), 1
	c.wait(s)
	return s
}

// slot is where the next event of a ring stream is encoded: the reserved
// slot's line area, or, when the ring is full (ok false), the stream's own
// buffer, to go by datagram.
func (s *Stream) slot(idx uint64, ok bool) []byte {
	if ok {
		return s.ring.payload(idx)
	}
	if s.buf == nil { // after End
		s.buf = bufPool.Get().(*[bufBytes]byte)
	}
	return s.buf[:0]
}

// ringDone publishes b, the event just encoded into p (slot's result). In
// the slot and fitting, it is committed, and the bell rung when asked (the
// first chunk, the end) or when the ring is getting full. Otherwise it goes
// by datagram at once, after a bell: the ring was full (the extension must
// read it, and reads it before this datagram), or the event was longer than
// a slot, whose reserved place is then committed empty.
func (s *Stream) ringDone(idx, used uint64, ok bool, p, b []byte, bell bool, yields int) {
	r := s.ring
	if ok && len(b) > 0 && &b[0] == &p[:1][0] {
		r.commit(idx, len(b))
		s.ringEvents++
		if bell || r.halfFull(used) {
			s.c.bell(r, yields)
		}
		return
	}
	if ok {
		r.commit(idx, 0)
	}
	s.ringSkipped++
	s.c.bell(r, yields)
	if !s.c.send(b, yields) {
		s.dropped++
	}
}

// newV7 makes a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74
// random bits from the runtime's generator. google/uuid's NewV7 allocates
// on every call, and the 16 bytes need no module of their own; quote ids
// need to be unique and time-ordered, not secret.
func newV7(t time.Time) [16]byte {
	var id [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint64(id[:8], ms<<16|rand.Uint64()&0x0fff|0x7000)
	binary.BigEndian.PutUint64(id[8:], rand.Uint64()&^(3<<62)|2<<62)
	return id
}

// encodeUUID writes id in its canonical form (8-4-4-4-12 hex digits).
func encodeUUID(dst *[36]byte, id [16]byte) {
	const digits = "0123456789abcdef"
	j := 0
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = digits[b>>4], digits[b&0xf]
		j += 2
	}
}

// QuoteID is the stream id sent in every event.
func (s *Stream) QuoteID() string { return s.h.StreamID }

// Write writes a payload chunk without an instrument; Stream is an io.Writer.
func (s *Stream) Write(p []byte) (int, error) {
	return s.WriteChunk(p, ChunkOptions{})
}

// WriteChunk writes p to the response and records it. The chunk event is sent
// after the write returns, so its time is when the bytes left the handler.
func (s *Stream) WriteChunk(p []byte, o ChunkOptions) (int, error) {
	before := s.now()
	n, err := s.w.Write(p)
	after := s.now()
	// The time inside the write is backpressure: a writer blocks while a
	// slow caller lets the response's buffers fill. Measured here, it no
	// longer hides in the next chunk's interval as a slow instrument.
	if d := after - before; d > 0 {
		s.blockedNs += d
		s.blockedMaxNs = max(s.blockedMaxNs, d)
	}
	if err != nil {
		s.writeFailed = true
		return n, err
	}
	var flags wire.Flags
	switch {
	case o.Trailer:
		flags = wire.FlagTrailer
	default:
		s.delivered++
		s.bytes += int64(n)
		if s.sum != nil { // nil after End
			s.sum.Write(p[:n])
		}
		if o.ErrorEnvelope {
			flags |= wire.FlagError
		}
		if !s.firstSent && (o.FirstUseful || (!s.explicitFirst && !o.ErrorEnvelope)) {
			flags |= wire.FlagFirstUseful
			s.firstSent = true
		}
	}
	s.h.Seq++
	s.h.TimeNs = after
	if s.ring != nil {
		// Committed before the write returns: what a crash leaves is what
		// the caller was sent. The bell wakes the extension for the first
		// chunk (business TTFB); the rest waits in the ring for the end.
		idx, used, ok := s.ring.reserve()
		p := s.slot(idx, ok)
		b := wire.AppendChunkPrefixed(p, s.chunkPrefix, s.h.Seq, s.h.TimeNs,
			wire.Chunk{Instrument: o.Instrument, Bytes: int64(n), Flags: flags})
		first := flags&wire.FlagTrailer == 0 && (flags&wire.FlagFirstUseful != 0 || s.delivered == 1)
		s.ringDone(idx, used, ok, p, b, first, 0)
		return n, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf == nil { // written after End: recorded all the same (a late event)
		s.buf = bufPool.Get().(*[bufBytes]byte)
	}
	b := wire.AppendChunkPrefixed(s.buf[:s.n], s.chunkPrefix, s.h.Seq, s.h.TimeNs,
		wire.Chunk{Instrument: o.Instrument, Bytes: int64(n), Flags: flags})
	s.pending++
	// Chunk events share datagrams (each keeps its own time): the first
	// payload chunk goes at once (business TTFB, and what tells the extension
	// the first byte is out), the rest when coalesce events or coalesceBytes
	// are waiting, or coalesceWait after the first of them: a function that
	// hangs after a chunk has it counted. A crash can lose at most the events
	// waiting, never the verdict: a stream without its end is truncated.
	if flags&wire.FlagFirstUseful != 0 || s.delivered == 1 || s.pending >= int64(s.c.coalesceN()) ||
		len(b) >= coalesceBytes || &b[0] != &s.buf[0] {
		s.flush(b, 0)
		return n, nil
	}
	if s.n == 0 {
		s.c.wait(s)
	}
	s.n = len(b)
	return n, nil
}

// Coalesced chunk events are sent when coalesceBytes wait, whatever their
// number, and at most coalesceWait after the first of them. Fewer, larger
// datagrams cost the function fewer sends and the extension fewer wake-ups:
// each wake-up (scheduler, epoll, a context switch each way) costs the
// extension more than decoding a dozen events. coalesceBytes leaves room
// under wire.MaxDatagram for the event that goes past it, whatever its
// size (maxEventBytes).
const (
	coalesceBytes = wire.MaxDatagram - maxEventBytes
	coalesceWait  = 2 * time.Millisecond
	// bufBytes is coalesceBytes and an ordinary event past it; a longer one
	// makes append move the events to a buffer of their own, sent at once.
	bufBytes = coalesceBytes + 512
	// maxEventBytes bounds a chunk event: its two ids and its instrument
	// escaped at 3 bytes a byte, keys, numbers and flags.
	maxEventBytes = 3*(2*wire.MaxIDLen+wire.MaxValueLen) + 128
)

// flushWaiting sends the events waiting, if any (the timer's goroutine).
func (s *Stream) flushWaiting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n > 0 {
		s.flush(s.buf[:s.n], 0)
	}
}

// flush sends b, the events waiting plus the newest one; s.mu is held.
func (s *Stream) flush(b []byte, yields int) {
	if !s.c.send(b, yields) {
		s.dropped += s.pending
	}
	s.n, s.pending = 0, 0
}

// End sends the end event and returns what it reported. Calling it again does
// nothing but return the same summary.
func (s *Stream) End(o EndOptions) Summary {
	if s.ended {
		return s.final
	}
	s.ended = true
	// Locked from here: the client's timer may be sending this stream's
	// waiting events, and counting their loss, right now.
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{QuoteID: s.h.StreamID, Delivered: s.delivered, Bytes: s.bytes, Status: o.Status, Dropped: s.dropped}
	if s.sum != nil {
		// Summed into the Stream's own array: a local one would escape
		// through the interface call and be allocated.
		s.sum.Sum(s.final.SHA256[:0])
		sum.SHA256 = s.final.SHA256
		hashPool.Put(s.sum)
		s.sum = nil
	}
	if sum.Status == wire.StatusUnknown {
		sum.Status = wire.StatusComplete
		if s.writeFailed {
			sum.Status = wire.StatusAborted
		}
	}
	e := wire.End{Delivered: s.delivered, Expected: s.expected, Bytes: s.bytes, SHA256: sum.SHA256, HasSHA256: s.hashed,
		Status: sum.Status, Dropped: s.dropped, BlockedUs: s.blockedNs / 1000, BlockedMaxUs: s.blockedMaxNs / 1000, HasBlocked: true}
	if o.Declared != nil {
		e.Declared, e.HasDeclared = *o.Declared, true
	}
	s.h.Seq++
	s.h.TimeNs = s.now()
	if s.ring != nil {
		idx, used, ok := s.ring.reserve()
		p := s.slot(idx, ok)
		s.ringDone(idx, used, ok, p, wire.AppendEnd(p, s.h, e), true, endYields)
		s.c.ringEvents.Add(s.ringEvents)
		s.c.ringSkipped.Add(s.ringSkipped)
		s.ringEvents, s.ringSkipped = 0, 0
		if s.buf != nil {
			bufPool.Put(s.buf)
			s.buf = nil
		}
		s.final = sum
		return sum
	}
	// The end goes at once, after the events still waiting (the start, if
	// no chunk came), in the same datagram.
	s.pending++
	s.flush(wire.AppendEnd(s.buf[:s.n], s.h, e), endYields)
	// Nothing waits now (flush emptied buf), and the client's timer sends
	// only what waits; a chunk written after End takes a buffer again.
	bufPool.Put(s.buf)
	s.buf = nil
	s.final = sum
	return sum
}

// now is the wall clock in Unix ns, advanced by the monotonic clock since
// Start: a wall-clock step (NTP) in the middle of a stream cannot make a chunk
// appear before its start, and it costs one clock read instead of two.
func (s *Stream) now() int64 {
	return s.wall0 + int64(time.Since(s.mono0))
}

// endYields bounds how often End yields to the scheduler when the socket is
// full: a few microseconds at most, against losing the stream's verdict.
const endYields = 3

// TraceParent formats the span context in ctx as a W3C traceparent, or returns
// "" when ctx carries none. The extension parents the stream's span on it, so
// the span joins the function's own trace.
func TraceParent(ctx context.Context) string {
	tp, _ := traceParent(ctx)
	return tp
}

// traceParent is TraceParent, and whether the span context is the caller's
// (remote: taken from the request, with no span of the function's own
// started from it). The extension then makes the stream's span the
// invocation's server span under the caller's, as the FaaS conventions
// want, rather than a span inside a function span nobody exports.
func traceParent(ctx context.Context) (tp string, caller bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", false
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String(), sc.IsRemote()
}

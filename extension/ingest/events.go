package ingest

import (
	"errors"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

// Events decodes datagrams into events at the edge, so that the state
// machine only applies them: its Datagram method is what Listen hands each
// datagram to. It counts what it cannot decode. Like the socket's apply, it
// runs under the caller's lock, which also guards its counts (TakeBad).
type Events struct {
	dec   protocol.Decoder // shares the strings of repeated ids and names
	apply func(ev *protocol.Event, now time.Time)
	rings *Rings // nil: no ring directory (bells are ignored)
	// now is the time of the read being decoded; the three funcs are made
	// once, so that decoding a datagram or a ring's slot makes no closure.
	now     time.Time
	lineFn  func(b []byte)
	onEvent func(ev *protocol.Event)
	onBad   func(err error)
	// malformed and oversized count rejected lines and datagrams since the
	// last TakeBad; an oversized datagram is also malformed.
	malformed, oversized int64
}

// NewEvents returns a decoder that hands each event to apply, with the time
// its datagram was read.
func NewEvents(apply func(ev *protocol.Event, now time.Time)) *Events {
	e := &Events{apply: apply}
	e.onEvent = func(ev *protocol.Event) { e.apply(ev, e.now) }
	e.onBad = func(err error) {
		e.malformed++
		if errors.Is(err, protocol.ErrOversized) {
			e.oversized++
		}
	}
	e.lineFn = func(b []byte) { e.dec.Decode(b, e.onEvent, e.onBad) }
	return e
}

// UseRings reads rings: a bell datagram reads its ring (attached at its
// first bell), DrainRings reads them all.
func (e *Events) UseRings(rs *Rings) { e.rings = rs }

// DrainRings applies every ring's committed events (an invocation's
// boundary: the function may have died without a bell). final: nothing
// more will be written (SHUTDOWN), so a slot reserved and never committed
// is torn. scan: look in the ring directory for rings that never rang (an
// invocation failed: its process may have died before its bell went out).
// The caller holds the lock.
func (e *Events) DrainRings(final, scan bool) {
	if e.rings == nil {
		return
	}
	e.now = time.Now()
	e.rings.Drain(final, scan, e.lineFn)
}

// Datagram decodes one datagram; size is its real length, which exceeds
// len(b) when it was truncated on read (then it is dropped whole: a
// truncated read could end mid-event). Every bad line is counted and
// skipped; the others are applied.
func (e *Events) Datagram(b []byte, size int) {
	if size > protocol.MaxDatagram {
		e.oversized++
		e.malformed++
		return
	}
	e.now = time.Now()
	if name, ok := protocol.ParseBell(b); ok {
		// A ring's bell: its events are read from the ring, in its order,
		// after every datagram read before (the socket's order).
		if e.rings != nil {
			e.rings.Bell(name, e.lineFn)
		}
		return
	}
	e.dec.Decode(b, e.onEvent, e.onBad)
}

// TakeBad returns the malformed and oversized counts since the last call.
// The caller holds the lock Datagram runs under.
func (e *Events) TakeBad() (malformed, oversized int64) {
	malformed, oversized = e.malformed, e.oversized
	e.malformed, e.oversized = 0, 0
	return malformed, oversized
}

// TakeRingCounts returns the rings' counts since the last call (Rings'
// TakeCounts); zeros without rings. The caller holds the lock.
func (e *Events) TakeRingCounts() (torn, lost, refused int64) {
	if e.rings == nil {
		return 0, 0, 0
	}
	return e.rings.TakeCounts()
}

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
	// malformed and oversized count rejected lines and datagrams since the
	// last TakeBad; an oversized datagram is also malformed.
	malformed, oversized int64
}

// NewEvents returns a decoder that hands each event to apply, with the time
// its datagram was read.
func NewEvents(apply func(ev *protocol.Event, now time.Time)) *Events {
	return &Events{apply: apply}
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
	now := time.Now()
	e.dec.Decode(b, func(ev *protocol.Event) { e.apply(ev, now) }, func(err error) {
		e.malformed++
		if errors.Is(err, protocol.ErrOversized) {
			e.oversized++
		}
	})
}

// TakeBad returns the malformed and oversized counts since the last call.
// The caller holds the lock Datagram runs under.
func (e *Events) TakeBad() (malformed, oversized int64) {
	malformed, oversized = e.malformed, e.oversized
	e.malformed, e.oversized = 0, 0
	return malformed, oversized
}

package ingest

import (
	"testing"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

// The edge decodes and counts what it cannot: a bad line is counted and
// skipped, the good lines of the same datagram are applied, and a datagram
// longer than the protocol allows (truncated on read) is dropped whole.
func TestEventsCountWhatTheyCannotDecode(t *testing.T) {
	var got []protocol.Event
	e := NewEvents(func(ev *protocol.Event, now time.Time) { got = append(got, *ev) })
	h := protocol.Header{StreamID: "q1", RequestID: "r1", TimeNs: 1732300000000000000}
	good := protocol.AppendStart(nil, h, protocol.Start{Expected: 1})
	d := append([]byte("garbage\nsl1 chunk q1 r1 1 5 bytes=1\n"), good...)
	e.Datagram(d, len(d))
	e.Datagram(make([]byte, 100), protocol.MaxDatagram+1)
	malformed, oversized := e.TakeBad()
	if malformed != 3 || oversized != 1 || len(got) != 1 || got[0].Kind != protocol.KindStart {
		t.Errorf("malformed %d oversized %d, applied %+v", malformed, oversized, got)
	}
	if m, o := e.TakeBad(); m != 0 || o != 0 {
		t.Errorf("counts not reset: %d %d", m, o)
	}
}

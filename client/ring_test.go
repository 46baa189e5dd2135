//go:build linux && !streamlens_portable

package client

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// ringClient is a client with a ring in a fresh private directory, its
// bells (and any datagram) going to pc.
func ringClient(t testing.TB) (*Client, net.PacketConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := filepath.Join(t.TempDir(), wire.RingDirName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.UseRing(dir); err != nil {
		t.Fatal(err)
	}
	return c, pc
}

// With a ring, a chunk is memory stores only: in 1,000 chunks the client
// sends nothing but its bells (the announcement, the first chunk's), arms
// no timer and allocates nothing; every event is committed in the ring.
func TestRingHotPathIsMemoryOnly(t *testing.T) {
	c, _ := ringClient(t)
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) // the first: rings
	sent := c.Stats().Sent
	allocs := testing.AllocsPerRun(1000, func() { s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) })
	c.wmu.Lock()
	armed := c.armed
	c.wmu.Unlock()
	if st := c.Stats(); st.Sent != sent || allocs != 0 || armed {
		t.Errorf("sent %d → %d datagrams, %v allocations per chunk, timer armed %v: want none", sent, st.Sent, allocs, armed)
	}
	if sent != 2 {
		t.Errorf("%d bells before the hot path, want 2 (announcement, first chunk)", sent)
	}
	s.End(EndOptions{})
	if h, st := c.ring.head.Load(), c.Stats(); h != 1004 || st.RingEvents != 1004 || st.RingSkipped != 0 {
		t.Errorf("head %d, stats %+v: want start, 1,002 chunks (AllocsPerRun warms up once) and end committed", h, st)
	}
	for i := uint64(0); i < 1004; i++ {
		off := wire.RingHeaderSize + i*wire.RingSlotSize
		if word(c.ring.mem, int(off)).Load() != i+1 {
			t.Fatalf("slot %d not committed", i)
		}
	}
}

// A ring the extension does not read fills; from then on each event goes
// by datagram (after a bell), none is lost, and the ring asked to be read
// at half and three quarters.
func TestRingFullFallsBackToDatagrams(t *testing.T) {
	c, pc := ringClient(t)
	got := make(chan string, 4096)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	for range wire.RingSlots + 9 {
		s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	}
	s.End(EndOptions{})
	st := c.Stats()
	if st.RingEvents != wire.RingSlots || st.RingSkipped != 11 || st.Dropped != 0 {
		t.Errorf("stats %+v: want %d in the ring, 11 by datagram (10 chunks and the end)", st, wire.RingSlots)
	}
	var bells, events int
	for deadline := time.After(10 * time.Second); bells+events < 4+11+11; {
		select {
		case d := <-got:
			if strings.HasPrefix(d, wire.BellPrefix) {
				bells++
			} else {
				events++
			}
		case <-deadline:
			t.Fatalf("%d bells, %d event datagrams", bells, events)
		}
	}
	// Announcement, first chunk, half, three quarters, and one before each
	// of the 11 datagrams, the end's included (its own end bell is not
	// sent: the end went by datagram).
	if events != 11 || bells != 4+11 {
		t.Errorf("%d bells, %d event datagrams", bells, events)
	}
}

// The extension says it is gone (SHUTDOWN) or refused the ring: new streams
// go by datagram, coalesced as without a ring.
func TestRingGoneMeansDatagrams(t *testing.T) {
	c, _ := ringClient(t)
	c.ring.reader.Store(wire.RingReaderGone)
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	s.End(EndOptions{})
	if st := c.Stats(); st.RingEvents != 0 || s.ring != nil {
		t.Errorf("stats %+v: a ring nobody reads was written", st)
	}
}

// An event longer than a slot goes by datagram; its reserved slot is
// committed empty, so the reader passes it.
func TestRingLongEventGoesByDatagram(t *testing.T) {
	c, _ := ringClient(t)
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	s.WriteChunk(benchQuote, ChunkOptions{Instrument: strings.Repeat("É", 200)})
	off := wire.RingHeaderSize + 1*wire.RingSlotSize
	if n := c.ring.mem[off+wire.RingSlotLen]; word(c.ring.mem, off).Load() != 2 || n != 0 {
		t.Errorf("slot 1: commit %d, length %d: want committed empty", word(c.ring.mem, off).Load(), n)
	}
	s.End(EndOptions{})
	if st := c.Stats(); st.RingSkipped != 1 || st.RingEvents != 2 {
		t.Errorf("stats %+v", st)
	}
}

// No ring without the extension's directory, or in one open to others:
// UseRing says why, and events go by datagram.
func TestRingNeedsThePrivateDirectory(t *testing.T) {
	c, err := New("127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.UseRing(filepath.Join(t.TempDir(), "absent")); err == nil || c.ring != nil {
		t.Errorf("a ring without its directory: %v", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if err := c.UseRing(open); err == nil || c.RingErr() == nil {
		t.Errorf("a ring in a directory open to others: %v", err)
	}
	if ents, _ := os.ReadDir(open); len(ents) != 0 {
		t.Errorf("files made in a directory not used: %v", ents)
	}
}

// BenchmarkChunkRing is BenchmarkChunk with a ring: write through, hash,
// encode, timestamp, reserve, commit.
func BenchmarkChunkRing(b *testing.B) {
	c, _ := ringClient(b)
	s := benchStream(b, c)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%1000 == 0 {
			// The extension read the ring (it does at a bell or a
			// boundary); not timed, and not shared with the writer in
			// between, as it is not while a function writes.
			b.StopTimer()
			c.ring.tail.Store(c.ring.head.Load())
			b.StartTimer()
		}
		s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	}
}

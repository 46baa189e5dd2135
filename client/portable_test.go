package client

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// What every platform's socket must do (run with -tags streamlens_portable
// for the portable one on Linux): a stream's events arrive and decode.
func TestStreamReachesTheListener(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r", Expected: 20})
	for i := 0; i < 20; i++ {
		s.WriteChunk([]byte("quote"), ChunkOptions{Instrument: "X"})
	}
	s.End(EndOptions{})
	kinds := map[wire.Kind]int{}
	buf := make([]byte, wire.MaxDatagram)
	for kinds[wire.KindEnd] == 0 {
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		wire.Decode(buf[:n], func(ev *wire.Event) { kinds[ev.Kind]++ }, func(err error) { t.Error(err) })
	}
	if kinds[wire.KindStart] != 1 || kinds[wire.KindChunk] != 20 || kinds[wire.KindEnd] != 1 {
		t.Errorf("events received %v", kinds)
	}
}

// A unix socket that does not exist yet does not fail New; its sends are
// counted as dropped until it exists.
func TestUnixSocketMayComeLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	c, err := New("unix:" + path)
	if err != nil {
		t.Fatalf("New before the socket exists: %v", err)
	}
	defer c.Close()
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	s.WriteChunk([]byte("quote"), ChunkOptions{}) // sent with the start, at once
	if st := c.Stats(); st.Dropped != 1 || st.Sent != 0 {
		t.Fatalf("stats %+v: want the start and first chunk counted as dropped", st)
	}
	pc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Skipf("no unix datagram sockets here: %v", err)
	}
	defer pc.Close()
	s.End(EndOptions{})
	if st := c.Stats(); st.Sent != 1 {
		t.Errorf("stats %+v: want the end sent once the socket exists", st)
	}
}

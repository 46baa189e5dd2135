//go:build linux && !streamlens_portable

package client

import (
	"context"
	"net"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/client/internal/benchround"
	"github.com/streamlens/streamlens/client/internal/wire"
)

var benchQuote = []byte(`{"quoteId":"01a204dc-f95b-762e-be7b-c3e65bbee985","instrument":"AAPL","bid":189.1234,"ask":189.1612,"modelVersion":"bs-vol-surface-2.3.1","feedTimestamp":"2026-11-22T20:07:31.123456789Z"}` + "\n")

// drainingListener is an extension stand-in that reads and discards.
func drainingListener(b testing.TB) (string, func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		// Read, not ReadFrom: ReadFrom allocates the sender's address, which
		// would show up in the benchmark's allocation count.
		conn := pc.(*net.UDPConn)
		buf := make([]byte, 65536)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String(), func() { pc.Close() }
}

// liveClient is a client whose datagrams a live listener reads and discards.
func liveClient(b *testing.B) *Client {
	addr, stop := drainingListener(b)
	c, err := New(addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); stop() })
	return c
}

func benchStream(b *testing.B, c *Client) *Stream {
	return c.Start(context.Background(), discard{}, StartOptions{RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Expected: 50})
}

// BenchmarkChunk is the client's whole cost per chunk: write through, hash,
// encode, timestamp, send.
func BenchmarkChunk(b *testing.B) {
	c := liveClient(b)
	s := benchStream(b, c)
	b.ReportAllocs()
	// b.N and ResetTimer, not b.Loop (Go 1.24): the client module builds
	// and tests with the oldest Go its go.mod names.
	b.ResetTimer()
	for range b.N {
		s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	}
}

// deadClient sends to a UDP port nobody listens on.
func deadClient(b testing.TB) *Client {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	c, err := New(addr)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// fullClient sends to a unix datagram socket whose buffer is full and never read.
func fullClient(b testing.TB) (*Client, func()) {
	path := filepath.Join(b.TempDir(), "full.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		b.Fatal(err)
	}
	c, err := New("unix:" + path)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ { // fill it
		c.send(benchQuote, 0)
	}
	return c, func() { c.Close(); unix.Close(fd) }
}

func BenchmarkChunkDead(b *testing.B) {
	c := deadClient(b)
	defer c.Close()
	s := benchStream(b, c)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	}
}

func BenchmarkChunkFull(b *testing.B) {
	c, done := fullClient(b)
	defer done()
	s := benchStream(b, c)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
	}
}

// BenchmarkChunkP99 times single chunk writes with the extension alive, dead and
// with a full socket buffer, interleaved in rounds so machine noise hits all
// three alike, and reports the p99 ratios (dead/alive, full/alive).
func BenchmarkChunkP99(b *testing.B) {
	alive := liveClient(b)
	dead := deadClient(b)
	defer dead.Close()
	full, done := fullClient(b)
	defer done()
	streams := []*Stream{benchStream(b, alive), benchStream(b, dead), benchStream(b, full)}
	const round = 1000
	samples := make([][]time.Duration, 3)
	b.ResetTimer()
	for range b.N {
		for k, s := range streams {
			for i := 0; i < round; i++ {
				t0 := time.Now()
				s.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"})
				samples[k] = append(samples[k], time.Since(t0))
			}
		}
	}
	p99 := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)*99/100])
	}
	a := p99(samples[0])
	b.ReportMetric(a, "alive-p99-ns")
	b.ReportMetric(p99(samples[1])/a, "dead/alive-p99")
	b.ReportMetric(p99(samples[2])/a, "full/alive-p99")
}

// BenchmarkStart is what Start costs on the path to the first byte: the
// stream's state, its id, and its start event encoded (sent later, with the
// first chunk). Only Start is timed (start-ns); allocs/op counts Start and
// End together.
func BenchmarkStart(b *testing.B) {
	c := liveClient(b)
	ctx := context.Background()
	var in time.Duration
	runtime.GC() // the benchmarks before this one leave garbage its allocations would pay for
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		s := c.Start(ctx, discard{}, StartOptions{RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Expected: 50, BundleID: "EQ-EU-50"})
		in += time.Since(t0)
		s.End(EndOptions{})
	}
	b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "start-ns")
}

// BenchmarkClientRatios: the client's per-chunk costs against a bare
// loopback sendto of the same bytes, in interleaved rounds (min/median/max
// of the per-round ratios), with the extension alive, dead, and its socket
// full. -benchtime=1x.
func BenchmarkClientRatios(b *testing.B) {
	c := liveClient(b)
	h := wire.Header{StreamID: "01a204dc-f95b-762e-be7b-c3e65bbee985", RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Seq: 7, TimeNs: time.Now().UnixNano()}
	line := wire.AppendChunk(nil, h, wire.Chunk{Instrument: "AAPL", Bytes: int64(len(benchQuote))})
	emit := c.Start(context.Background(), discard{}, StartOptions{RequestID: h.RequestID, SkipPayloadHash: true})
	chunk := benchStream(b, c)
	one := &Client{sock: c.sock, coalesce: 1} // one datagram per event: the uncoalesced cost
	single := one.Start(context.Background(), discard{}, StartOptions{RequestID: h.RequestID})
	// The same, one datagram per event, over a connected unix socket that a
	// reader drains (STREAMLENS_ADDR=unix:/path).
	path := filepath.Join(b.TempDir(), "bench.sock")
	upc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		b.Fatal(err)
	}
	defer upc.Close()
	_ = upc.(*net.UnixConn).SetReadBuffer(4 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := upc.(*net.UnixConn).Read(buf); err != nil {
				return
			}
		}
	}()
	uc, err := New("unix:" + path)
	if err != nil {
		b.Fatal(err)
	}
	defer uc.Close()
	uc.SetCoalesce(1)
	usingle := uc.Start(context.Background(), discard{}, StartOptions{RequestID: h.RequestID})
	// The same two streams with a ring (what a function gets beside the
	// extension): emit without the payload hash, chunk with it. The tail
	// is moved as the extension moves it when it reads, every 1,000
	// events (a store, counted in).
	rc, _ := ringClient(b)
	remit := rc.Start(context.Background(), discard{}, StartOptions{RequestID: h.RequestID, SkipPayloadHash: true})
	rchunk := rc.Start(context.Background(), discard{}, StartOptions{RequestID: h.RequestID})
	var written int
	read := func() {
		if written++; written%1000 == 0 {
			rc.ring.tail.Store(rc.ring.head.Load())
		}
	}
	b.ResetTimer()
	for range b.N {
		ns := benchround.Run(7, 20000,
			func() { _ = unix.Send(c.sock.fd, line, unix.MSG_DONTWAIT) },
			func() { emit.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) },
			func() { chunk.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) },
			func() { single.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) },
			func() { usingle.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) },
			func() { read(); remit.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) },
			func() { read(); rchunk.WriteChunk(benchQuote, ChunkOptions{Instrument: "AAPL"}) })
		benchround.Report(b, ns, 1, 0, "emit/sendto")
		benchround.Report(b, ns, 2, 0, "chunk/sendto")
		benchround.Report(b, ns, 3, 0, "chunk-uncoalesced/sendto")
		benchround.Report(b, ns, 4, 3, "unix/udp-uncoalesced")
		benchround.Report(b, ns, 5, 1, "ring-emit/emit")
		benchround.Report(b, ns, 6, 2, "ring-chunk/chunk")
		st := uc.Stats()
		b.ReportMetric(float64(st.Dropped)/float64(st.Sent+st.Dropped), "unix-dropped-share")
	}
}

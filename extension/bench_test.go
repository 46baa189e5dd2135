package extension

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

// streamDatagrams returns the datagrams of n complete 50-instrument streams,
// one event per datagram as the Go client sends them.
func streamDatagrams(n int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		h := protocol.Header{StreamID: fmt.Sprintf("0193a6f2-7c1e-7b3a-9d4e-%012d", i), RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", TimeNs: t0}
		out = append(out, protocol.AppendStart(nil, h, protocol.Start{Expected: 50, BundleID: "EQ-EU-50"}))
		for c := 0; c < 50; c++ {
			h.Seq++
			h.TimeNs += 1e6
			out = append(out, protocol.AppendChunk(nil, h, protocol.Chunk{Instrument: "INST" + strconv.Itoa(c), Bytes: 190}))
		}
		h.Seq++
		out = append(out, protocol.AppendEnd(nil, h, protocol.End{Delivered: 50, Expected: 50, Bytes: 9500, HasSHA256: true, Status: protocol.StatusComplete}))
	}
	return out
}

// BenchmarkIngest is decode + apply per event, on one goroutine, with a
// finalize after every 100 streams as invocation boundaries would do.
func BenchmarkIngest(b *testing.B) {
	dgs := streamDatagrams(100)
	tb := newTable(1024, 2000)
	inv := &invocation{requestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd"}
	b.ReportAllocs()
	i := 0
	start := time.Now()
	for b.Loop() {
		tb.mu.Lock()
		tb.applyDatagram(dgs[i], len(dgs[i]))
		tb.mu.Unlock()
		if i++; i == len(dgs) {
			i = 0
			tb.mu.Lock()
			tb.finalize(inv, "")
			tb.flushed, tb.flushedFIFO = map[string]struct{}{}, nil // the same ids come again
			tb.mu.Unlock()
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkFlush50 is the work between "invocation over" and /event/next for
// one 50-instrument bundle: drain, finalize, EMF encode, write.
func BenchmarkFlush50(b *testing.B) {
	dgs := streamDatagrams(1)
	cfg := Config{FunctionName: "pricing", Namespace: "Streamlens", TTFBThreshold: 100 * time.Millisecond, InstrumentMetrics: true}
	lw := newLogWriter(io.Discard, 64<<20)
	defer lw.close(time.Second)
	fl := &flusher{cfg: cfg, out: lw, now: time.Now}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		tb := newTable(1024, 2000)
		for _, d := range dgs {
			tb.applyDatagram(d, len(d))
		}
		inv := tb.beginInvocation("8476a536-e9f4-11e8-9739-2dfe598c3fcd", time.Now(), "")
		b.StartTimer()
		tb.mu.Lock()
		bt := batch{streams: tb.finalize(inv, "")}
		bt.invocations = tb.readyInvocations(false)
		bt.counters = tb.takeCounters()
		tb.mu.Unlock()
		if err := fl.write(bt); err != nil {
			b.Fatal(err)
		}
	}
}

// ingestSocket starts the real reader on a loopback UDP socket.
func ingestSocket(b testing.TB) (*ingest, *Table, net.Conn) {
	tb := newTable(1<<20, 64)
	in, err := listenIngest(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, tb)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("udp", in.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	return in, tb, conn
}

// BenchmarkIngestSocket pushes events through the real socket reader as fast as
// one sender can; received/sent says what the socket dropped under overload.
func BenchmarkIngestSocket(b *testing.B) {
	in, tb, conn := ingestSocket(b)
	defer in.close()
	defer conn.Close()
	dgs := streamDatagrams(200)
	i := 0
	start := time.Now()
	for b.Loop() {
		_, _ = conn.Write(dgs[i])
		if i++; i == len(dgs) {
			i = 0
			tb.mu.Lock()
			tb.streams = map[string]*stream{} // keep memory flat; ids repeat
			tb.fifo = nil
			tb.mu.Unlock()
		}
	}
	in.drain(time.Now().Add(time.Second))
	el := time.Since(start)
	tb.mu.Lock()
	got := tb.counters.Events
	tb.mu.Unlock()
	b.ReportMetric(float64(got)/el.Seconds(), "events/s")
	b.ReportMetric(float64(got)/float64(b.N), "received/sent")
}

// BenchmarkScenarioSustained50k sends 50,000 events/s for 10 s through the real
// socket reader, with a flush every 100 ms like invocation boundaries, and
// reports events lost (sent − counted). Run with -benchtime=1x.
func BenchmarkScenarioSustained50k(b *testing.B) {
	const rate, seconds = 50_000, 10
	for b.Loop() {
		in, tb, conn := ingestSocket(b)
		dgs := streamDatagrams(2000)
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the invocation boundaries
			defer wg.Done()
			inv := &invocation{requestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd"}
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					in.drain(time.Now().Add(time.Second))
					tb.mu.Lock()
					tb.finalize(inv, "")
					tb.mu.Unlock()
				}
			}
		}()
		perTick := rate / 1000
		tick := time.NewTicker(time.Millisecond)
		begin := time.Now()
		i := 0
		for time.Since(begin) < seconds*time.Second {
			<-tick.C
			// Catch up if the ticker slipped, so the average rate holds.
			want := int64(time.Since(begin).Seconds() * rate)
			for n := 0; n < perTick*4 && sent.Load() < want; n++ {
				_, _ = conn.Write(dgs[i%len(dgs)])
				sent.Add(1)
				i++
			}
		}
		tick.Stop()
		in.drain(time.Now().Add(time.Second))
		close(stop)
		wg.Wait()
		tb.mu.Lock()
		counted := tb.counters.Events
		tb.mu.Unlock()
		b.ReportMetric(float64(sent.Load())/seconds, "sent/s")
		b.ReportMetric(float64(sent.Load()-counted), "lost")
		conn.Close()
		in.close()
	}
}

//go:build linux

package ingest

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/streamtest"
	"github.com/streamlens/streamlens/protocol"
)

// ingestSocket starts the real reader on a loopback UDP socket.
func ingestSocket(b testing.TB) (*Socket, *counted, net.Conn) {
	c := &counted{tb: state.New(1<<20, 64)}
	evs := NewEvents(func(ev *protocol.Event, now time.Time) { c.tb.Apply(ev, now) })
	in, err := Listen(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &c.mu, evs.Datagram)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("udp", in.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	return in, c, conn
}

// counted is a state table behind the lock the reader takes.
type counted struct {
	mu     sync.Mutex
	tb     *state.Table
	events int64
}

// flush finalizes what ended (an invocation boundary) and returns the events
// applied so far.
func (c *counted) flush() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tb.Finalize(streamtest.RequestID, state.Failure{}, time.Now())
	c.events += c.tb.TakeCounters().Events
	return c.events
}

// BenchmarkIngestSocket pushes events through the real socket reader as fast as
// one sender can; received/sent says what the socket dropped under overload.
func BenchmarkIngestSocket(b *testing.B) {
	in, c, conn := ingestSocket(b)
	defer in.Close()
	defer conn.Close()
	dgs := streamtest.Datagrams(200)
	i := 0
	start := time.Now()
	for b.Loop() {
		_, _ = conn.Write(dgs[i])
		if i++; i == len(dgs) {
			i = 0
			c.flush() // keep memory flat
		}
	}
	in.Drain(time.Now().Add(time.Second))
	el := time.Since(start)
	got := c.flush()
	b.ReportMetric(float64(got)/el.Seconds(), "events/s")
	b.ReportMetric(float64(got)/float64(b.N), "received/sent")
}

// BenchmarkScenarioSustained50k sends 50,000 events/s for 10 s through the real
// socket reader, with a flush every 100 ms like invocation boundaries, and
// reports events lost (sent − counted). Run with -benchtime=1x.
func BenchmarkScenarioSustained50k(b *testing.B) {
	const rate, seconds = 50_000, 10
	for b.Loop() {
		in, c, conn := ingestSocket(b)
		dgs := streamtest.Datagrams(2000)
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the invocation boundaries
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					in.Drain(time.Now().Add(time.Second))
					c.flush()
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
		in.Drain(time.Now().Add(time.Second))
		close(stop)
		wg.Wait()
		counted := c.flush()
		b.ReportMetric(float64(sent.Load())/seconds, "sent/s")
		b.ReportMetric(float64(sent.Load()-counted), "lost")
		conn.Close()
		in.Close()
	}
}

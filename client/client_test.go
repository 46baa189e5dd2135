//go:build linux && !streamlens_portable

package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// listener collects decoded events from a real socket.
type listener struct {
	conn   net.PacketConn
	mu     sync.Mutex
	events []wire.Event
	done   chan struct{}
}

func listen(t *testing.T, network, addr string) *listener {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{conn: pc, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			wire.Decode(buf[:n], func(e *wire.Event) {
				l.mu.Lock()
				l.events = append(l.events, *e)
				l.mu.Unlock()
			}, func(err error) { t.Errorf("client sent a malformed event: %v", err) })
		}
	}()
	t.Cleanup(func() { pc.Close(); <-l.done })
	return l
}

// waitFor polls until n events arrived; loopback delivery is synchronous with
// sendto, so this returns on the first look unless something is wrong.
func (l *listener) waitFor(t *testing.T, n int) []wire.Event {
	t.Helper()
	for i := 0; i < 5000; i++ {
		l.mu.Lock()
		got := append([]wire.Event(nil), l.events...)
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("got %d events, want %d", len(l.events), n)
	return nil
}

func TestStreamEventsRoundTrip(t *testing.T) {
	for _, network := range []string{"udp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unixgram" {
				addr = filepath.Join(t.TempDir(), "sl.sock")
			}
			l := listen(t, network, addr)
			target := l.conn.LocalAddr().String()
			if network == "unixgram" {
				target = "unix:" + target
			}
			c, err := New(target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
			var out bytes.Buffer
			s := c.Start(ctx, &out, StartOptions{Expected: 3, BundleID: "B1", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
			payload := [][]byte{[]byte(`{"i":"ERR"}`), []byte(`{"i":"AAPL"}`), []byte(`{"i":"BRK B"}`)}
			s.WriteChunk(payload[0], ChunkOptions{Instrument: "ERR", ErrorEnvelope: true})
			s.WriteChunk(payload[1], ChunkOptions{Instrument: "AAPL"})
			s.WriteChunk(payload[2], ChunkOptions{Instrument: "BRK B"})
			s.WriteChunk([]byte(`{"BUNDLE_COMPLETE":1}`), ChunkOptions{Trailer: true})
			want := sha256.Sum256(bytes.Join(payload, nil))
			sum := s.End(EndOptions{Declared: &want})

			if sum.SHA256 != want || sum.Delivered != 3 || sum.Status != wire.StatusComplete {
				t.Errorf("summary %+v", sum)
			}
			if !bytes.Contains(out.Bytes(), []byte("BUNDLE_COMPLETE")) || !bytes.HasPrefix(out.Bytes(), payload[0]) {
				t.Errorf("response bytes not written through: %q", out.Bytes())
			}
			ev := l.waitFor(t, 6)
			for i, e := range ev {
				if e.StreamID != s.QuoteID() || e.RequestID != "req-1" || e.Seq != uint32(i) {
					t.Errorf("event %d header %+v", i, e.Header)
				}
			}
			if ev[0].Kind != wire.KindStart || ev[0].Start.Expected != 3 || ev[0].Start.BundleID != "B1" {
				t.Errorf("start %+v", ev[0])
			}
			// The error envelope is not useful; the first quote after it is.
			if ev[1].Chunk.Flags != wire.FlagError || ev[2].Chunk.Flags != wire.FlagFirstUseful || ev[3].Chunk.Flags != 0 {
				t.Errorf("flags %v %v %v", ev[1].Chunk.Flags, ev[2].Chunk.Flags, ev[3].Chunk.Flags)
			}
			if ev[3].Chunk.Instrument != "BRK B" || ev[4].Chunk.Flags != wire.FlagTrailer {
				t.Errorf("chunks %+v %+v", ev[3].Chunk, ev[4].Chunk)
			}
			end := ev[5].End
			if ev[5].Kind != wire.KindEnd || end.Delivered != 3 || end.Expected != 3 || end.SHA256 != want || end.Declared != want || end.Status != wire.StatusComplete {
				t.Errorf("end %+v", end)
			}
			if s.QuoteID()[14] != '7' {
				t.Errorf("quote id %s is not a UUIDv7", s.QuoteID())
			}
		})
	}
}

// Nothing listens: the stream is written in full and the refused sends are counted.
func TestNoListenerNeverFailsTheStream(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close() // the port is now closed: the kernel answers ICMP port unreachable

	c, err := New(dead)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.maxWait = time.Hour // datagrams are counted: no batch split by a pause
	var out bytes.Buffer
	s := c.Start(context.Background(), &out, StartOptions{Expected: 200})
	for i := 0; i < 200; i++ {
		if _, err := s.WriteChunk([]byte("quote\n"), ChunkOptions{Instrument: "X"}); err != nil {
			t.Fatalf("write %d failed: %v", i, err)
		}
	}
	sum := s.End(EndOptions{})
	if out.Len() != 200*6 || sum.Delivered != 200 || sum.Status != wire.StatusComplete {
		t.Errorf("stream not completed: %d bytes, %+v", out.Len(), sum)
	}
	st := c.Stats()
	if want := datagrams(200, DefaultCoalesce); st.Dropped == 0 || st.Sent+st.Dropped != want {
		t.Errorf("stats %+v: want refused sends counted, %d in all", st, want)
	}
}

// The listener goes away in the middle of a stream.
func TestListenerStoppedMidStream(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Start(context.Background(), &bytes.Buffer{}, StartOptions{})
	for i := 0; i < 10; i++ {
		s.WriteChunk([]byte("q"), ChunkOptions{})
	}
	if c.Stats().Dropped != 0 {
		t.Fatalf("drops while the listener was up: %+v", c.Stats())
	}
	pc.Close()
	// Enough chunks for several datagrams: the first send to the closed port
	// goes out, the ones after the kernel's "port unreachable" are refused.
	for i := 0; i < 500; i++ {
		if _, err := s.WriteChunk([]byte("q"), ChunkOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sum := s.End(EndOptions{})
	if sum.Delivered != 510 || sum.Dropped == 0 {
		t.Errorf("summary %+v: want 510 delivered and drops counted", sum)
	}
}

// A listener that never reads: once its buffer is full every send must return at
// once (EAGAIN) and be counted. If send could block, this test would hang.
func TestFullSocketBufferDropsInsteadOfBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	c, err := New("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.maxWait = time.Hour // datagrams are counted: no batch split by a pause
	s := c.Start(context.Background(), &bytes.Buffer{}, StartOptions{})
	const n = 5000
	for i := 0; i < n; i++ {
		s.WriteChunk([]byte("quote"), ChunkOptions{Instrument: "AAPL"})
	}
	s.End(EndOptions{})
	st := c.Stats()
	if want := datagrams(n, DefaultCoalesce); st.Dropped == 0 || st.Sent+st.Dropped != want {
		t.Errorf("stats %+v: want drops counted and %d in all", st, want)
	}
}

// datagrams is how many datagrams a stream of n payload chunks takes with k
// chunk events per datagram: the start with the first chunk, full groups of
// k, and the end with the rest.
func datagrams(n, k int) int64 { return int64(2 + (n-1)/k) }

// Chunk events share datagrams, in order and each with its own time; the
// first chunk and the end are sent at once; what the extension decodes is
// the same stream as with one datagram per event.
func TestCoalescedEventsDecodeToTheSameStream(t *testing.T) {
	for _, k := range []int{1, 8} {
		pc, c := listening(t)
		c.SetCoalesce(k)
		c.maxWait = time.Hour // datagrams are counted: no batch split by a pause
		s := c.Start(context.Background(), io.Discard, StartOptions{Expected: 50})
		var perDatagram []int
		var evs []wire.Event
		read := func() {
			buf := make([]byte, wire.MaxDatagram)
			for {
				_ = pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				got := 0
				wire.Decode(buf[:n], func(ev *wire.Event) { evs = append(evs, *ev); got++ }, func(err error) { t.Errorf("decode: %v", err) })
				perDatagram = append(perDatagram, got)
			}
		}
		for i := 0; i < 50; i++ {
			s.WriteChunk([]byte("quote"), ChunkOptions{Instrument: fmt.Sprintf("I%d", i)})
			if i == 0 {
				read()
				if len(evs) != 2 || evs[1].Kind != wire.KindChunk {
					t.Fatalf("k=%d: the first chunk was not sent at once: %d events", k, len(evs))
				}
			}
		}
		s.End(EndOptions{})
		read()
		if int64(len(perDatagram)) != datagrams(50, k) {
			t.Errorf("k=%d: %d datagrams %v, want %d", k, len(perDatagram), perDatagram, datagrams(50, k))
		}
		if len(evs) != 52 || evs[0].Kind != wire.KindStart || evs[51].Kind != wire.KindEnd || evs[51].End.Delivered != 50 {
			t.Fatalf("k=%d: %d events", k, len(evs))
		}
		for i, ev := range evs[1:51] {
			if ev.Seq != uint32(i+1) || ev.Chunk.Instrument != fmt.Sprintf("I%d", i) || (i > 0 && ev.TimeNs < evs[i].TimeNs) {
				t.Errorf("k=%d: event %d: seq %d inst %s", k, i+1, ev.Seq, ev.Chunk.Instrument)
			}
		}
	}
}

func TestWriteErrorMeansAborted(t *testing.T) {
	c, err := New("127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Start(context.Background(), failingWriter{}, StartOptions{})
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("write error swallowed")
	}
	if sum := s.End(EndOptions{}); sum.Status != wire.StatusAborted || sum.Delivered != 0 {
		t.Errorf("summary %+v", sum)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestNilClientWritesThrough(t *testing.T) {
	var c *Client
	var out bytes.Buffer
	s := c.Start(context.Background(), &out, StartOptions{})
	s.Write([]byte("abc"))
	if sum := s.End(EndOptions{}); out.String() != "abc" || sum.Delivered != 1 {
		t.Errorf("out=%q sum=%+v", out.String(), sum)
	}
}

func TestBadAddr(t *testing.T) {
	for _, a := range []string{"nonsense", "127.0.0.1", "unix:relative", "127.0.0.1:0", "example.com:9126"} {
		if _, err := New(a); err == nil {
			t.Errorf("New(%q) accepted", a)
		}
	}
	t.Setenv(EnvAddr, "nonsense")
	if _, err := FromEnv(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(EnvAddr)) {
		t.Errorf("FromEnv error %v does not name %s", err, EnvAddr)
	}
}

func TestChunkDoesNotAllocate(t *testing.T) {
	_, c := listening(t)
	s := c.Start(context.Background(), discard{}, StartOptions{RequestID: "r"})
	p := []byte(`{"instrument":"AAPL","bid":189.1,"ask":189.2}`)
	allocs := testing.AllocsPerRun(1000, func() {
		s.WriteChunk(p, ChunkOptions{Instrument: "AAPL"})
	})
	if allocs != 0 {
		t.Errorf("%v allocations per chunk", allocs)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestTraceParentFromContext(t *testing.T) {
	l := listen(t, "udp", "127.0.0.1:0")
	c, err := New(l.conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	c.Start(ctx, &bytes.Buffer{}, StartOptions{RequestID: "r"})
	c.Start(context.Background(), &bytes.Buffer{}, StartOptions{RequestID: "r"})
	ev := l.waitFor(t, 2)
	if ev[0].Start.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent %q", ev[0].Start.TraceParent)
	}
	if ev[1].Start.TraceParent != "" {
		t.Errorf("traceparent without a span context: %q", ev[1].Start.TraceParent)
	}
}

// A function that hangs after a few chunks still has them counted: events
// waiting to share a datagram are sent within coalesceWait.
func TestWaitingEventsAreSentWhenTheFunctionStalls(t *testing.T) {
	pc, c := listening(t)
	s := c.Start(context.Background(), io.Discard, StartOptions{Expected: 10})
	for i := 0; i < 3; i++ {
		s.WriteChunk([]byte("quote"), ChunkOptions{Instrument: "X"})
	}
	// No End: the function hangs here.
	chunks := 0
	buf := make([]byte, wire.MaxDatagram)
	for deadline := time.Now().Add(time.Second); chunks < 3 && time.Now().Before(deadline); {
		_ = pc.SetReadDeadline(deadline)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		wire.Decode(buf[:n], func(ev *wire.Event) {
			if ev.Kind == wire.KindChunk {
				chunks++
			}
		}, func(error) {})
	}
	if chunks != 3 {
		t.Errorf("%d of 3 chunk events reached the extension while the function stalled", chunks)
	}
}

// listening returns a UDP socket on loopback and a client sending to it,
// both closed when the test ends.
func listening(t *testing.T) (net.PacketConn, *Client) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return pc, c
}

// A unix socket is used connected once it exists (a connected send skips
// the path lookup), before it exists events are dropped and counted, and
// after the extension's socket is replaced (a restart) the client finds the
// new one by its path.
func TestUnixSocketConnectsOnceItExistsAndAfterARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "late.sock")
	c, err := New("unix:" + path) // no extension yet
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev := func(seq uint32) []byte {
		return wire.AppendChunk(nil, wire.Header{StreamID: "s", RequestID: "r", Seq: seq, TimeNs: time.Now().UnixNano()}, wire.Chunk{Instrument: "A", Bytes: 1})
	}
	if c.send(ev(1), 0) || c.sock.connected.Load() {
		t.Fatal("sent with no socket to send to")
	}
	for round := range 2 {
		l := listen(t, "unixgram", path)
		delivered := 0
		for i := range reconnectEvery + 1 {
			if c.send(ev(uint32(i+1)), 0) {
				// One at a time: a unix socket queues only 10 datagrams.
				delivered++
				l.waitFor(t, delivered)
			}
		}
		if delivered < reconnectEvery || !c.sock.connected.Load() {
			t.Fatalf("round %d: %d delivered, connected %v", round, delivered, c.sock.connected.Load())
		}
		// The extension restarts: its socket closes, a new one is bound
		// under the same path.
		l.conn.Close()
		<-l.done
		os.Remove(path)
	}
	if st := c.Stats(); st.Dropped == 0 || st.Sent < 2*reconnectEvery {
		t.Errorf("stats %+v", st)
	}
}

// A stream slow to its first chunk (a cold model cache) is still known to
// the extension at once: its start goes out within coalesceWait, which is
// what keeps the extension from taking the invocation for a non-streaming
// one.
func TestStartGoesOutBeforeASlowFirstChunk(t *testing.T) {
	pc, c := listening(t)
	s := c.Start(context.Background(), io.Discard, StartOptions{Expected: 10, BundleID: "B"})
	buf := make([]byte, wire.MaxDatagram)
	_ = pc.SetReadDeadline(time.Now().Add(time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no start while the function computes its first chunk: %v", err)
	}
	var kinds []wire.Kind
	wire.Decode(buf[:n], func(ev *wire.Event) { kinds = append(kinds, ev.Kind) }, func(err error) { t.Error(err) })
	if len(kinds) != 1 || kinds[0] != wire.KindStart {
		t.Errorf("first datagram %v, want the start alone", kinds)
	}
	s.End(EndOptions{})
}

// Start allocates the Stream and nothing else: it is on the path to the
// first byte. (Its cost in time is measured by make bench.)
func TestStartAllocatesOnlyTheStream(t *testing.T) {
	_, c := listening(t)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		s := c.Start(ctx, discard{}, StartOptions{RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Expected: 50, BundleID: "EQ-EU-50"})
		s.End(EndOptions{})
	})
	if allocs > 1 {
		t.Errorf("%v allocations per Start and End, want 1", allocs)
	}
}

// A stream's hash state goes back to a pool at End: a write after End must
// not reach the next stream's hash, and the ids stay what they were.
func TestStreamsAfterEndStayApart(t *testing.T) {
	_, c := listening(t)
	a := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	a.WriteChunk([]byte("a1"), ChunkOptions{})
	first := a.End(EndOptions{})
	idA := a.QuoteID()
	b := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
	a.WriteChunk([]byte("late write after End"), ChunkOptions{})
	b.WriteChunk([]byte("b1"), ChunkOptions{})
	sb := b.End(EndOptions{})
	if sb.SHA256 != sha256.Sum256([]byte("b1")) {
		t.Error("a write after End reached another stream's hash")
	}
	if again := a.End(EndOptions{}); again != first || a.QuoteID() != idA || idA == b.QuoteID() || len(idA) != 36 {
		t.Errorf("after End: %+v vs %+v, ids %s %s", again, first, idA, b.QuoteID())
	}
	if !uuidV7.MatchString(idA) {
		t.Errorf("quote id %q is not a UUIDv7", idA)
	}
}

// The client's timer may send a stream's waiting events while the stream
// ends: End and the timer must not race (run with -race).
func TestEndWhileTheTimerSends(t *testing.T) {
	c := deadClient(t) // every send fails: the timer's flush counts drops
	defer c.Close()
	for range 200 {
		s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: "r"})
		time.Sleep(coalesceWait) // the timer is due now
		s.End(EndOptions{})
	}
}

// With the longest ids and instrument names the protocol allows, escaped
// at three bytes a byte, every datagram stays within wire.MaxDatagram
// (the extension refuses larger ones) and every event arrives.
func TestLargestEventsStayInsideADatagram(t *testing.T) {
	pc, c := listening(t)
	c.maxWait = time.Hour
	s := c.Start(context.Background(), io.Discard, StartOptions{RequestID: strings.Repeat("r", wire.MaxIDLen)})
	long := strings.Repeat("é", wire.MaxValueLen/2) // 256 bytes, 768 escaped
	for i := 0; i < 200; i++ {
		inst := long
		if i%3 == 0 {
			inst = fmt.Sprintf("I%d", i) // ordinary ones between
		}
		s.WriteChunk([]byte("q"), ChunkOptions{Instrument: inst})
	}
	s.End(EndOptions{})
	chunks, largest := 0, 0
	buf := make([]byte, 64<<10)
	for {
		_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		largest = max(largest, n)
		if n > wire.MaxDatagram {
			t.Errorf("a datagram of %d bytes, over %d", n, wire.MaxDatagram)
		}
		wire.Decode(buf[:n], func(ev *wire.Event) {
			if ev.Kind == wire.KindChunk {
				chunks++
			}
		}, func(err error) { t.Errorf("decode: %v", err) })
	}
	if chunks != 200 || largest < wire.MaxDatagram/2 {
		t.Errorf("%d chunk events, largest datagram %d bytes", chunks, largest)
	}
}

// slowWriter blocks every write for d, a slow caller's backpressure, and
// keeps how long it held each write: the delay injected, as it was.
type slowWriter struct {
	d    time.Duration
	held *[]time.Duration
}

func (w slowWriter) Write(p []byte) (int, error) {
	t := time.Now()
	time.Sleep(w.d)
	*w.held = append(*w.held, time.Since(t))
	return len(p), nil
}

// The time inside the response writer's Write is measured and sent in the
// end event: in all and the longest, so that a slow caller's backpressure
// does not hide in the chunks' intervals. Both are within 10 % of the delay
// the writer injected (as it measured it itself: a sleep may overrun).
func TestBlockedWriteTimeInTheEnd(t *testing.T) {
	l := listen(t, "udp", "127.0.0.1:0")
	c, err := New(l.conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var held []time.Duration
	s := c.Start(context.Background(), slowWriter{20 * time.Millisecond, &held}, StartOptions{})
	for i := 0; i < 3; i++ {
		s.WriteChunk([]byte("quote\n"), ChunkOptions{})
	}
	s.End(EndOptions{})
	evs := l.waitFor(t, 5)
	end := evs[len(evs)-1]
	var injected, longest time.Duration
	for _, d := range held {
		injected, longest = injected+d, max(longest, d)
	}
	within := func(got int64, want time.Duration) bool {
		w := float64(want.Microseconds())
		return float64(got) >= w && float64(got) <= 1.1*w
	}
	if end.Kind != wire.KindEnd || !end.End.HasBlocked || !within(end.End.BlockedUs, injected) || !within(end.End.BlockedMaxUs, longest) {
		t.Errorf("end %+v: want %v blocked in all and %v the longest (+10 %% at most)", end.End, injected, longest)
	}
}

// uuidV7 is a UUIDv7 in canonical form (RFC 9562): version 7, variant 10.
var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

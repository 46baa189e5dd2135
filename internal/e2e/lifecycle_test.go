package e2e

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
)

// Every case in which the extension used to hold an invocation until (or
// past) its deadline. On the strict sandbox, as on Lambda, an extension that
// calls /event/next after the deadline times the invocation out; so each case
// must succeed, and must not have been held toward the deadline at all: a
// 10 s timeout against an extension that is back in next within milliseconds.
func TestNextComesBeforeTheDeadline(t *testing.T) {
	const timeout = 10 * time.Second
	telemetryOff := func(c *sandbox.Config) { c.Env = append(c.Env, "STREAMLENS_TELEMETRY=off") }
	for _, tc := range []struct {
		name  string
		mod   func(*sandbox.Config)
		query string
		flood bool
	}{
		{"telemetry off, no stream", func(c *sandbox.Config) { telemetryOff(c); c.Function = bins.plain }, "", false},
		{"telemetry off, lost end", telemetryOff, "instruments=5&skip_end=1", false},
		{"telemetry not supported, lost end", func(c *sandbox.Config) { c.Telemetry = sandbox.TelemetryUnsupported }, "instruments=5&skip_end=1", false},
		{"runtimeDone missing, lost end", func(c *sandbox.Config) { c.Suppress = []string{"platform.runtimeDone"} }, "instruments=5&skip_end=1", false},
		{"no stream", func(c *sandbox.Config) { c.Function = bins.plain }, "", false},
		{"datagram flood", nil, "instruments=50", true},
		{"1,100 slow connections on the telemetry listener", nil, "instruments=50", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, func(c *sandbox.Config) {
				c.Timeout = timeout
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			stop := func() {}
			if tc.flood {
				stop = flood(t, e.addr)
			}
			slow := strings.HasPrefix(tc.name, "1,100 slow")
			if slow {
				e.invoke(t, tc.query) // init: the listener exists from here on
				stop = slowConnections(t, e.telemetryPort, 1100)
			}
			for i := 0; i < 3; i++ {
				res, _ := e.invoke(t, tc.query)
				if res.Status != "success" {
					t.Fatalf("invocation %d: %s %s: the extension's next came after the deadline", i, res.Status, res.ErrorType)
				}
				if res.PostRuntime() > timeout/4 {
					t.Errorf("invocation %d: held %v after the runtime finished, toward its %v deadline", i, res.PostRuntime(), timeout)
				}
			}
			if slow {
				// The listener holds a bounded number of them; the rest wait
				// in the kernel's backlog, not in the extension's fds.
				fds, _ := os.ReadDir("/proc/" + strconv.Itoa(e.sb.Extensions()[0].PID) + "/fd")
				t.Logf("figure: 1,100 slow connections → the extension holds %d fds, 3/3 invocations succeed", len(fds))
				if len(fds) > 100 {
					t.Errorf("the extension holds %d fds under 1,100 slow connections", len(fds))
				}
			}
			stop()
		})
	}
}

// slowConnections opens n connections to the TCP port that send half a
// request header and stall, as a slow or hostile client would, and holds
// them until stopped.
func slowConnections(t *testing.T, port, n int) (stop func()) {
	t.Helper()
	var conns []net.Conn
	d := net.Dialer{Timeout: time.Second}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Logf("dial %d: %v", i, err)
			break // the backlog is full: that is the listener's bound at work
		}
		_, _ = c.Write([]byte("POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Le"))
		conns = append(conns, c)
	}
	t.Logf("%d slow connections open", len(conns))
	if len(conns) < n/2 {
		t.Errorf("only %d of %d connections could be opened: the test did not load the listener", len(conns), n)
	}
	return func() {
		for _, c := range conns {
			c.Close()
		}
	}
}

// flood sends junk datagrams to addr as fast as it can until stopped (or
// 20 s, or 5 million datagrams: a test's load stops by itself).
func flood(t *testing.T, addr string) (stop func()) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		end := time.Now().Add(20 * time.Second)
		junk := []byte("sl1 junk that is not an event\n")
		for i := 0; i < 5_000_000 && time.Now().Before(end); i++ {
			select {
			case <-done:
				return
			default:
			}
			_, _ = conn.Write(junk)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		conn.Close()
	}
}

// The emulator behind sam local answers the subscription with 202
// Telemetry.NotSupported: that is no subscription. The extension says so once
// on stderr and as a metric, and works on without telemetry.
func TestTelemetryNotSupportedIsNoTelemetry(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Telemetry = sandbox.TelemetryUnsupported })
	for i := 0; i < 2; i++ {
		if res, _ := e.invoke(t, "instruments=5"); res.Status != "success" {
			t.Fatalf("%+v", res)
		}
	}
	e.sb.Close()
	ds := e.log.waitDocs(t, "two streams", func(ds []doc) bool { return len(streamDocs(ds)) == 2 })
	if n := strings.Count(e.log.String(), "telemetry disabled"); n != 1 || !strings.Contains(e.log.String(), "Telemetry.NotSupported") {
		t.Errorf("%d stderr lines about telemetry, want 1 naming Telemetry.NotSupported", n)
	}
	if got := sumKey(ds, "TelemetryUnavailable"); got != 1 {
		t.Errorf("TelemetryUnavailable adds up to %v, want 1", got)
	}
	for _, s := range streamDocs(ds) {
		if s.num("StreamTruncated") != 0 {
			t.Errorf("%v", s)
		}
	}
}

// A complete stream is final when its end arrives: its document is written
// before the extension lets the invocation go, so the log has it while the
// environment is frozen, and the invocation's record (with ExtensionOverhead,
// report − runtimeDone) follows once the platform's report arrived.
func TestCompleteStreamIsFinalAtItsEnd(t *testing.T) {
	e := start(t, nil)
	res, _ := e.invoke(t, "instruments=50")
	if res.Status != "success" {
		t.Fatalf("%+v", res)
	}
	s := e.onlyStream(t) // frozen now: only what was written before next is there
	if s.num("StreamTruncated") != 0 || s.str("RequestId") != res.RequestID {
		t.Errorf("%v", s)
	}
	e.sb.Close()
	ds := e.log.waitDocs(t, "the invocation record", func(ds []doc) bool { return len(invocationDocs(ds)) == 1 })
	if d := invocationDocs(ds)[0]; d.num("ExtensionOverhead") < 0 {
		t.Errorf("no ExtensionOverhead on %v", d)
	}
}

// Lambda Managed Instances: four invocations at a time in one environment.
// INVOKE is refused, so the extension registers for SHUTDOWN only, subscribes
// with schema 2025-01-29, attributes the concurrent streams by request id and
// flushes each when its end arrives — before any SHUTDOWN. The invocation
// records follow their platform reports, the last ones at SHUTDOWN.
func TestManagedInstancesConcurrentStreams(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.MaxConcurrency = 4 })
	var mu sync.Mutex
	want := map[string]bool{}
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, body := e.invoke(t, "instruments=20&delay_ms=5")
				if res.Status != "success" || quotes(body) != 20 {
					t.Errorf("%+v: %d quotes", res, quotes(body))
				}
				mu.Lock()
				want[res.RequestID] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	ds := e.log.waitDocs(t, "8 stream documents before shutdown", func(ds []doc) bool { return len(streamDocs(ds)) == 8 })
	got := map[string]bool{}
	for _, s := range streamDocs(ds) {
		if !want[s.str("RequestId")] || s.num("StreamTruncated") != 0 || s.num("ChunksDelivered") != 20 {
			t.Errorf("stream %v", s)
		}
		got[s.str("RequestId")] = true
	}
	if len(got) != len(want) {
		t.Errorf("streams of %d request ids, want %d", len(got), len(want))
	}
	log := e.log.String()
	if !strings.Contains(log, "Lambda Managed Instances (INVOKE refused)") || strings.Contains(log, "telemetry disabled") {
		t.Errorf("registration or subscription did not adapt:\n%s", log)
	}
	e.sb.Close()
	ds = e.log.waitDocs(t, "8 invocation records", func(ds []doc) bool { return len(invocationDocs(ds)) == 8 })
	for _, d := range invocationDocs(ds) {
		if _, missing := d["RuntimeDoneMissing"]; !want[d.str("RequestId")] || missing {
			t.Errorf("invocation record %v", d)
		}
	}
	// Managed Instances' platform.report carries the response spans (they
	// send no runtimeDone): in the records apart, and for the invocations
	// whose outcome went with their stream, in the platform document.
	if n := platformValues(ds, "ResponseLatency"); n != len(want) {
		t.Errorf("%d ResponseLatency values, want %d", n, len(want))
	}
}

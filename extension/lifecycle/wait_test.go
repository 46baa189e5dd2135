//go:build linux

package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/extapi"
	"github.com/streamlens/streamlens/protocol"

	"github.com/streamlens/streamlens/internal/syncbuf"
)

// The wait rules, in process: the real lifecycle against an Extensions API
// served by httptest (as aws-lambda-go tests its loop), fed real datagrams on
// a loopback socket. The API hands out the events a test queues and notes
// when each /event/next arrives.

// controlPlane is a fake Extensions API.
type controlPlane struct {
	srv    *httptest.Server
	events chan string    // handed out, in order, one per /event/next
	asked  chan time.Time // when each /event/next arrived
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{events: make(chan string, 8), asked: make(chan time.Time, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(extapi.HeaderIdentifier, "ext-1")
		_, _ = w.Write([]byte(`{}`))
	})
	// The Telemetry API's subscription: accepted; a test that wants
	// platform events posts them to the extension's listener itself.
	mux.HandleFunc("PUT /2022-07-01/telemetry", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("GET /2020-01-01/extension/event/next", func(w http.ResponseWriter, r *http.Request) {
		cp.asked <- time.Now()
		select {
		case ev := <-cp.events:
			_, _ = w.Write([]byte(ev))
		case <-r.Context().Done():
		}
	})
	cp.srv = httptest.NewServer(mux)
	t.Cleanup(cp.srv.Close)
	return cp
}

// waitAsked returns when the extension next asks for an event.
func (cp *controlPlane) waitAsked(t *testing.T, what string) time.Time {
	t.Helper()
	select {
	case at := <-cp.asked:
		return at
	case <-time.After(10 * time.Second):
		t.Fatalf("the extension never asked for the next event %s", what)
		return time.Time{}
	}
}

func (cp *controlPlane) invoke(id string, deadline time.Time) {
	b, _ := json.Marshal(map[string]any{"eventType": "INVOKE", "requestId": id, "deadlineMs": deadline.UnixMilli()})
	cp.events <- string(b)
}

func (cp *controlPlane) shutdown() {
	cp.events <- fmt.Sprintf(`{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":%d}`, time.Now().Add(2*time.Second).UnixMilli())
}

// extension runs the lifecycle against cp with env on top of quiet defaults
// (no telemetry, no spans, normal priority), and returns where it listens
// for events and its stdout; it waits for the extension to ask for its
// first event.
func extension(t *testing.T, cp *controlPlane, env map[string]string) (net.Conn, *syncbuf.Buffer, func() error) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	vars := map[string]string{"AWS_LAMBDA_RUNTIME_API": strings.TrimPrefix(cp.srv.URL, "http://"), "AWS_LAMBDA_FUNCTION_NAME": "f",
		"STREAMLENS_ADDR": addr, "STREAMLENS_TELEMETRY": "off", "STREAMLENS_OTLP": "off", "STREAMLENS_SCHED_IDLE": "off"}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	cfg, cfgErr := config.FromEnv(getenv, "streamlens")
	if cfgErr != nil {
		t.Fatal(cfgErr)
	}
	out := &syncbuf.Buffer{} // stdout, read while the extension writes it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { defer close(done); runErr = Run(ctx, cfg, nil, getenv, out, &syncbuf.Buffer{}) }()
	// stopped waits for Run to return, and says why it did.
	stopped := func() error {
		select {
		case <-done:
			return runErr
		case <-time.After(5 * time.Second):
			return errNotStopped
		}
	}
	t.Cleanup(func() {
		cancel()
		if err := stopped(); errors.Is(err, errNotStopped) {
			t.Error(err)
		}
	})
	cp.waitAsked(t, "after init")
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, out, stopped
}

var errNotStopped = errors.New("the extension did not stop")

// send sends one stream's events for request id: start and chunks, and the
// end when ended.
func send(t *testing.T, conn net.Conn, id string, chunks int, ended bool) {
	t.Helper()
	h := protocol.Header{StreamID: "q-" + id, RequestID: id, TimeNs: time.Now().UnixNano()}
	b := protocol.AppendStart(nil, h, protocol.Start{Expected: int64(chunks)})
	for i := 0; i < chunks; i++ {
		h.Seq++
		b = protocol.AppendChunk(b, h, protocol.Chunk{Instrument: "A" + strconv.Itoa(i), Bytes: 10})
	}
	if ended {
		h.Seq++
		b = protocol.AppendEnd(b, h, protocol.End{Delivered: int64(chunks), Expected: int64(chunks), Bytes: int64(10 * chunks), Status: protocol.StatusComplete})
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// Every stream of the invocation ended: the extension lets it go at once,
// with the stream's document already written — long before the start wait
// or the quiet rule could have let it go (both 10 s here).
func TestWaitEndsWhenEveryStreamEnded(t *testing.T) {
	cp := newControlPlane(t)
	conn, out, _ := extension(t, cp, map[string]string{"STREAMLENS_START_WAIT_MS": "10000"})
	cp.invoke("r1", time.Now().Add(time.Minute))
	send(t, conn, "r1", 3, true)
	cp.waitAsked(t, "after the stream ended")
	if !strings.Contains(out.String(), `"QuoteId":"q-r1"`) {
		t.Errorf("the stream's document was not written before the next event was asked for:\n%s", out.String())
	}
}

// No stream started within the start wait: a non-streaming invocation is let
// go then, not before.
func TestWaitLetsANonStreamingInvocationGoAfterTheStartWait(t *testing.T) {
	cp := newControlPlane(t)
	extension(t, cp, map[string]string{"STREAMLENS_START_WAIT_MS": "100"})
	invoked := time.Now()
	cp.invoke("r1", time.Now().Add(time.Minute))
	if asked := cp.waitAsked(t, "without a stream"); asked.Sub(invoked) < 100*time.Millisecond {
		t.Errorf("let go %v after INVOKE, before the 100 ms start wait", asked.Sub(invoked))
	}
}

// A stream that stays open holds the invocation until the deadline less
// STREAMLENS_DEADLINE_MARGIN_MS, never past the deadline; at SHUTDOWN it is
// written as truncated by the shutdown.
func TestWaitStopsBeforeTheDeadline(t *testing.T) {
	cp := newControlPlane(t)
	conn, out, stopped := extension(t, cp, map[string]string{"STREAMLENS_START_WAIT_MS": "10000", "STREAMLENS_DEADLINE_MARGIN_MS": "100"})
	// deadlineMs is whole milliseconds: the bound is the deadline it says.
	deadline := time.UnixMilli(time.Now().Add(600 * time.Millisecond).UnixMilli())
	cp.invoke("r1", deadline)
	send(t, conn, "r1", 2, false)
	asked := cp.waitAsked(t, "with an open stream")
	if asked.Before(deadline.Add(-100*time.Millisecond)) || !asked.Before(deadline) {
		t.Errorf("asked %v before the deadline: want between the margin (100 ms) and the deadline", deadline.Sub(asked))
	}
	cp.shutdown()
	if err := stopped(); err != nil {
		t.Fatalf("at SHUTDOWN: %v", err)
	}
	if !strings.Contains(out.String(), `"TruncationReason":"shutdown-spindown"`) {
		t.Errorf("the open stream was not written at SHUTDOWN:\n%s", out.String())
	}
}

// A stream that went quiet (its end lost, no telemetry to say the runtime
// finished) lets the invocation go after 5 × the start wait, not at the
// deadline, and is carried to the next boundary.
func TestWaitLetsAQuietStreamGo(t *testing.T) {
	cp := newControlPlane(t)
	conn, out, _ := extension(t, cp, map[string]string{"STREAMLENS_START_WAIT_MS": "40"})
	cp.invoke("r1", time.Now().Add(time.Minute))
	sent := time.Now()
	send(t, conn, "r1", 2, false)
	asked := cp.waitAsked(t, "after the stream went quiet")
	if d := asked.Sub(sent); d < 200*time.Millisecond {
		t.Errorf("let go %v after the last event, before the quiet rule's 200 ms", d)
	}
	if strings.Contains(out.String(), `"QuoteId":"q-r1"`) {
		t.Error("a quiet stream was judged at its own boundary; it is carried to the next")
	}
}

// With the Telemetry API subscribed, runtimeDone will say when the runtime
// finished, and waiting costs nothing until then: a stream silent for longer
// than the quiet rule without telemetry (5 × 40 ms) is a function still at
// work, not a lost end. The invocation is let go when the stream ends, with
// its document written, not at the silence (which left it for the next
// thaw). Then runtimeDone, posted as the platform does, lets an invocation
// whose stream never ends go at once.
func TestWaitWithTelemetryHoldsASilentStreamUntilItsEnd(t *testing.T) {
	cp := newControlPlane(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conn, out, _ := extension(t, cp, map[string]string{"STREAMLENS_START_WAIT_MS": "40", "STREAMLENS_TELEMETRY": "on", "STREAMLENS_TELEMETRY_ADDR": addr})
	cp.invoke("r1", time.Now().Add(time.Minute))
	h := protocol.Header{StreamID: "q-r1", RequestID: "r1", TimeNs: time.Now().UnixNano()}
	if _, err := conn.Write(protocol.AppendStart(nil, h, protocol.Start{Expected: 1})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // twice the quiet rule without telemetry
	h.Seq++
	b := protocol.AppendChunk(nil, h, protocol.Chunk{Instrument: "A", Bytes: 10})
	h.Seq++
	b = protocol.AppendEnd(b, h, protocol.End{Delivered: 1, Expected: 1, Bytes: 10, Status: protocol.StatusComplete})
	ended := time.Now()
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	if asked := cp.waitAsked(t, "after the stream ended"); asked.Before(ended) {
		t.Errorf("let go %v before the stream ended: its document waits for the next thaw", ended.Sub(asked))
	}
	if !strings.Contains(out.String(), `"QuoteId":"q-r1"`) || strings.Contains(out.String(), "TruncationReason") {
		t.Errorf("the stream's document, complete, was not written before the next event was asked for:\n%s", out.String())
	}

	// A stream that never ends: runtimeDone lets its invocation go.
	cp.invoke("r2", time.Now().Add(time.Minute))
	send(t, conn, "r2", 1, false)
	time.Sleep(300 * time.Millisecond)
	done := time.Now()
	batch := fmt.Sprintf(`[{"time":%q,"type":"platform.runtimeDone","record":{"requestId":"r2","status":"success"}}]`, done.UTC().Format(time.RFC3339Nano))
	resp, err := http.Post("http://"+addr+"/", "application/json", strings.NewReader(batch))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if asked := cp.waitAsked(t, "after runtimeDone"); asked.Before(done) {
		t.Errorf("let go %v before runtimeDone", done.Sub(asked))
	}
}

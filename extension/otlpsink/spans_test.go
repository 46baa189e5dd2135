package otlpsink

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
)

func TestParseTraceParent(t *testing.T) {
	sc, ok := parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if !ok || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsSampled() || !sc.IsRemote() {
		t.Errorf("%v %v", sc, ok)
	}
	if sc, ok := parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); !ok || sc.IsSampled() {
		t.Errorf("unsampled: %v %v", sc, ok)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"} {
		if _, ok := parseTraceParent(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseXRay(t *testing.T) {
	sc, ok := parseXRay("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	if !ok || sc.TraceID().String() != "5759e988bd862e3fe1be46a994272793" || sc.SpanID().String() != "53995c3f42cd8ad8" || !sc.IsSampled() {
		t.Errorf("%v %v", sc, ok)
	}
	for _, bad := range []string{"", "Root=1-5759e988-bd862e3fe1be46a994272793", "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
		"Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8"} {
		if _, ok := parseXRay(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func benchSpanner(b *testing.B, endpoint string) {
	sp, err := New(Config{Endpoint: endpoint, MaxEvents: 128, FunctionName: "pricing"},
		func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Shutdown()
	r := state.Result{QuoteID: "q", RequestID: "r", Time: time.Now(), EndTime: time.Now(), Expected: 50, Delivered: 50}
	for i := 0; i < 50; i++ {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: "INST", LatencyMs: float32(i), Seq: uint32(i + 1), Bytes: 190})
	}
	start := time.Now()
	for b.Loop() {
		// The lifecycle gives each export STREAMLENS_OTLP_TIMEOUT_MS (25).
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
		_ = sp.Export(ctx, []state.Result{r})
		cancel()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/flush")
}

// BenchmarkSpanExport: the span export of a 50-chunk stream to a live
// collector, a refused port and a collector that accepts but never answers
// (bounded by the 25 ms OTLP timeout).
func BenchmarkSpanExport(b *testing.B) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer live.Close()
	b.Run("live", func(b *testing.B) { benchSpanner(b, live.URL) })

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	b.Run("refused", func(b *testing.B) { benchSpanner(b, refused) })

	hang, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hang.Close()
	go func() {
		var held []net.Conn
		for {
			c, err := hang.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	b.Run("hanging", func(b *testing.B) { benchSpanner(b, "http://"+hang.Addr().String()) })
}

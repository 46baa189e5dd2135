package e2e

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/streamlens/streamlens/internal/otlpbody"
	"github.com/streamlens/streamlens/internal/sandbox"
	"github.com/streamlens/streamlens/internal/streamtest"
)

// span is what the receiver decoded from real OTLP protobuf.
type span struct {
	name, traceID, spanID, parentID string
	attrs, resource                 map[string]any
	events                          []spanEvent
	droppedEvents                   uint32
	status                          ptrace.StatusCode
	message                         string
	start, end                      time.Time
}

type spanEvent struct {
	name  string
	attrs map[string]any
}

// otlpReceiver is an OTLP/HTTP endpoint that decodes requests with the
// collector's pdata, as a collector would.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []span
	headers []http.Header
	url     string
}

func newReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP request %s %s (%s)", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
		}
		body, err := otlpbody.Read(req, 16<<20)
		if err != nil {
			t.Errorf("OTLP request: %v", err)
		}
		r.mu.Lock()
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		er := ptraceotlp.NewExportRequest()
		if err := er.UnmarshalProto(body); err != nil {
			t.Errorf("not OTLP protobuf: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(er.Traces())
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *otlpReceiver) add(td ptrace.Traces) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		res := rs.Resource().Attributes().AsRaw()
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			ss := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				s := ss.At(k)
				d := span{name: s.Name(), traceID: s.TraceID().String(), spanID: s.SpanID().String(), parentID: s.ParentSpanID().String(),
					attrs: s.Attributes().AsRaw(), resource: res, status: s.Status().Code(), message: s.Status().Message(),
					droppedEvents: s.DroppedEventsCount(), start: s.StartTimestamp().AsTime(), end: s.EndTimestamp().AsTime()}
				for e := 0; e < s.Events().Len(); e++ {
					ev := s.Events().At(e)
					d.events = append(d.events, spanEvent{ev.Name(), ev.Attributes().AsRaw()})
				}
				r.spans = append(r.spans, d)
			}
		}
	}
}

// one returns the single span of the one invocation e made. None may leave
// before the invocation ends (span export is off the path to /event/next);
// the SHUTDOWN that follows sends it.
func (r *otlpReceiver) one(t *testing.T, e *env) span {
	t.Helper()
	if n := len(r.all()); n != 0 {
		t.Fatalf("%d spans exported on the path to next, want 0", n)
	}
	e.sb.Close()
	all := r.wait(t, 1)
	if len(all) != 1 {
		t.Fatalf("%d spans exported, want 1", len(all))
	}
	return all[0]
}

// wait returns the spans received once there are at least n, or after 5 s.
func (r *otlpReceiver) wait(t *testing.T, n int) []span {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if all := r.all(); len(all) >= n {
			return all
		}
	}
	return r.all()
}

func (r *otlpReceiver) all() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

// withOTLP sends spans to url, every stream's (healthy ones too: ratio 1).
func withOTLP(url string, extra ...string) func(*sandbox.Config) {
	return func(c *sandbox.Config) {
		// A budget a loaded test host meets (the default 25 ms is for a
		// collector next door on an idle core); a test about the budget
		// sets its own, after this one, which wins.
		c.Env = append(c.Env, append([]string{"STREAMLENS_OTLP=on", "STREAMLENS_OTLP_ENDPOINT=" + url, "STREAMLENS_TRACES_SAMPLE_RATIO=1",
			"STREAMLENS_OTLP_TIMEOUT_MS=2000"}, extra...)...)
	}
}

func countEvents(s span, name string) int {
	n := 0
	for _, e := range s.events {
		if e.name == name {
			n++
		}
	}
	return n
}

func TestSpanJoinsTheCallersTrace(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, withOTLP(rcv.url))
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	res, _ := e.invokeWith(t, "instruments=50&bundle=EQ-EU-50", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01"})
	emf := e.onlyStream(t)
	s := rcv.one(t, e)
	// The pricing function makes no span of its own: the caller's
	// traceparent, extracted from the request, is the parent, and the
	// stream's span is the invocation's server span, named after the
	// function.
	if s.traceID != tid || s.parentID != sid || s.name != "pricing" || s.attrs["faas.trigger"] != "http" {
		t.Errorf("span %s trace %s parent %s faas.trigger %v", s.name, s.traceID, s.parentID, s.attrs["faas.trigger"])
	}
	for k, want := range map[string]any{
		"faas.invocation_id": res.RequestID, "streamlens.quote_id": emf.str("QuoteId"), "streamlens.bundle_id": "EQ-EU-50",
		"streamlens.chunks.delivered": int64(50), "streamlens.chunks.expected": int64(50), "streamlens.truncated": false,
		"streamlens.status": "complete", "streamlens.parent": "caller", "faas.coldstart": true, "aws.lambda.invoked_arn": "arn:aws:lambda:us-east-1:123456789012:function:pricing",
	} {
		if s.attrs[k] != want {
			t.Errorf("attribute %s = %v (%T), want %v", k, s.attrs[k], s.attrs[k], want)
		}
	}
	for k, want := range map[string]any{"cloud.provider": "aws", "cloud.platform": "aws_lambda", "faas.name": "pricing", "service.name": "pricing"} {
		if s.resource[k] != want {
			t.Errorf("resource %s = %v", k, s.resource[k])
		}
	}
	if countEvents(s, "chunk") != 50 || countEvents(s, "first_useful_byte") != 1 {
		t.Errorf("%d chunk events, %d first_useful_byte", countEvents(s, "chunk"), countEvents(s, "first_useful_byte"))
	}
	for _, ev := range s.events {
		if ev.name == "chunk" {
			if ev.attrs["streamlens.instrument"] != "SPY" || ev.attrs["streamlens.seq"] != int64(1) {
				t.Errorf("first chunk event %v: want the most liquid instrument at seq 1", ev.attrs)
			}
			break
		}
	}
	if s.status != ptrace.StatusCodeUnset {
		t.Errorf("status %v on a complete stream", s.status)
	}
}

// The spans of one invocation are exported while the environment is thawed
// for the next one (after its first chunk), not on the path to next.
func TestSpansGoOutDuringTheNextInvocation(t *testing.T) {
	rcv := newReceiver(t)
	// A budget well over the thawed time: what is tested is when the export
	// runs, not how fast. An extension under SCHED_IDLE on a host where the
	// sandbox cannot give the environment a CPU group of its own waits for
	// every busy process of the machine, and its export may need a second
	// thaw; it must never need the path to next.
	e := start(t, withOTLP(rcv.url, "STREAMLENS_OTLP_TIMEOUT_MS=5000"))
	first, _ := e.invoke(t, "instruments=5")
	if n := len(rcv.all()); n != 0 {
		t.Fatalf("%d spans exported on the path to next, want 0", n)
	}
	e.invoke(t, "instruments=50&delay_ms=1") // ~50 ms thawed, its first chunk at once
	for i := 0; i < 5 && len(rcv.all()) == 0; i++ {
		t.Logf("no span after invocation %d: one more thaw", i+2)
		e.invoke(t, "instruments=50&delay_ms=1")
	}
	spans := rcv.all()
	if len(spans) == 0 || spans[0].attrs["faas.invocation_id"] != first.RequestID {
		t.Fatalf("after the later invocations: %d spans, want the first invocation's first", len(spans))
	}
}

func TestSpanParentFromXRayWithoutTraceparent(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, withOTLP(rcv.url))
	res, _ := e.invoke(t, "instruments=3")
	s := rcv.one(t, e)
	// Root=1-<8 hex>-<24 hex>;Parent=<16 hex>
	root := strings.TrimPrefix(strings.Split(res.TraceHeader, ";")[0], "Root=1-")
	parent := strings.TrimPrefix(strings.Split(res.TraceHeader, ";")[1], "Parent=")
	if s.traceID != strings.ReplaceAll(root, "-", "") || s.parentID != parent || s.attrs["streamlens.parent"] != "xray" {
		t.Errorf("trace %s parent %s (%v) from %s", s.traceID, s.parentID, s.attrs["streamlens.parent"], res.TraceHeader)
	}
}

func TestTruncatedSpanIsAnError(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, withOTLP(rcv.url))
	e.invoke(t, "instruments=50&fail_after=20")
	s := rcv.one(t, e)
	if s.status != ptrace.StatusCodeError || !strings.Contains(s.message, "status-error") || s.attrs["streamlens.truncated"] != true {
		t.Errorf("status %v %q truncated %v", s.status, s.message, s.attrs["streamlens.truncated"])
	}
	if countEvents(s, "chunk") != 20 {
		t.Errorf("%d chunk events", countEvents(s, "chunk"))
	}
}

func TestSpanEventLimit(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, withOTLP(rcv.url, "STREAMLENS_SPAN_MAX_EVENTS=100", "STREAMLENS_OTLP_TIMEOUT_MS=3000"))
	e.invoke(t, "instruments=300&delay_ms=0")
	s := rcv.one(t, e)
	if countEvents(s, "chunk") != 100 || s.droppedEvents != 200 {
		t.Errorf("%d chunk events, %v dropped", countEvents(s, "chunk"), s.droppedEvents)
	}
}

// A collector that is down (connection refused) or hangs (accepts, never
// answers): invocations go on, metrics are all there, the failed exports are
// counted. The bound on the delay is STREAMLENS_OTLP_TIMEOUT_MS, measured in
// `make bench`, not asserted here.
func TestDeadCollector(t *testing.T) {
	hanging := streamtest.HangingCollector(t)
	closed := "http://127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	for name, url := range map[string]string{"refused": closed, "hanging": hanging} {
		t.Run(name, func(t *testing.T) {
			e := start(t, withOTLP(url, "STREAMLENS_OTLP_TIMEOUT_MS=20"))
			for i := 0; i < 3; i++ {
				if res, _ := e.invoke(t, "instruments=10"); res.Status != "success" {
					t.Fatalf("invocation %d: %+v", i, res)
				}
			}
			e.sb.Close()
			ds := e.log.waitDocs(t, "3 streams", func(ds []doc) bool { return len(streamDocs(ds)) == 3 })
			// A refused export failed; one the budget cut while the
			// collector hung has no known outcome (the collector may have
			// taken the spans): counted apart, never as taken.
			key := map[string]string{"refused": "SpanExportFailures", "hanging": "SpanExportUnknown"}[name]
			if n := sumKey(ds, key); n < 3 {
				t.Errorf("%v spans counted as %s, want 3", n, key)
			}
		})
	}
}

// In Lambda's default tracing mode (PassThrough: the X-Ray header says
// Sampled=0) and under a function's unsampled traceparent, failed streams
// are still exported; healthy ones follow the sampler (ratio 0 here), and
// both decisions are counted as metrics.
func TestDefaultTracingModeKeepsFailedStreams(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, func(c *sandbox.Config) {
		c.Env = append(c.Env, "STREAMLENS_OTLP=on", "STREAMLENS_OTLP_ENDPOINT="+rcv.url, "STREAMLENS_TRACES_SAMPLE_RATIO=0", "STREAMLENS_OTLP_TIMEOUT_MS=2000")
	})
	e.invoke(t, "instruments=5")
	e.invoke(t, "instruments=50&fail_after=20")
	e.invokeWith(t, "instruments=50&fail_after=10", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
	e.sb.Close()
	spans := rcv.wait(t, 2)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the 2 truncated streams'", len(spans))
	}
	for _, s := range spans {
		if s.attrs["streamlens.truncated"] != true || s.attrs["streamlens.sampling.reason"] != "failed" {
			t.Errorf("span %v", s.attrs)
		}
	}
	ds := e.log.waitDocs(t, "the sampling counts", func(ds []doc) bool { return sumKey(ds, "SpansKeptFailed") == 2 })
	if sumKey(ds, "SpansSampledOut") != 1 || sumKey(ds, "SpansSampled") != 0 {
		t.Errorf("sampled out %v, sampled %v", sumKey(ds, "SpansSampledOut"), sumKey(ds, "SpansSampled"))
	}
}

// A timed-out stream's span ends when the platform ended the invocation: the
// caller waited for the whole timeout, not just until the last chunk.
func TestTimedOutSpanLastsUntilTheTimeout(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, func(c *sandbox.Config) {
		c.Timeout = time.Second
		withOTLP(rcv.url)(c)
	})
	if res, _ := e.invoke(t, "instruments=50&hang_after=10"); res.Status != "timeout" {
		t.Fatalf("status %q", res.Status)
	}
	e.sb.Close() // a timeout resets the environment: its SHUTDOWN may have sent the span already
	spans := rcv.wait(t, 1)
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	var last time.Duration
	for _, ev := range s.events {
		if off, ok := ev.attrs["streamlens.offset_ms"].(float64); ok {
			last = max(last, time.Duration(off*float64(time.Millisecond)))
		}
	}
	// The span starts when the handler started, a little after the
	// invocation, and ends when the platform saw the timeout, a little after
	// the deadline: about 1 s, not the ~20 ms to the last chunk.
	if d := s.end.Sub(s.start); d < 900*time.Millisecond || d > 1100*time.Millisecond || last > 500*time.Millisecond {
		t.Errorf("span lasts %v, last chunk at %v; the timeout is 1s", d, last)
	}
}

// The standard OTEL_* variables reach the collector: endpoint, headers,
// gzip, service name, sampler.
func TestOTelVariablesReachTheCollector(t *testing.T) {
	rcv := newReceiver(t)
	e := start(t, func(c *sandbox.Config) {
		c.Env = append(c.Env, "OTEL_SDK_DISABLED=false", "OTEL_EXPORTER_OTLP_TIMEOUT=2000", "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.url, "OTEL_EXPORTER_OTLP_HEADERS=x-api-key=abc%2F123",
			"OTEL_EXPORTER_OTLP_COMPRESSION=gzip", "OTEL_SERVICE_NAME=pricing-svc", "OTEL_TRACES_SAMPLER=always_on",
			// Meant for the function's own SDK spans: they must not cut the
			// extension's attributes and events.
			"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2", "OTEL_SPAN_EVENT_COUNT_LIMIT=1")
	})
	e.invoke(t, "instruments=5")
	s := rcv.one(t, e)
	if s.resource["service.name"] != "pricing-svc" || s.resource["faas.name"] != "pricing" || s.resource["faas.instance"] == nil ||
		s.resource["cloud.resource_id"] != "arn:aws:lambda:us-east-1:123456789012:function:pricing:$LATEST" || s.resource["faas.max_memory"] != int64(128<<20) ||
		len(s.attrs) < 10 || countEvents(s, "chunk") != 5 {
		t.Errorf("resource %v", s.resource)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if h := rcv.headers[0]; h.Get("x-api-key") != "abc/123" || h.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(h.Get("User-Agent"), "streamlens/") {
		t.Errorf("headers %v", h)
	}
}

// SHUTDOWN's export gets what is left of the shutdown budget, not the
// export timeout: with a collector that never answers and a 10 s timeout,
// the export is cut at the budget and its loss is still written before the
// extension exits (2 s budget).
func TestShutdownExportStaysWithinItsBudget(t *testing.T) {
	hanging := streamtest.HangingCollector(t)
	e := start(t, withOTLP(hanging, "STREAMLENS_OTLP_TIMEOUT_MS=10000"))
	e.invoke(t, "instruments=5")
	e.sb.Close()
	ds := e.log.docs(t)
	if sumKey(ds, "SpanExportUnknown") != 1 {
		t.Errorf("SpanExportUnknown %v, want the one span cut at the shutdown budget", sumKey(ds, "SpanExportUnknown"))
	}
	// The metrics went out before the export ate the budget: the
	// per-instrument documents of the 5 instruments are all there.
	instruments := map[string]bool{}
	for _, d := range ds {
		if in := d.str("Instrument"); in != "" {
			instruments[in] = true
		}
	}
	if len(instruments) != 5 {
		t.Errorf("per-instrument documents of %d instruments, want 5", len(instruments))
	}
}

func freeTCPPort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var _ = pcommon.NewMap

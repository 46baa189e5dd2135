package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/streamlens/streamlens/internal/probe"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// A real OpenTelemetry Collector (testdata/otelcol: the upstream otelcol,
// its OTLP receiver and the contrib file exporter, a module of its own),
// built once per run into the test's build directory. The Go build cache
// keeps its compiled packages between runs: only the first build on a
// machine compiles the collector.
var otelcolBin struct {
	once      sync.Once
	path      string
	skip, err string
}

func buildOtelcol(t *testing.T) string {
	t.Helper()
	otelcolBin.once.Do(func() {
		src, err := filepath.Abs(filepath.Join("testdata", "otelcol"))
		if err != nil {
			otelcolBin.err = err.Error()
			return
		}
		otelcolBin.path = filepath.Join(filepath.Dir(bins.function), "otelcol")
		cmd := exec.Command("go", "build", "-o", otelcolBin.path, ".")
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		// A registry that refuses the collector's modules is no failure of
		// streamlens, and is said as what it is; a collector that does not
		// compile from modules that were had is one of this test.
		dl := exec.Command("go", "mod", "download")
		dl.Dir = src
		if dlOut, dlErr := dl.CombinedOutput(); dlErr != nil {
			otelcolBin.skip = fmt.Sprintf("its modules could not be had (go mod download in %s: %v):\n%s", src, dlErr, dlOut)
			return
		}
		otelcolBin.err = fmt.Sprintf("go build %s: %v\n%s", src, err, out)
	})
	if otelcolBin.skip != "" {
		t.Skip("SKIPPED LOUDLY: no real OpenTelemetry Collector to check the trace with: " + otelcolBin.skip)
	}
	if otelcolBin.err != "" {
		t.Fatal(otelcolBin.err)
	}
	return otelcolBin.path
}

// collector is a running real collector: OTLP/gRPC and OTLP/HTTP on ports
// of the test's own (never 4317 and 4318), everything it receives written to
// out as OTLP JSON, one export a line.
type collector struct {
	grpcURL, httpURL string
	out              string
	log              *logBuf
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	bin := buildOtelcol(t)
	dir := t.TempDir()
	gport, hport := freeTCPPort(t), freeTCPPort(t)
	for hport == gport {
		hport = freeTCPPort(t)
	}
	c := &collector{
		grpcURL: "http://127.0.0.1:" + strconv.Itoa(gport), httpURL: "http://127.0.0.1:" + strconv.Itoa(hport),
		out: filepath.Join(dir, "traces.jsonl"), log: &logBuf{},
	}
	// Its own metrics are off: they would listen on localhost:8888.
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file:
    path: %s
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`, gport, hport, c.out)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("collector's log:\n%s", c.log.String())
		}
	})
	// Ready when both receivers accept connections. A deadline, not a
	// measurement: a collector that never listens fails here, not later.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("the collector exited at start:\n%s", c.log.String())
		default:
		}
		if dialable(gport) && dialable(hport) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector does not listen on %d and %d:\n%s", gport, hport, c.log.String())
		}
	}
}

func dialable(port int) bool {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// cspan is one span as the collector wrote it.
type cspan struct {
	ptrace.Span
	resource  map[string]any
	schemaURL string
}

// spans reads the collector's file: every complete line is one export, in
// OTLP JSON, decoded with the collector's own pdata.
func (c *collector) spans(t *testing.T) []cspan {
	t.Helper()
	b, err := os.ReadFile(c.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// A line without its newline is still being written: read next time.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out []cspan
	var u ptrace.JSONUnmarshaler
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		td, err := u.UnmarshalTraces(line)
		if err != nil {
			t.Fatalf("the collector wrote what is not OTLP JSON: %v: %s", err, line)
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			res := rs.Resource().Attributes().AsRaw()
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j)
				for k := 0; k < ss.Spans().Len(); k++ {
					out = append(out, cspan{Span: ss.Spans().At(k), resource: res, schemaURL: ss.SchemaUrl()})
				}
			}
		}
	}
	return out
}

// waitSpans returns the collector's spans once pred holds of them (a bound,
// not a measurement: the exports were answered before this is called).
func (c *collector) waitSpans(t *testing.T, what string, pred func([]cspan) bool) []cspan {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s := c.spans(t); pred(s) {
			return s
		}
	}
	s := c.spans(t)
	if !pred(s) {
		for _, x := range s {
			t.Logf("span %q kind %v trace %s id %s parent %s", x.Name(), x.Kind(), x.TraceID(), x.SpanID(), x.ParentSpanID())
		}
		t.Fatalf("the collector wrote %d spans, not %s", len(s), what)
	}
	return s
}

func attr(s cspan, k string) any {
	v, ok := s.Attributes().Get(k)
	if !ok {
		return nil
	}
	return v.AsRaw()
}

// eventTimes returns the times of s's events named name, by their
// streamlens.seq.
func eventTimes(s cspan, name string) map[int64]time.Time {
	out := map[int64]time.Time{}
	for i := 0; i < s.Events().Len(); i++ {
		ev := s.Events().At(i)
		if ev.Name() != name {
			continue
		}
		seq, ok := ev.Attributes().Get("streamlens.seq")
		if !ok {
			continue
		}
		out[seq.Int()] = ev.Timestamp().AsTime()
	}
	return out
}

func traceIDOf(tp string) string {
	if p := strings.Split(tp, "-"); len(p) == 4 {
		return p[1]
	}
	return ""
}

func spanIDOf(tp string) string {
	if p := strings.Split(tp, "-"); len(p) == 4 {
		return p[2]
	}
	return ""
}

// One trace end to end, through a real OpenTelemetry Collector (issue 28):
// the extension exports over OTLP/gRPC, the probe its CLIENT span over
// OTLP/HTTP, and the collector's own file exporter says what arrived.
//
// The pricing function opens no span of its own: it extracts the caller's
// traceparent from the request and hands that context to the stream. The
// client sends it as the caller's (tpr=1: the span context is remote), so
// the stream's span is the invocation's SERVER span, named after the
// function with faas.trigger=http, a child of the probe's CLIENT span,
// with the chunk events. An invocation without a traceparent gets the same
// SERVER span in a trace of its own, also checked here.
func TestOneTraceThroughARealCollector(t *testing.T) {
	col, e, srv, exp := traced(t)
	ctx := context.Background()
	ok, err := probe.Run(ctx, probe.Config{URL: srv.URL + "/?instruments=10&delay_ms=2"})
	if err != nil || ok.Truncated || len(ok.Chunks) != 11 {
		t.Fatalf("complete stream: %v %+v", err, ok)
	}
	failed, err := probe.Run(ctx, probe.Config{URL: srv.URL + "/?instruments=10&delay_ms=2&fail_after=3"})
	if err != nil || !failed.Truncated {
		t.Fatalf("a stream cut after 3 quotes: %v %+v", err, failed)
	}
	for _, r := range []probe.Result{ok, failed} {
		if err := exp.Export(ctx, r, "e2e"); err != nil {
			t.Fatalf("the collector refused the probe's span: %v", err)
		}
	}
	// No traceparent: the extension's span is the invocation's server span.
	e.invoke(t, "instruments=5")
	e.sb.Close() // the extension's SHUTDOWN exports what is left
	ds := e.log.docs(t)
	if sumKey(ds, "ConfigErrors") != 0 || sumKey(ds, "SpanExportFailures") != 0 || sumKey(ds, "SpanExportUnknown") != 0 {
		t.Errorf("ConfigErrors %v, SpanExportFailures %v, SpanExportUnknown %v: the collector did not take every span over gRPC",
			sumKey(ds, "ConfigErrors"), sumKey(ds, "SpanExportFailures"), sumKey(ds, "SpanExportUnknown"))
	}

	byTrace := func(all []cspan, tid string) (client, fn []cspan) {
		for _, s := range all {
			if s.TraceID().String() != tid {
				continue
			}
			if s.resource["service.name"] == "pricing-caller" {
				client = append(client, s)
			} else {
				fn = append(fn, s)
			}
		}
		return client, fn
	}
	all := col.waitSpans(t, "the 2 probe spans and the extension's 3", func(all []cspan) bool {
		n := 0
		for _, r := range []probe.Result{ok, failed} {
			if c, f := byTrace(all, traceIDOf(r.TraceParent)); len(c) == 1 && len(f) == 1 {
				n++
			}
		}
		return n == 2 && len(all) == 5
	})

	check := func(name string, r probe.Result, serverChunks int) (client, stream cspan) {
		cs, fs := byTrace(all, traceIDOf(r.TraceParent))
		client, stream = cs[0], fs[0]
		// The caller's side: the probe's CLIENT span, with the ids of the
		// traceparent it sent, one chunk_received event a line received.
		if client.Kind() != ptrace.SpanKindClient || client.Name() != "GET" || client.SpanID().String() != spanIDOf(r.TraceParent) ||
			!client.ParentSpanID().IsEmpty() {
			t.Errorf("%s: client span %q kind %v id %s parent %s, traceparent sent %s", name, client.Name(), client.Kind(),
				client.SpanID(), client.ParentSpanID(), r.TraceParent)
		}
		received := eventTimes(client, "chunk_received")
		if len(received) != len(r.Chunks) {
			t.Errorf("%s: %d chunk_received events, the probe received %d chunks", name, len(received), len(r.Chunks))
		}
		// The function's side: the invocation's SERVER span, named after
		// the function, joined the caller's trace as a child of the CLIENT
		// span, from the function's resource.
		if stream.Kind() != ptrace.SpanKindServer || stream.Name() != "pricing" || stream.ParentSpanID() != client.SpanID() ||
			attr(stream, "faas.trigger") != "http" {
			t.Errorf("%s: function's span %q kind %v parent %s faas.trigger %v, want SERVER \"pricing\" under the client span %s",
				name, stream.Name(), stream.Kind(), stream.ParentSpanID(), attr(stream, "faas.trigger"), client.SpanID())
		}
		for k, want := range map[string]any{"faas.name": "pricing", "service.name": "pricing", "cloud.provider": "aws", "cloud.platform": "aws_lambda"} {
			if stream.resource[k] != want {
				t.Errorf("%s: function's resource %s = %v, want %v", name, k, stream.resource[k], want)
			}
		}
		if id, _ := attr(stream, "faas.invocation_id").(string); id == "" || attr(stream, "streamlens.parent") != "caller" {
			t.Errorf("%s: faas.invocation_id %v, streamlens.parent %v", name, attr(stream, "faas.invocation_id"), attr(stream, "streamlens.parent"))
		}
		// Both sides follow one version of the conventions.
		if client.schemaURL == "" || client.schemaURL != stream.schemaURL {
			t.Errorf("%s: schema %q on the client span, %q on the function's", name, client.schemaURL, stream.schemaURL)
		}
		sent := eventTimes(stream, "chunk")
		if len(sent) != serverChunks {
			t.Errorf("%s: %d chunk events on the stream span, want %d", name, len(sent), serverChunks)
		}
		// What happened before what, on one machine's clock: the request
		// was sent before the handler started, the stream started before
		// its first chunk reached the caller, and the caller received line
		// k after the function had written line k-1 (it writes line k
		// only then). Whether line k arrived after the function's own
		// time for it is a race between the writer's clock read and the
		// bytes' journey, so it is counted, not asserted.
		if !client.StartTimestamp().AsTime().Before(stream.StartTimestamp().AsTime()) {
			t.Errorf("%s: client span starts at %v, the function's at %v", name, client.StartTimestamp().AsTime(), stream.StartTimestamp().AsTime())
		}
		if first, ok := received[1]; !ok || !first.After(stream.StartTimestamp().AsTime()) {
			t.Errorf("%s: first chunk received at %v, the stream started at %v", name, first, stream.StartTimestamp().AsTime())
		}
		after, lead := 0, time.Duration(0)
		for seq, at := range sent {
			rcv, ok := received[seq]
			if !ok {
				t.Errorf("%s: the function sent chunk %d, the caller has no chunk_received for it", name, seq)
				continue
			}
			if !rcv.Before(at) {
				after++
			} else {
				lead = max(lead, at.Sub(rcv))
			}
			if next, ok := received[seq+1]; ok && !next.After(at) {
				t.Errorf("%s: chunk %d received at %v, not after the function wrote chunk %d at %v", name, seq+1, next, seq, at)
			}
		}
		t.Logf("figure: %s: %d of %d chunks received at or after the function's time for them (the others at most %v before it)",
			name, after, len(sent), lead)
		return client, stream
	}

	_, stream := check("complete", ok, 10)
	if attr(stream, "error.type") != nil || stream.Status().Code() != ptrace.StatusCodeUnset {
		t.Errorf("complete stream: error.type %v, status %v", attr(stream, "error.type"), stream.Status().Code())
	}
	client, stream := check("failed", failed, 3)
	if et, _ := attr(stream, "error.type").(string); et == "" || et != attr(stream, "streamlens.truncation_reason") ||
		stream.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("failed stream: error.type %v (truncation reason %v), status %v", attr(stream, "error.type"),
			attr(stream, "streamlens.truncation_reason"), stream.Status().Code())
	}
	if et, _ := attr(client, "error.type").(string); et == "" || client.Status().Code() != ptrace.StatusCodeError {
		t.Errorf("failed stream, the caller's side: error.type %v, status %v", attr(client, "error.type"), client.Status().Code())
	}

	// The invocation without a traceparent: its span is the SERVER span,
	// named after the function, as the FaaS conventions say.
	var server []cspan
	for _, s := range all {
		if s.TraceID().String() != traceIDOf(ok.TraceParent) && s.TraceID().String() != traceIDOf(failed.TraceParent) {
			server = append(server, s)
		}
	}
	if len(server) != 1 {
		t.Fatalf("%d spans of the invocation without a traceparent, want 1", len(server))
	}
	s := server[0]
	if s.Kind() != ptrace.SpanKindServer || s.Name() != "pricing" || attr(s, "faas.trigger") != "http" || s.resource["faas.name"] != "pricing" ||
		len(eventTimes(s, "chunk")) != 5 {
		t.Errorf("server span %q kind %v faas.trigger %v faas.name %v, %d chunk events", s.Name(), s.Kind(), attr(s, "faas.trigger"),
			s.resource["faas.name"], len(eventTimes(s, "chunk")))
	}
}

// A caller that goes away at chunk 10 of 40 (issue 28). Lambda does not
// stop an invocation whose caller left, and bills it in full; neither the
// function nor the extension is told. One trace shows what followed: the
// probe's caller_left event, then the function's SERVER span going on to
// its 40th chunk. The span's end minus the caller's leaving is the compute
// spent for nobody, and the function's memory (faas.max_memory) makes it
// GB-seconds.
func TestCallerWhoLeftShowsTheComputeThatFollowed(t *testing.T) {
	col, e, srv, exp := traced(t)
	ctx := context.Background()
	r, err := probe.Run(ctx, probe.Config{URL: srv.URL + "/?instruments=40&delay_ms=5", LeaveAfter: 10})
	if err != nil || r.Left == 0 || len(r.Chunks) != 10 || !r.Truncated {
		t.Fatalf("a caller leaving after 10 chunks: %v %+v", err, r)
	}
	if err := exp.Export(ctx, r, "e2e"); err != nil {
		t.Fatalf("the collector refused the probe's span: %v", err)
	}
	// The function went on: its stream ends complete, 40 quotes, whatever
	// the caller did.
	if s := e.onlyStream(t); s.num("ChunksDelivered") != 40 || s.num("StreamTruncated") != 0 {
		t.Errorf("the function after its caller left: delivered %v truncated %v", s["ChunksDelivered"], s["StreamTruncated"])
	}
	e.sb.Close() // the extension's SHUTDOWN exports its span
	tid := traceIDOf(r.TraceParent)
	var client, fn cspan
	col.waitSpans(t, "the probe's span and the function's", func(all []cspan) bool {
		n := 0
		for _, s := range all {
			if s.TraceID().String() != tid {
				continue
			}
			n++
			if s.resource["service.name"] == "pricing-caller" {
				client = s
			} else {
				fn = s
			}
		}
		return n == 2 && client.Span != (ptrace.Span{}) && fn.Span != (ptrace.Span{})
	})
	var left time.Time
	for i := 0; i < client.Events().Len(); i++ {
		if ev := client.Events().At(i); ev.Name() == "caller_left" {
			left = ev.Timestamp().AsTime()
		}
	}
	chunks := eventTimes(fn, "chunk")
	after := 0
	for _, at := range chunks {
		if at.After(left) {
			after++
		}
	}
	end := fn.EndTimestamp().AsTime()
	if left.IsZero() || fn.ParentSpanID() != client.SpanID() || len(chunks) != 40 || after < 20 || !end.After(left) {
		t.Fatalf("caller_left %v, the function's span (parent %s, the client %s) ends %v with %d chunks, %d after the caller left",
			left, fn.ParentSpanID(), client.SpanID(), end, len(chunks), after)
	}
	mem, _ := fn.resource["faas.max_memory"].(int64)
	wasted := end.Sub(left)
	t.Logf("figure: compute after the caller left: %v, %d of 40 chunks, %.6f GB-s at %d MB",
		wasted, after, wasted.Seconds()*float64(mem)/(1<<30), mem>>20)
}

// traced starts a real collector, the pricing function exporting its spans
// to it over OTLP/gRPC, the function's URL, and the probe's exporter to the
// collector's OTLP/HTTP port (the caller's service, pricing-caller).
func traced(t *testing.T) (*collector, *env, *httptest.Server, *probe.OTLP) {
	t.Helper()
	col := startCollector(t)
	e := start(t, func(c *sandbox.Config) {
		c.Env = append(c.Env, "OTEL_SDK_DISABLED=false", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT="+col.grpcURL,
			"OTEL_TRACES_SAMPLER=always_on", "OTEL_EXPORTER_OTLP_TIMEOUT=2000")
	})
	srv := httptest.NewServer(e.sb.URLHandler())
	t.Cleanup(srv.Close)
	probeEnv := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.httpURL, "OTEL_SERVICE_NAME": "pricing-caller"}
	exp, err := probe.OTLPFromEnv(func(k string) string { return probeEnv[k] })
	if err != nil || exp == nil {
		t.Fatalf("the probe's exporter: %v", err)
	}
	return col, e, srv, exp
}

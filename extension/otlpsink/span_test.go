package otlpsink

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/otlpbody"
	"github.com/streamlens/streamlens/internal/streamtest"
	"github.com/streamlens/streamlens/internal/version"
)

func TestParseTraceParent(t *testing.T) {
	p, ok := parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if !ok || hex.EncodeToString(p.traceID[:]) != "4bf92f3577b34da6a3ce929d0e0e4736" || hex.EncodeToString(p.spanID[:]) != "00f067aa0ba902b7" ||
		!p.sampled || !p.decided || p.kind != traceParent {
		t.Errorf("%+v %v", p, ok)
	}
	if p, ok := parseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); !ok || p.sampled || !p.decided {
		t.Errorf("unsampled: %+v %v", p, ok)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"} {
		if _, ok := parseTraceParent(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseXRay(t *testing.T) {
	p, ok := parseXRay("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	if !ok || hex.EncodeToString(p.traceID[:]) != "5759e988bd862e3fe1be46a994272793" || hex.EncodeToString(p.spanID[:]) != "53995c3f42cd8ad8" ||
		!p.sampled || !p.decided || p.kind != xrayParent {
		t.Errorf("%+v %v", p, ok)
	}
	// PassThrough mode's Sampled=0 is nobody's decision.
	if p, ok := parseXRay("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"); !ok || p.decided {
		t.Errorf("Sampled=0 taken as a decision: %+v", p)
	}
	for _, bad := range []string{"", "Root=1-5759e988-bd862e3fe1be46a994272793", "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
		"Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8"} {
		if _, ok := parseXRay(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

const (
	xrayUnsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
	tpUnsampled   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	tpSampled     = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

// defaultSampler is the sampler with nothing configured.
var defaultSampler = config.Sampler{ParentBased: true, Ratio: 0.1, KeepFailed: true}

func newExporter(t testing.TB, o config.OTLP, env map[string]string) *Exporter {
	t.Helper()
	e, err := New(Config{OTLP: o, FunctionName: "pricing", MaxEvents: 3, TTFBThreshold: 100 * time.Millisecond},
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func healthy() state.Result {
	t0 := time.Unix(1_700_000_000, 0)
	return state.Result{QuoteID: "q", RequestID: "r", Time: t0, EndTime: t0.Add(30 * time.Millisecond), Expected: 2, Delivered: 2,
		Status: "complete", Integrity: 0, HasTTFB: true, TTFBMs: 12, PlatformLatencyMs: -1}
}

// The sampler keeps every failed stream, whatever it says of healthy ones
// and whatever the parent decided; healthy streams follow a deciding parent
// (a traceparent's flag, X-Ray's Sampled=1), else the ratio.
func TestDecide(t *testing.T) {
	never := newExporter(t, config.OTLP{Sampler: config.Sampler{ParentBased: true, Ratio: 0, KeepFailed: true}}, nil)
	failed := map[string]func(*state.Result){
		"truncated": func(r *state.Result) {
			r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}
		},
		"integrity":         func(r *state.Result) { r.Integrity = 1 },
		"invocation failed": func(r *state.Result) { r.InvocationStatus = "error" },
		"TTFB over":         func(r *state.Result) { r.TTFBMs = 101 },
		"unsampled parent": func(r *state.Result) {
			r.TraceParent = tpUnsampled
			r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}
		},
		"X-Ray Sampled=0": func(r *state.Result) {
			r.XRayTrace = xrayUnsampled
			r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}
		},
		"truncated, no TTFB": func(r *state.Result) {
			r.HasTTFB = false
			r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.BeforeFirstByte}
		},
	}
	for name, f := range failed {
		r := healthy()
		f(&r)
		if d := never.Decide(&r); d != KeptFailed {
			t.Errorf("%s: %v", name, d)
		}
	}
	r := healthy()
	if d := never.Decide(&r); d != SampledOut {
		t.Errorf("healthy at ratio 0: %v", d)
	}
	r.TraceParent = tpSampled
	if d := never.Decide(&r); d != KeptByParent {
		t.Errorf("sampled parent: %v", d)
	}
	r.TraceParent = ""
	r.XRayTrace = strings.Replace(xrayUnsampled, "Sampled=0", "Sampled=1", 1)
	if d := never.Decide(&r); d != KeptByParent {
		t.Errorf("X-Ray Sampled=1: %v", d)
	}

	always := newExporter(t, config.OTLP{Sampler: config.Sampler{ParentBased: true, Ratio: 1}}, nil)
	r = healthy()
	r.XRayTrace = xrayUnsampled // Lambda's default tracing mode
	if d := always.Decide(&r); d != KeptByRatio {
		t.Errorf("X-Ray Sampled=0 is no decision: %v", d)
	}
	r.XRayTrace, r.TraceParent = "", tpUnsampled
	if d := always.Decide(&r); d != SampledOut {
		t.Errorf("the function's unsampled traceparent: %v", d)
	}
	notParent := newExporter(t, config.OTLP{Sampler: config.Sampler{Ratio: 1}}, nil)
	if d := notParent.Decide(&r); d != KeptByRatio {
		t.Errorf("always_on ignores the parent: %v", d)
	}
	off := newExporter(t, config.OTLP{Sampler: config.Sampler{Ratio: 1, KeepFailed: false}}, nil)
	r = healthy()
	r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}
	if d := off.Decide(&r); d != KeptByRatio {
		t.Errorf("KeepFailed off: a failed stream is sampled like any: %v", d)
	}
}

// The ratio is applied to the trace id, as the OTel SDKs do: the same trace
// gets the same decision every time, and a share of traces close to the
// ratio is kept.
func TestDecideRatioByTraceID(t *testing.T) {
	e := newExporter(t, config.OTLP{Sampler: config.Sampler{Ratio: 0.25}}, nil)
	kept := 0
	for i := range 4000 {
		r := healthy()
		r.TraceParent = fmt.Sprintf("00-%016x%016x-00f067aa0ba902b7-00", uint64(i)*0x9e3779b97f4a7c15, uint64(i+1)*0xbf58476d1ce4e5b9)
		d := e.Decide(&r)
		if d2 := e.Decide(&r); d2 != d {
			t.Fatalf("trace %d decided %v then %v", i, d, d2)
		}
		if d.Kept() {
			kept++
		}
	}
	if kept < 850 || kept > 1150 {
		t.Errorf("kept %d of 4000 at ratio 0.25", kept)
	}
}

// received is one request as a collector got it.
type received struct {
	header http.Header
	body   []byte // uncompressed
}

// collector is an OTLP/HTTP endpoint that answers with answer (the status
// codes in turn, the last one for good) and keeps what it got.
type collector struct {
	mu     sync.Mutex
	got    []received
	answer []int
	reply  []byte
	url    string
}

func newCollector(t *testing.T, answer ...int) *collector {
	c := &collector{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := otlpbody.Read(r, 16<<20)
		if err != nil {
			t.Errorf("OTLP request: %v", err)
			return
		}
		c.mu.Lock()
		c.got = append(c.got, received{r.Header.Clone(), body})
		code := 200
		if len(c.answer) > 0 {
			code = c.answer[0]
			if len(c.answer) > 1 {
				c.answer = c.answer[1:]
			}
		}
		reply := c.reply
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(code)
		_, _ = w.Write(reply)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/v1/traces"
	return c
}

func (c *collector) requests() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.got...)
}

// decodeStrict decodes a request with the official generated OTLP types
// (google.golang.org/protobuf, which rejects invalid UTF-8 in strings) and
// with the collector's pdata.
func decodeStrict(t *testing.T, body []byte) *collectorpb.ExportTraceServiceRequest {
	t.Helper()
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatalf("the official OTLP types refuse the request: %v", err)
	}
	pr := ptraceotlp.NewExportRequest()
	if err := pr.UnmarshalProto(body); err != nil {
		t.Fatalf("pdata refuses the request: %v", err)
	}
	if got, want := pr.Traces().SpanCount(), len(req.ResourceSpans[0].ScopeSpans[0].Spans); got != want {
		t.Errorf("pdata sees %d spans, protobuf %d", got, want)
	}
	return &req
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = v.IntValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = v.BoolValue
		case *commonpb.AnyValue_DoubleValue:
			m[kv.Key] = v.DoubleValue
		default:
			m[kv.Key] = fmt.Sprintf("unexpected %T", v)
		}
	}
	return m
}

// A timed-out stream's span: what the strict decoders see, the semantic
// conventions of the declared version, the standard fields, and an end at
// the platform's end of the invocation, not at the last chunk.
func TestSpanOfATimedOutStream(t *testing.T) {
	col := newCollector(t)
	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_LAMBDA_FUNCTION_VERSION": "7", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
		"AWS_LAMBDA_LOG_STREAM_NAME": "2026/12/02/[7]abcdef"}
	e := newExporter(t, config.OTLP{URL: col.url, ServiceName: "pricing-svc", Gzip: true, Sampler: defaultSampler,
		Headers:  []config.KV{{Key: "x-api-key", Value: "s3cret"}},
		Resource: []config.KV{{Key: "deployment.environment.name", Value: "prod"}}}, env)
	r := healthy()
	r.XRayTrace = xrayUnsampled
	r.InvokedARN = "arn:aws:lambda:eu-west-1:123456789012:function:pricing:live"
	r.ColdStart = true
	r.BundleID = "bundle-\xff\xfe-42" // invalid UTF-8 from the wire
	r.Verdict, r.Status, r.InvocationStatus = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}, "none", "timeout"
	r.InvocationEnd = r.Time.Add(3 * time.Second)
	for i := range 5 {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: "EURUSD\xc3", LatencyMs: float32(10 * (i + 1)), Seq: uint32(i + 1), Bytes: 190})
	}
	r.Delivered = 5
	if lost, err := e.Export(context.Background(), []state.Result{r}); lost != 0 || err != nil {
		t.Fatalf("lost %d: %v", lost, err)
	}
	reqs := col.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	h := reqs[0].header
	if h.Get("x-api-key") != "s3cret" || h.Get("Content-Encoding") != "gzip" || h.Get("User-Agent") != "streamlens/"+version.Version ||
		h.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("headers %v", h)
	}
	req := decodeStrict(t, reqs[0].body)
	rs := req.ResourceSpans[0]
	res := attrs(rs.Resource.Attributes)
	for k, want := range map[string]any{
		string(semconv.ServiceNameKey): "pricing-svc", string(semconv.ServiceVersionKey): "7",
		string(semconv.CloudProviderKey): "aws", string(semconv.CloudPlatformKey): "aws_lambda", string(semconv.CloudRegionKey): "eu-west-1",
		string(semconv.CloudAccountIDKey):  "123456789012",
		string(semconv.CloudResourceIDKey): "arn:aws:lambda:eu-west-1:123456789012:function:pricing:7",
		string(semconv.FaaSNameKey):        "pricing", string(semconv.FaaSVersionKey): "7",
		string(semconv.FaaSInstanceKey): "2026/12/02/[7]abcdef", string(semconv.FaaSMaxMemoryKey): int64(512 << 20),
		string(semconv.TelemetrySDKNameKey): "streamlens", string(semconv.TelemetrySDKLanguageKey): "go",
		string(semconv.TelemetrySDKVersionKey): version.Version, "deployment.environment.name": "prod",
	} {
		if res[k] != want {
			t.Errorf("resource %s = %v, want %v", k, res[k], want)
		}
	}
	if rs.SchemaUrl != SchemaURL || rs.ScopeSpans[0].SchemaUrl != SchemaURL || SchemaURL != semconv.SchemaURL {
		t.Errorf("schema %q %q, semconv %q", rs.SchemaUrl, rs.ScopeSpans[0].SchemaUrl, semconv.SchemaURL)
	}
	if sc := rs.ScopeSpans[0].Scope; sc.Name != scopeName || sc.Version != version.Version {
		t.Errorf("scope %v", sc)
	}
	sp := rs.ScopeSpans[0].Spans[0]
	if hex.EncodeToString(sp.TraceId) != "5759e988bd862e3fe1be46a994272793" || hex.EncodeToString(sp.ParentSpanId) != "53995c3f42cd8ad8" {
		t.Errorf("not in the X-Ray trace: %x %x", sp.TraceId, sp.ParentSpanId)
	}
	// Without the function's own span, this one is the invocation's server
	// span, named after the function as the semantic conventions for AWS
	// Lambda want (it was "stream" before issue #28).
	if sp.Name != "pricing" || sp.Kind != tracepb.Span_SPAN_KIND_SERVER || sp.Flags != 0x301 {
		t.Errorf("name %q kind %v flags %#x", sp.Name, sp.Kind, sp.Flags)
	}
	if got := time.Duration(sp.EndTimeUnixNano - sp.StartTimeUnixNano); got != 3*time.Second {
		t.Errorf("a timed-out stream's span lasts %v, the caller waited 3s", got)
	}
	a := attrs(sp.Attributes)
	for k, want := range map[string]any{
		string(semconv.FaaSInvocationIDKey): "r", string(semconv.FaaSTriggerKey): "http", string(semconv.FaaSColdstartKey): true,
		string(semconv.AWSLambdaInvokedARNKey): r.InvokedARN, "streamlens.bundle_id": "bundle-\ufffd-42",
		"streamlens.truncated": true, "streamlens.truncation_reason": "runtime-timeout", "streamlens.sampling.reason": "failed",
		"streamlens.parent": "xray", "streamlens.ttfb_ms": 12.0, string(semconv.ErrorTypeKey): "runtime-timeout",
	} {
		if a[k] != want {
			t.Errorf("span %s = %v, want %v", k, a[k], want)
		}
	}
	for k := range a {
		if strings.HasPrefix(k, "aws.") && k != string(semconv.AWSLambdaInvokedARNKey) {
			t.Errorf("a custom attribute in the aws. namespace: %s", k)
		}
	}
	if len(sp.Events) != 1+3 || sp.DroppedEventsCount != 2 || sp.Events[1].Name != "chunk" || attrs(sp.Events[1].Attributes)["streamlens.instrument"] != "EURUSD\ufffd" {
		t.Errorf("events %d dropped %d: %v", len(sp.Events), sp.DroppedEventsCount, sp.Events)
	}
	if sp.Status.Code != tracepb.Status_STATUS_CODE_ERROR || !strings.Contains(sp.Status.Message, "runtime-timeout") {
		t.Errorf("status %v", sp.Status)
	}
}

// The function's own span (its traceparent) is the parent: this span is
// inside it, INTERNAL, and without the server-only faas.trigger.
func TestSpanUnderTheFunctionsSpan(t *testing.T) {
	col := newCollector(t)
	e := newExporter(t, config.OTLP{URL: col.url, ServiceName: "pricing", Sampler: defaultSampler}, nil)
	r := healthy()
	r.TraceParent = tpSampled
	if lost, err := e.Export(context.Background(), []state.Result{r}); lost != 0 || err != nil {
		t.Fatalf("lost %d: %v", lost, err)
	}
	sp := decodeStrict(t, col.requests()[0].body).ResourceSpans[0].ScopeSpans[0].Spans[0]
	a := attrs(sp.Attributes)
	if hex.EncodeToString(sp.ParentSpanId) != "00f067aa0ba902b7" || sp.Kind != tracepb.Span_SPAN_KIND_INTERNAL || a["faas.trigger"] != nil ||
		sp.Name != "stream" || a["error.type"] != nil ||
		a["streamlens.sampling.reason"] != "parent" || sp.Status != nil || sp.EndTimeUnixNano-sp.StartTimeUnixNano != uint64(30*time.Millisecond) {
		t.Errorf("%v", sp)
	}
}

// A traceparent the function took from the request (the caller's span,
// CallerParent) makes the stream's span the invocation's SERVER span, named
// after the function, under the caller's: the FaaS conventions' shape, and
// no parent nobody exports.
func TestSpanUnderTheCallersSpan(t *testing.T) {
	col := newCollector(t)
	e := newExporter(t, config.OTLP{URL: col.url, ServiceName: "pricing", Sampler: defaultSampler}, nil)
	r := healthy()
	r.TraceParent, r.CallerParent = tpSampled, true
	if lost, err := e.Export(context.Background(), []state.Result{r}); lost != 0 || err != nil {
		t.Fatalf("lost %d: %v", lost, err)
	}
	sp := decodeStrict(t, col.requests()[0].body).ResourceSpans[0].ScopeSpans[0].Spans[0]
	a := attrs(sp.Attributes)
	if hex.EncodeToString(sp.ParentSpanId) != "00f067aa0ba902b7" || sp.Kind != tracepb.Span_SPAN_KIND_SERVER || a["faas.trigger"] != "http" ||
		sp.Name == "stream" || a["streamlens.parent"] != "caller" || a["streamlens.sampling.reason"] != "parent" {
		t.Errorf("%v", sp)
	}
}

// Retryable answers are retried within the budget; others are not; a
// partial success loses just the rejected spans.
func TestExportRetriesAndPartialSuccess(t *testing.T) {
	two := []state.Result{healthy(), healthy()}
	col := newCollector(t, 503, 200)
	e := newExporter(t, config.OTLP{URL: col.url}, nil)
	if lost, err := e.Export(context.Background(), two); lost != 0 || err != nil || len(col.requests()) != 2 {
		t.Errorf("503 then 200: lost %d (%v) after %d requests", lost, err, len(col.requests()))
	}
	col = newCollector(t, 400)
	e = newExporter(t, config.OTLP{URL: col.url}, nil)
	if lost, err := e.Export(context.Background(), two); lost != 2 || err == nil || len(col.requests()) != 1 {
		t.Errorf("400: lost %d (%v) after %d requests", lost, err, len(col.requests()))
	}
	col = newCollector(t)
	ps, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{
		RejectedSpans: 1, ErrorMessage: "span too old"}})
	col.reply = ps
	e = newExporter(t, config.OTLP{URL: col.url}, nil)
	if lost, err := e.Export(context.Background(), two); lost != 1 || err == nil || !strings.Contains(err.Error(), "span too old") || len(col.requests()) != 1 {
		t.Errorf("partial success: lost %d (%v) after %d requests", lost, err, len(col.requests()))
	}
	// A collector that never answers: the budget ends the export, all lost.
	e = newExporter(t, config.OTLP{URL: streamtest.HangingCollector(t) + "/v1/traces"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if lost, err := e.Export(ctx, two); lost != 2 || err == nil {
		t.Errorf("hanging collector: lost %d (%v)", lost, err)
	}
}

func TestPartialSuccessDecoderIsTotal(t *testing.T) {
	for _, b := range [][]byte{nil, {0x0a}, {0x0a, 0xff}, {0xff, 0xff, 0xff}, []byte(`{"partialSuccess":{}}`)} {
		if n, _ := partialSuccess(b); n != 0 {
			t.Errorf("%x: %d rejected", b, n)
		}
	}
}

// FuzzPartialSuccess: the response reader never fails on any input, and
// agrees with the official types on every canonically encoded response.
func FuzzPartialSuccess(f *testing.F) {
	ok, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "x"}})
	f.Add(ok)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x08, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, msg := partialSuccess(b)
		if n != 0 && msg == "" {
			t.Errorf("%d rejected without a reason", n)
		}
		var want collectorpb.ExportTraceServiceResponse
		if proto.Unmarshal(b, &want) != nil {
			return
		}
		if canon, err := proto.Marshal(&want); err != nil || !bytes.Equal(canon, b) {
			return // repeated or unknown fields: protobuf keeps the last, the reader the first
		}
		if w := want.GetPartialSuccess().GetRejectedSpans(); w != n {
			t.Errorf("read %d rejected, protobuf %d", n, w)
		}
	})
}

func benchExporter(b *testing.B, url string, gz bool) {
	e, err := New(Config{OTLP: config.OTLP{URL: url, Gzip: gz}, FunctionName: "pricing", MaxEvents: 128, TTFBThreshold: 100 * time.Millisecond},
		func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	enc := e.SpanExporter.(*httpExporter).enc
	r := healthy()
	for i := range 50 {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: "INST", LatencyMs: float32(i), Seq: uint32(i + 1), Bytes: 190})
	}
	start := time.Now()
	for b.Loop() {
		// The lifecycle gives each export STREAMLENS_OTLP_TIMEOUT_MS (25).
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
		_, _ = e.Export(ctx, []state.Result{r})
		cancel()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/flush")
	b.ReportMetric(float64(len(enc.buf)), "bytes/span")
	if gz {
		b.ReportMetric(float64(enc.zbuf.Len()), "gzip-bytes/span")
	}
}

// BenchmarkSpanExport: the span export of a 50-chunk stream to a live
// collector (plain and gzipped), a refused port and a collector that
// accepts but never answers (bounded by the 25 ms OTLP timeout).
func BenchmarkSpanExport(b *testing.B) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer live.Close()
	b.Run("live", func(b *testing.B) { benchExporter(b, live.URL+"/v1/traces", false) })
	b.Run("live-gzip", func(b *testing.B) { benchExporter(b, live.URL+"/v1/traces", true) })

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String() + "/v1/traces"
	ln.Close()
	b.Run("refused", func(b *testing.B) { benchExporter(b, refused, false) })

	hanging := streamtest.HangingCollector(b)
	b.Run("hanging", func(b *testing.B) { benchExporter(b, hanging+"/v1/traces", false) })
}

// exportOne exports r through a fresh exporter and returns its span and
// resource as the official types decode them.
func exportOne(t *testing.T, o config.OTLP, env map[string]string, r state.Result) (*tracepb.Span, map[string]any) {
	t.Helper()
	col := newCollector(t)
	o.URL = col.url
	e := newExporter(t, o, env)
	if lost, err := e.Export(context.Background(), []state.Result{r}); lost != 0 || err != nil {
		t.Fatalf("lost %d: %v", lost, err)
	}
	rs := decodeStrict(t, col.requests()[0].body).ResourceSpans[0]
	return rs.ScopeSpans[0].Spans[0], attrs(rs.Resource.Attributes)
}

// $LATEST is not a version: no service.version nor faas.version (the
// semantic conventions define the latter as the published version's
// number); cloud.resource_id still names what ran. OTEL_RESOURCE_ATTRIBUTES
// gives service.version whatever runs.
func TestLatestIsNotAVersion(t *testing.T) {
	r := healthy()
	r.InvokedARN = "arn:aws:lambda:eu-west-1:123456789012:function:pricing"
	for _, v := range []string{"$LATEST", "$LATEST.PUBLISHED", ""} {
		_, res := exportOne(t, config.OTLP{}, map[string]string{"AWS_LAMBDA_FUNCTION_VERSION": v}, r)
		if res["service.version"] != nil || res["faas.version"] != nil {
			t.Errorf("%q: service.version %v, faas.version %v", v, res["service.version"], res["faas.version"])
		}
		if want := strings.TrimSuffix(r.InvokedARN+":"+v, ":"); res["cloud.resource_id"] != want {
			t.Errorf("%q: cloud.resource_id %v, want %s", v, res["cloud.resource_id"], want)
		}
	}
	_, res := exportOne(t, config.OTLP{Resource: []config.KV{{Key: "service.version", Value: "2.4.1"}}},
		map[string]string{"AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}, r)
	if res["service.version"] != "2.4.1" || res["faas.version"] != nil {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES: service.version %v, faas.version %v", res["service.version"], res["faas.version"])
	}
	_, res = exportOne(t, config.OTLP{Resource: []config.KV{{Key: "service.version", Value: "2.4.1"}}},
		map[string]string{"AWS_LAMBDA_FUNCTION_VERSION": "12"}, r)
	if res["service.version"] != "2.4.1" || res["faas.version"] != "12" {
		t.Errorf("OTEL_RESOURCE_ATTRIBUTES wins: service.version %v, faas.version %v", res["service.version"], res["faas.version"])
	}
}

// error.type is set on a failed stream's span only, with a low-cardinality
// value, and goes with the error status; a stream only slow to its first
// byte is kept as failed but did not fail: neither.
func TestErrorType(t *testing.T) {
	for name, c := range map[string]struct {
		f    func(*state.Result)
		want string
	}{
		"healthy":   {func(*state.Result) {}, ""},
		"slow TTFB": {func(r *state.Result) { r.TTFBMs = 5000 }, ""},
		"integrity": {func(r *state.Result) { r.Integrity = 1 }, "integrity-mismatch"},
		"aborted": {func(r *state.Result) {
			r.Verdict = state.Verdict{Cause: state.EndStatus, Detail: "aborted", Class: state.Caller}
		}, "status-aborted"},
		"no end": {func(r *state.Result) { r.Verdict = state.Verdict{Cause: state.NoEnd, Class: state.Service} }, "no-end"},
		"crash": {func(r *state.Result) {
			r.Verdict = state.Verdict{Cause: state.Platform, Detail: "error", Class: state.Service}
		}, "runtime-error"},
	} {
		r := healthy()
		c.f(&r)
		sp, _ := exportOne(t, config.OTLP{Sampler: defaultSampler}, nil, r)
		got, _ := attrs(sp.Attributes)["error.type"].(string)
		isErr := sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR
		if got != c.want || isErr != (c.want != "") {
			t.Errorf("%s: error.type %q, error status %v; want %q", name, got, isErr, c.want)
		}
	}
}

// Package otlpsink turns finished streams into OpenTelemetry spans and
// exports them over OTLP/HTTP (protobuf) within a time budget.
package otlpsink

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/xray"
)

// Config is what the exporter needs to know of the extension's
// configuration.
type Config struct {
	Endpoint     string // the collector's OTLP/HTTP base URL
	FunctionName string
	MaxEvents    int // chunk events per span
}

// Exporter turns finished streams into OTel spans (the OTel SDK builds them)
// and exports them over OTLP/HTTP (otlp.go). It is used by one goroutine at
// a time.
type Exporter struct {
	tp        *sdktrace.TracerProvider
	tracer    trace.Tracer
	ended     *collector
	otlp      *otlpExporter
	maxEvents int
}

// Batch is how many streams one export carries at most: it bounds the spans
// that exist in memory at once, the size of one request, and how long one
// export holds the CPU (~1 ms for 16 spans of 50 events) while the function
// may still be sending events.
const Batch = 16

// New returns an exporter for cfg; getenv gives the resource's Lambda
// attributes.
func New(cfg Config, getenv func(string) string) (*Exporter, error) {
	u, err := url.Parse(strings.TrimSuffix(cfg.Endpoint, "/") + "/v1/traces")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("STREAMLENS_OTLP_ENDPOINT %q: want an http(s) URL", cfg.Endpoint)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cfg.FunctionName),
		semconv.CloudProviderAWS, semconv.CloudPlatformAWSLambda,
		semconv.CloudRegion(getenv("AWS_REGION")),
		semconv.FaaSName(cfg.FunctionName),
		semconv.FaaSVersion(getenv("AWS_LAMBDA_FUNCTION_VERSION")),
	)
	limits := sdktrace.NewSpanLimits()
	limits.EventCountLimit = cfg.MaxEvents + 1 // + first_useful_byte
	ended := &collector{}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithRawSpanLimits(limits),
		// The function's sampling decision (traceparent flags) is respected.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		// No batch processor: its goroutine and timers would export on their
		// own schedule, across freezes; the lifecycle decides when to export
		// and with what budget.
		sdktrace.WithSpanProcessor(ended),
	)
	return &Exporter{tp: tp, tracer: tp.Tracer("github.com/streamlens/streamlens/extension"), ended: ended,
		otlp: newOTLPExporter(u.String()), maxEvents: cfg.MaxEvents}, nil
}

// Export builds the spans of up to Batch streams and sends them in one
// request, which ctx bounds (the caller's budget).
func (s *Exporter) Export(ctx context.Context, results []state.Result) error {
	for _, r := range results[:min(len(results), Batch)] {
		s.span(r)
	}
	spans := s.ended.take()
	return s.otlp.ExportSpans(ctx, spans)
}

// Shutdown stops the SDK.
func (s *Exporter) Shutdown() { _ = s.tp.Shutdown(context.Background()) }

// collector is a span processor that keeps ended spans for the next export.
type collector struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (c *collector) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (c *collector) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	c.spans = append(c.spans, s)
	c.mu.Unlock()
}

func (c *collector) take() []sdktrace.ReadOnlySpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.spans
	c.spans = nil
	return out
}

func (c *collector) Shutdown(context.Context) error   { return nil }
func (c *collector) ForceFlush(context.Context) error { return nil }

// parent is the stream's parent: the traceparent the function sent, else the
// INVOKE event's X-Ray header, else none (a new root).
func parent(r state.Result) (trace.SpanContext, string) {
	if sc, ok := parseTraceParent(r.TraceParent); ok {
		return sc, "traceparent"
	}
	if sc, ok := parseXRay(r.XRayTrace); ok {
		// In Lambda's default PassThrough tracing mode a function URL call
		// carries Sampled=0: X-Ray's flag is no decision about this span, and
		// following it would export nothing by default.
		return sc.WithTraceFlags(sc.TraceFlags() | trace.FlagsSampled), "xray"
	}
	return trace.SpanContext{}, "root"
}

func (s *Exporter) span(r state.Result) {
	ctx := context.Background()
	sc, source := parent(r)
	if sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	name := "stream"
	if r.BundleID != "" {
		name += " " + r.BundleID
	}
	attrs := []attribute.KeyValue{
		semconv.FaaSInvocationID(r.RequestID),
		attribute.String("streamlens.quote_id", r.QuoteID),
		attribute.Int64("streamlens.chunks.delivered", r.Delivered),
		attribute.Int64("streamlens.bytes", r.Bytes),
		attribute.Bool("streamlens.truncated", r.Truncated),
		attribute.String("streamlens.status", r.Status),
		attribute.String("streamlens.parent", source),
	}
	for _, kv := range []struct{ k, v string }{
		{"streamlens.bundle_id", r.BundleID}, {"streamlens.client_id", r.ClientID},
		{"streamlens.truncation_reason", r.Reason}, {"streamlens.invocation_status", r.InvocationStatus},
	} {
		if kv.v != "" { // Reason is empty unless truncated
			attrs = append(attrs, attribute.String(kv.k, kv.v))
		}
	}
	if r.Expected >= 0 {
		attrs = append(attrs, attribute.Int64("streamlens.chunks.expected", r.Expected))
	}
	if r.PlatformLatencyMs >= 0 {
		attrs = append(attrs, attribute.Float64("aws.lambda.response_latency_ms", r.PlatformLatencyMs))
	}
	if r.HasTTFB {
		attrs = append(attrs, attribute.Float64("streamlens.ttfb_ms", r.TTFBMs))
	}
	kept := min(len(r.Chunks), s.maxEvents)
	dropped := int64(len(r.Chunks)-kept) + max(0, r.Delivered-int64(len(r.Chunks)))
	attrs = append(attrs, attribute.Int64("streamlens.chunk_events_dropped", dropped))

	_, sp := s.tracer.Start(ctx, name, trace.WithTimestamp(r.Time), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	if r.HasTTFB {
		sp.AddEvent("first_useful_byte", trace.WithTimestamp(r.Time.Add(msDuration(r.TTFBMs))),
			trace.WithAttributes(attribute.Float64("streamlens.offset_ms", r.TTFBMs)))
	}
	for _, c := range r.Chunks[:kept] {
		at := r.Time
		if c.LatencyMs >= 0 {
			at = r.Time.Add(msDuration(state.Ms(c.LatencyMs)))
		}
		sp.AddEvent("chunk", trace.WithTimestamp(at), trace.WithAttributes(
			attribute.String("streamlens.instrument", c.Inst),
			attribute.Int64("streamlens.seq", int64(c.Seq)),
			attribute.Int64("streamlens.bytes", int64(c.Bytes)),
			attribute.Float64("streamlens.offset_ms", max(0, state.Ms(c.LatencyMs)))))
	}
	if r.Truncated {
		sp.SetStatus(codes.Error, "stream truncated: "+r.Reason)
	}
	sp.End(trace.WithTimestamp(r.EndTime))
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// parseTraceParent reads a W3C traceparent (version 00).
func parseTraceParent(tp string) (trace.SpanContext, bool) {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || (parts[0] == "00" && len(parts) != 4) {
		return trace.SpanContext{}, false
	}
	tid, err1 := trace.TraceIDFromHex(parts[1])
	sid, err2 := trace.SpanIDFromHex(parts[2])
	if err1 != nil || err2 != nil || len(parts[3]) != 2 {
		return trace.SpanContext{}, false
	}
	var flags trace.TraceFlags
	if parts[3][1] == '1' || parts[3][1] == '3' || parts[3][1] == '5' || parts[3][1] == '7' ||
		parts[3][1] == '9' || parts[3][1] == 'b' || parts[3][1] == 'd' || parts[3][1] == 'f' {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
	return sc, sc.IsValid()
}

// parseXRay converts an X-Ray trace header
// ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
// to W3C ids: the trace id is the epoch part and the unique part joined.
func parseXRay(h string) (trace.SpanContext, bool) {
	x := xray.Parse(h)
	root, par, sampled := x.Root, x.Parent, x.Sampled
	parts := strings.Split(root, "-")
	if len(parts) != 3 || parts[0] != "1" || len(parts[1]) != 8 || len(parts[2]) != 24 {
		return trace.SpanContext{}, false
	}
	tid, err1 := trace.TraceIDFromHex(parts[1] + parts[2])
	sid, err2 := trace.SpanIDFromHex(par)
	if err1 != nil || err2 != nil {
		return trace.SpanContext{}, false
	}
	var flags trace.TraceFlags
	if sampled == "1" {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
	return sc, sc.IsValid()
}

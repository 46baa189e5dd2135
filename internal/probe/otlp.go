package probe

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/otlpsink"
	"github.com/streamlens/streamlens/internal/version"
)

// The probe's span is the caller's side of the trace the function's spans
// join (Run sends its ids as the traceparent): a CLIENT span named after
// the HTTP method, as the semantic conventions for HTTP clients say, from
// the request sent to the end of the body, with an event for every chunk
// at the time the caller received it.
//
// It is encoded with the official generated OTLP types
// (go.opentelemetry.io/proto/otlp), not with the extension's protobuf
// writer: that one is unexported in extension/otlpsink, and its exporters
// take the extension's stream results (state.Result) and make the
// function's server and stream spans of them, never a client span with ids
// of its own. What the probe does reuse is the extension's reading of the
// OTEL_* variables (extension/config: endpoint, headers, compression,
// timeout, certificates, resource, service name, the same meanings and the
// same complaints) and its schema version (otlpsink.SchemaURL), so that
// both sides of one trace follow one version of the conventions.

// scopeName is the instrumentation scope of the probe's spans.
const scopeName = "github.com/streamlens/streamlens/internal/probe"

// DefaultServiceName is the probe's service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
const DefaultServiceName = "streamlens-probe"

// defaultOTLPTimeout bounds one export when neither OTEL_EXPORTER_OTLP_TIMEOUT
// nor STREAMLENS_OTLP_TIMEOUT_MS says: the OpenTelemetry specification's
// 10 s, not the extension's 25 ms (it exports inside an invocation; the
// probe has nobody waiting).
const defaultOTLPTimeout = 10 * time.Second

// OTLP exports probe spans over OTLP/HTTP with protobuf.
type OTLP struct {
	url       string
	safeURL   string
	headers   http.Header
	gzip      bool
	timeout   time.Duration
	maxEvents int
	client    *http.Client
	resource  []*commonpb.KeyValue
}

// otlpEnv are the variables the probe passes to the extension's reading:
// the span export's, nothing of the extension's own configuration.
func otlpEnv(name string) bool {
	return strings.HasPrefix(name, "OTEL_") || strings.HasPrefix(name, "STREAMLENS_OTLP") || name == "STREAMLENS_SPAN_MAX_EVENTS"
}

// OTLPFromEnv returns the span exporter the environment configures, or nil
// when it configures none: spans are exported when an endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// STREAMLENS_OTLP_ENDPOINT) or STREAMLENS_OTLP=on (then to
// http://localhost:4318), and not turned off (STREAMLENS_OTLP=off,
// OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none). The error lists bad
// values, each naming its variable; they fell back to their defaults and
// the exporter is still returned. grpc is not spoken here: asking for it
// returns no exporter and an error that says so, never spans lost in
// silence.
func OTLPFromEnv(getenv func(string) string) (*OTLP, error) {
	env := func(name string) string {
		switch {
		case name == "AWS_LAMBDA_RUNTIME_API":
			return "probe" // the extension's reading wants one; the probe has none
		case name == "STREAMLENS_FUNCTION_NAME":
			return DefaultServiceName // the service name unless OTEL_* says
		case otlpEnv(name):
			return getenv(name)
		}
		return ""
	}
	set := func(names ...string) bool {
		for _, n := range names {
			if strings.TrimSpace(getenv(n)) != "" {
				return true
			}
		}
		return false
	}
	c, cfgErr := config.FromEnv(env, "probe")
	o := c.OTLP
	explicitOn := strings.EqualFold(strings.TrimSpace(getenv("STREAMLENS_OTLP")), "on")
	if !o.On || !(explicitOn || set("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "STREAMLENS_OTLP_ENDPOINT")) {
		return nil, cfgErr
	}
	if cfgErr != nil {
		cfgErr = fmt.Errorf("probe: otlp: %w", cfgErr)
	}
	if o.Protocol == config.ProtocolGRPC {
		return nil, errors.Join(cfgErr, fmt.Errorf("probe: otlp: OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the probe exports over http/protobuf only; no span is exported (set http/protobuf and the collector's OTLP/HTTP endpoint, usually port 4318)"))
	}
	if !set("STREAMLENS_OTLP_TIMEOUT_MS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
		o.Timeout = defaultOTLPTimeout
	}
	tc, err := otlpsink.TLSConfig(o)
	if err != nil {
		// The export would fail on every span: said once, here.
		return nil, errors.Join(cfgErr, fmt.Errorf("probe: otlp: %w", err))
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConns: 1}
	return &OTLP{
		url: o.URL, safeURL: config.RedactURL(o.URL), headers: otlpsink.HTTPHeader(o, "streamlens-probe/"+version.Version),
		gzip: o.Gzip, timeout: o.Timeout, maxEvents: c.SpanMaxEvents,
		client:   &http.Client{Transport: tr, CheckRedirect: otlpsink.RefuseRedirect},
		resource: resource(o, getenv),
	}, cfgErr
}

// resource is the span's resource: the service, the SDK, where the probe
// runs when that is a Lambda function (the canary), then
// OTEL_RESOURCE_ATTRIBUTES, which wins.
func resource(o config.OTLP, getenv func(string) string) []*commonpb.KeyValue {
	attrs := []*commonpb.KeyValue{
		str("service.name", o.ServiceName),
		str("telemetry.sdk.name", "streamlens"),
		str("telemetry.sdk.language", "go"),
		str("telemetry.sdk.version", version.Version),
	}
	if fn := getenv("AWS_LAMBDA_FUNCTION_NAME"); fn != "" {
		attrs = append(attrs, str("cloud.provider", "aws"), str("cloud.platform", "aws_lambda"), str("faas.name", fn))
		if r := getenv("AWS_REGION"); r != "" {
			attrs = append(attrs, str("cloud.region", r))
		}
	}
	for _, kv := range o.Resource {
		if kv.Key == "service.name" {
			continue // ServiceName has it, with OTEL_SERVICE_NAME's precedence
		}
		set := false
		for i, a := range attrs {
			if a.Key == kv.Key {
				attrs[i], set = str(kv.Key, kv.Value), true
			}
		}
		if !set {
			attrs = append(attrs, str(kv.Key, kv.Value))
		}
	}
	return attrs
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func integer(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func boolean(k string, v bool) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}}
}

func float(k string, v float64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}}
}

// ids reads the trace and span ids of a W3C traceparent.
func ids(tp string) (trace, span []byte, ok bool) {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 || len(parts[2]) != 16 {
		return nil, nil, false
	}
	trace, err1 := hex.DecodeString(parts[1])
	span, err2 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil || allZero(trace) || allZero(span) {
		return nil, nil, false
	}
	return trace, span, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// errorType is the span's error.type, low-cardinality as the conventions
// want it: the status code of an error response, Lambda's error type from
// its trailer, integrity-mismatch or truncated (the extension's words for
// the same), or the failed request's kind; "" for a complete response.
func errorType(r Result) string {
	var ne net.Error
	switch {
	case !r.Truncated:
		return ""
	case r.Err != nil && errors.As(r.Err, &ne) && ne.Timeout():
		return "timeout"
	case r.Err != nil:
		return "request-failed"
	case r.Status >= 300:
		return strconv.Itoa(r.Status)
	case r.ErrorType != "":
		return r.ErrorType
	case r.SHA256OK != nil && !*r.SHA256OK:
		return "integrity-mismatch"
	}
	return "truncated"
}

// Span returns r as the probe's client span, with at most maxEvents chunk
// events (the first ones; the rest are counted as dropped, as the
// extension's spans count theirs), false when r's traceparent does not
// parse (there are then no ids to give it). name is the probe's name.
func Span(r Result, name string, maxEvents int) (*tracepb.Span, bool) {
	trace, span, ok := ids(r.TraceParent)
	if !ok || r.Start.IsZero() {
		return nil, false
	}
	nano := func(d time.Duration) uint64 { return uint64(r.Start.Add(d).UnixNano()) }
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	s := &tracepb.Span{
		TraceId: trace, SpanId: span, Name: method, Kind: tracepb.Span_SPAN_KIND_CLIENT,
		StartTimeUnixNano: nano(0), EndTimeUnixNano: nano(r.Total),
		// Sampled (the traceparent sent says 01), and a local root.
		Flags: 0x01 | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK),
		Attributes: []*commonpb.KeyValue{
			str("http.request.method", method),
			str("url.full", RedactURL(r.URL)),
			str("streamlens.probe.name", name),
			boolean("streamlens.truncated", r.Truncated),
		},
	}
	if u, err := url.Parse(r.URL); err == nil {
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
		s.Attributes = append(s.Attributes, str("server.address", u.Hostname()), integer("server.port", int64(port)))
	}
	if r.Status != 0 {
		s.Attributes = append(s.Attributes, integer("http.response.status_code", int64(r.Status)),
			float("streamlens.caller.ttfb_ms", ms(r.TTFB)),
			integer("streamlens.chunks.received", int64(len(r.Chunks))), integer("streamlens.bytes", r.Bytes),
			boolean("streamlens.end_marker", r.EndMarker))
		if r.FirstUseful > 0 {
			s.Attributes = append(s.Attributes, float("streamlens.caller.first_useful_ms", ms(r.FirstUseful)))
		}
	}
	for _, p := range []struct {
		k string
		d time.Duration
	}{{"streamlens.caller.dns_ms", r.DNS}, {"streamlens.caller.connect_ms", r.Connect}, {"streamlens.caller.tls_ms", r.TLS}} {
		if p.d > 0 {
			s.Attributes = append(s.Attributes, float(p.k, ms(p.d)))
		}
	}
	if r.SHA256OK != nil {
		s.Attributes = append(s.Attributes, boolean("streamlens.integrity_ok", *r.SHA256OK))
	}
	if et := errorType(r); et != "" {
		s.Attributes = append(s.Attributes, str("error.type", et), str("streamlens.truncation_reason", r.Reason))
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "response truncated as the caller saw it: " + r.Reason}
	}
	if r.Status != 0 {
		s.Events = append(s.Events, &tracepb.Span_Event{TimeUnixNano: nano(r.TTFB), Name: "first_byte",
			Attributes: []*commonpb.KeyValue{float("streamlens.offset_ms", ms(r.TTFB))}})
	}
	kept := min(len(r.Chunks), max(0, maxEvents))
	for i, c := range r.Chunks[:kept] {
		s.Events = append(s.Events, &tracepb.Span_Event{TimeUnixNano: nano(c.At), Name: "chunk_received",
			Attributes: []*commonpb.KeyValue{
				integer("streamlens.seq", int64(i+1)), integer("streamlens.bytes", int64(c.Bytes)),
				boolean("streamlens.useful", c.Useful), float("streamlens.offset_ms", ms(c.At)),
			}})
	}
	s.DroppedEventsCount = uint32(len(r.Chunks) - kept)
	if r.Left > 0 {
		// The caller went away here; the function's span in the same
		// trace says how long the function went on for nobody.
		s.Events = append(s.Events, &tracepb.Span_Event{TimeUnixNano: nano(r.Left), Name: "caller_left",
			Attributes: []*commonpb.KeyValue{integer("streamlens.chunks_received", int64(len(r.Chunks)))}})
	}
	return s, true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Request returns the OTLP/HTTP request body for the spans: a TracesData,
// which is an ExportTraceServiceRequest on the wire (the proto says so),
// without the collector package and the gRPC stack it imports.
func (o *OTLP) Request(spans ...*tracepb.Span) ([]byte, error) {
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: o.resource},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope:     &commonpb.InstrumentationScope{Name: scopeName, Version: version.Version},
			Spans:     spans,
			SchemaUrl: otlpsink.SchemaURL,
		}},
		SchemaUrl: otlpsink.SchemaURL,
	}}}
	b, err := proto.Marshal(td)
	if err != nil {
		return nil, fmt.Errorf("probe: otlp: %w", err)
	}
	return b, nil
}

// Export sends r's span, bounded by the configured timeout, and retries what
// the OTLP specification calls retryable (429, 502, 503, 504) while the
// timeout lasts. name is the probe's name.
func (o *OTLP) Export(ctx context.Context, r Result, name string) error {
	s, ok := Span(r, name, o.maxEvents)
	if !ok {
		return fmt.Errorf("probe: otlp: traceparent %q does not parse: no span", r.TraceParent)
	}
	body, err := o.Request(s)
	if err != nil {
		return err
	}
	if o.gzip {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write(body)
		if err := zw.Close(); err != nil {
			return fmt.Errorf("probe: otlp: gzip: %w", err)
		}
		body = z.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		retryAfter, err := o.post(ctx, body)
		if err == nil || retryAfter < 0 || attempt == 4 {
			return err
		}
		select {
		case <-time.After(max(wait, retryAfter)):
			wait *= 2
		case <-ctx.Done():
			return fmt.Errorf("%w (no time left to retry)", err)
		}
	}
}

// post sends one request; on a failure worth a retry it says how long to
// wait first (-1: not worth one).
func (o *OTLP) post(ctx context.Context, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("probe: otlp: %s: %w", o.safeURL, unwrapURL(err))
	}
	req.Header = o.headers.Clone()
	resp, err := o.client.Do(req)
	if err != nil {
		// url.Error quotes the URL, credentials and all: only its cause,
		// after the redacted URL.
		return -1, fmt.Errorf("probe: otlp: %s: %w", o.safeURL, unwrapURL(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		if n, why := partialSuccess(msg); n > 0 && strings.Contains(resp.Header.Get("Content-Type"), "protobuf") {
			return -1, fmt.Errorf("probe: otlp: %s rejected the span: %s", o.safeURL, why)
		}
		return 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		wait := time.Duration(0)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = min(time.Duration(s)*time.Second, time.Second)
		}
		return wait, fmt.Errorf("probe: otlp: %s answered %d", o.safeURL, code)
	}
	return -1, fmt.Errorf("probe: otlp: %s answered %d", o.safeURL, resp.StatusCode)
}

// partialSuccess reads ExportTraceServiceResponse.partial_success
// {rejected_spans = 1, error_message = 2}; anything it cannot read is full
// success, as a 2xx says.
func partialSuccess(b []byte) (rejected int64, msg string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, ""
			}
			b = b[n:]
			continue
		}
		ps, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, ""
		}
		b = b[n:]
		for len(ps) > 0 {
			num, typ, n := protowire.ConsumeTag(ps)
			if n < 0 {
				break
			}
			ps = ps[n:]
			switch {
			case num == 1 && typ == protowire.VarintType:
				v, n := protowire.ConsumeVarint(ps)
				if n < 0 {
					return rejected, msg
				}
				rejected, ps = int64(min(v, 1<<62)), ps[n:]
			case num == 2 && typ == protowire.BytesType:
				v, n := protowire.ConsumeBytes(ps)
				if n < 0 {
					return rejected, msg
				}
				msg, ps = string(v), ps[n:]
			default:
				n := protowire.ConsumeFieldValue(num, typ, ps)
				if n < 0 {
					return rejected, msg
				}
				ps = ps[n:]
			}
		}
	}
	if rejected > 0 && msg == "" {
		msg = "rejected without a message"
	}
	return rejected, msg
}

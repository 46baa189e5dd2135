// Package otlpsink turns finished streams into OpenTelemetry spans, decides
// which of them to keep (Sampler), and exports them over OTLP (SpanExporter:
// http/protobuf, or grpc).
package otlpsink

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/version"
	"github.com/streamlens/streamlens/internal/xray"
)

// SchemaURL is the version of the OpenTelemetry semantic conventions the
// spans follow (the tests check every key against that version's
// constants).
const SchemaURL = "https://opentelemetry.io/schemas/1.43.0"

// scopeName is the instrumentation scope of the spans.
const scopeName = "github.com/streamlens/streamlens/extension"

// parentKind says where a stream's parent came from.
type parentKind uint8

const (
	noParent     parentKind = iota // a new trace
	traceParent                    // the traceparent the function sent: the function's own span
	xrayParent                     // the INVOKE event's X-Ray header: the caller's segment
	callerParent                   // the traceparent the function took from the request: the caller's span
)

func (k parentKind) String() string {
	switch k {
	case traceParent:
		return "traceparent"
	case xrayParent:
		return "xray"
	case callerParent:
		return "caller"
	}
	return "root"
}

// parent is a stream's parent span.
type parent struct {
	kind    parentKind
	traceID [16]byte
	spanID  [8]byte
	// sampled is the parent's decision: the traceparent's sampled flag, or
	// X-Ray's Sampled=1. X-Ray's Sampled=0 is no decision: in Lambda's
	// default PassThrough tracing mode every function URL call carries it
	// without anybody having decided anything.
	sampled, decided bool
}

// parentOf returns the stream's parent: the traceparent the function sent,
// else the INVOKE event's X-Ray header, else none.
func parentOf(r *state.Result) parent {
	if p, ok := parseTraceParent(r.TraceParent); ok {
		if r.CallerParent {
			p.kind = callerParent
		}
		return p
	}
	if p, ok := parseXRay(r.XRayTrace); ok {
		return p
	}
	return parent{}
}

// Decision is what the sampler made of one finished stream.
type Decision uint8

const (
	SampledOut   Decision = iota // healthy, and not kept by the sampler
	KeptFailed                   // failed: kept whatever the sampler says
	KeptByParent                 // healthy, kept because its parent was sampled
	KeptByRatio                  // healthy, kept by the ratio
)

func (d Decision) String() string {
	return [...]string{"sampled-out", "failed", "parent", "ratio"}[d]
}

// Kept reports whether the stream gets a span.
func (d Decision) Kept() bool { return d != SampledOut }

// Failed reports whether a stream is one an on-call person wants to see:
// truncated, with a bad hash, in a failed invocation, or slower to its first
// useful byte than the TTFB threshold.
func Failed(r *state.Result, ttfbThreshold time.Duration) bool {
	return r.Verdict.Truncated() || r.Integrity == 1 ||
		r.InvocationStatus != "" && r.InvocationStatus != "success" ||
		r.HasTTFB && r.TTFBMs > float64(ttfbThreshold)/float64(time.Millisecond)
}

// Sampler decides which finished streams get a span, as the OTel SDK's
// sampler does for a tracer, apart from the exporter. Its methods may be
// called by any goroutine.
type Sampler struct {
	cfg  config.Sampler
	ttfb time.Duration // a slower first useful byte is a failed stream
}

// NewSampler returns the sampler of cfg; ttfbThreshold is the first useful
// byte's time past which a stream counts as failed.
func NewSampler(cfg config.Sampler, ttfbThreshold time.Duration) *Sampler {
	return &Sampler{cfg: cfg, ttfb: ttfbThreshold}
}

// Decide decides whether stream r gets a span: failed streams are kept
// (when KeepFailed); a healthy stream follows its parent's decision (when
// ParentBased and there is one), else the ratio, by trace id so that every
// service of a trace decides alike.
func (sm *Sampler) Decide(r *state.Result) Decision {
	s := sm.cfg
	if s.KeepFailed && Failed(r, sm.ttfb) {
		return KeptFailed
	}
	p := parentOf(r)
	if s.ParentBased && p.decided {
		if p.sampled {
			return KeptByParent
		}
		return SampledOut
	}
	x := rand.Uint64() >> 1 // a new trace's id is random too
	if p.kind != noParent {
		x = binary.BigEndian.Uint64(p.traceID[8:]) >> 1
	}
	// As the OTel SDKs' TraceIDRatioBased: the low 63 bits of the trace id
	// against ratio × 2^63.
	if s.Ratio >= 1 || x < uint64(s.Ratio*(1<<63)) {
		return KeptByRatio
	}
	return SampledOut
}

// reason is the recorded decision of a kept stream: Decide's result again,
// without its random draw.
func (sm *Sampler) reason(r *state.Result, p parent) Decision {
	switch {
	case sm.cfg.KeepFailed && Failed(r, sm.ttfb):
		return KeptFailed
	case sm.cfg.ParentBased && p.decided && p.sampled:
		return KeptByParent
	}
	return KeptByRatio
}

// encoder builds the ExportTraceServiceRequest of a batch of streams, the
// body both exporters send. It is used by one goroutine at a time (the
// exporter's).
type encoder struct {
	cfg     Config
	sampler *Sampler // for the recorded sampling reason
	getenv  func(string) string
	buf     pb           // reused request body
	zbuf    bytes.Buffer // reused gzipped body
	zw      *gzip.Writer // made on first use: its state is ~1 MB

	mu       sync.Mutex // guards the resource cache
	arn      string
	resource []kvAttr
}

func newEncoder(cfg Config, getenv func(string) string) *encoder {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	return &encoder{cfg: cfg, sampler: NewSampler(cfg.Sampler, cfg.TTFBThreshold), getenv: getenv}
}

// encode returns the request of results (all of them: the caller cuts at
// Batch), gzipped when cfg.Gzip. The bytes are the encoder's, valid until
// the next call.
func (e *encoder) encode(results []state.Result) (body []byte, err error) {
	e.buf = e.appendRequest(e.buf[:0], e.resourceFor(results), results)
	body = []byte(e.buf)
	if e.cfg.Gzip {
		return e.gzip(body)
	}
	return body, nil
}

func (e *encoder) gzip(body []byte) ([]byte, error) {
	e.zbuf.Reset()
	if e.zw == nil {
		e.zw, _ = gzip.NewWriterLevel(&e.zbuf, gzip.BestSpeed)
	} else {
		e.zw.Reset(&e.zbuf)
	}
	if _, err := e.zw.Write(body); err != nil {
		return nil, fmt.Errorf("otlp: gzip: %w", err)
	}
	if err := e.zw.Close(); err != nil {
		return nil, fmt.Errorf("otlp: gzip: %w", err)
	}
	return e.zbuf.Bytes(), nil
}

// resourceFor returns the resource's attributes, made again only when the
// first invoked ARN becomes known (its account and function id).
func (e *encoder) resourceFor(results []state.Result) []kvAttr {
	e.mu.Lock()
	defer e.mu.Unlock()
	arn := e.arn
	if arn == "" {
		for i := range results {
			if results[i].InvokedARN != "" {
				arn = results[i].InvokedARN
				break
			}
		}
	}
	if e.resource == nil || arn != e.arn {
		e.arn, e.resource = arn, e.resourceAttrs(e.getenv, arn)
	}
	return e.resource
}

// streamSpanName is the name of a stream's span inside the function's own
// server span; low-cardinality on purpose (a span name must not carry a
// caller's ids: the bundle and quote ids are attributes).
const streamSpanName = "stream"

// errorType is the span's error.type, which the semantic conventions want
// predictable and low-cardinality, and set only on failure: the truncation
// reason (no-end, short, status-<end status>, runtime-<platform status>,
// shutdown-<reason>: a cause and a normalised word of at most 32 bytes), or
// integrity-mismatch; "" for a stream that did not fail. A stream that was
// only slow to its first byte is kept as failed by the sampler but did not
// fail as an operation: no error.type, no error status.
func errorType(r *state.Result) string {
	switch {
	case r.Verdict.Truncated():
		return r.Verdict.Reason()
	case r.Integrity == 1:
		return "integrity-mismatch"
	}
	return ""
}

// appendSpan appends the Span message of stream r.
//
// The span follows the semantic conventions for AWS Lambda: the invocation
// has one SERVER span, named after the function, with faas.trigger=http.
// When the function sent its own span (a traceparent), that span is the
// server span, and the stream's is INTERNAL inside it, named "stream". Else
// (the caller's span: a traceparent the function took from the request,
// or an X-Ray parent; or none) the stream's span is the invocation's
// server span, and so is named after the function
// (AWS_LAMBDA_FUNCTION_NAME).
func (e *encoder) appendSpan(b pb, r *state.Result) pb {
	p := parentOf(r)
	tid := p.traceID
	if p.kind == noParent {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64()|1) // never all zero
	}
	var sid [8]byte
	binary.BigEndian.PutUint64(sid[:], rand.Uint64()|1)
	b = b.bytesField(1, tid[:]).bytesField(2, sid[:])
	// flags: sampled, and whether the parent is remote (HAS_IS_REMOTE 0x100,
	// IS_REMOTE 0x200).
	flags := uint32(0x01 | 0x100)
	if p.kind != noParent {
		b = b.bytesField(4, p.spanID[:])
		flags |= 0x200
	}
	// The function's own span (traceparent) is the server span of the
	// invocation and this one is inside it; otherwise this span is the
	// function's side of the caller's request.
	kind, name := uint64(2), e.cfg.FunctionName // SPAN_KIND_SERVER
	if p.kind == traceParent {
		kind, name = 1, streamSpanName // SPAN_KIND_INTERNAL
	}
	if name == "" {
		name = streamSpanName // no function name (not in Lambda)
	}
	b = b.str(5, name).uint(6, kind)
	end := r.EndTime
	if end.Before(r.Time) {
		end = r.Time
	}
	if r.InvocationEnd.After(end) {
		// A timeout or crash: the caller waited until the platform ended the
		// invocation, not just until the last chunk.
		end = r.InvocationEnd
	}
	b = b.fixed64(7, unixNano(r.Time)).fixed64(8, unixNano(end))

	b = b.attrStr(9, "faas.invocation_id", r.RequestID)
	if kind == 2 {
		b = b.attrStr(9, "faas.trigger", "http")
	}
	b = b.attrBool(9, "faas.coldstart", r.ColdStart)
	if r.InvokedARN != "" {
		b = b.attrStr(9, "aws.lambda.invoked_arn", r.InvokedARN)
	}
	b = b.attrStr(9, "streamlens.quote_id", r.QuoteID).
		attrInt(9, "streamlens.chunks.delivered", r.Delivered).
		attrInt(9, "streamlens.bytes", r.Bytes).
		attrBool(9, "streamlens.truncated", r.Verdict.Truncated()).
		attrStr(9, "streamlens.status", r.Status).
		attrStr(9, "streamlens.parent", p.kind.String()).
		attrStr(9, "streamlens.sampling.reason", e.sampler.reason(r, p).String())
	for _, kv := range [...]struct{ k, v string }{
		{"error.type", errorType(r)},
		{"streamlens.bundle_id", r.BundleID}, {"streamlens.client_id", r.ClientID},
		{"streamlens.truncation_reason", r.Verdict.Reason()}, {"streamlens.invocation_status", r.InvocationStatus},
	} {
		if kv.v != "" { // error.type and Reason are empty unless failed
			b = b.attrStr(9, kv.k, kv.v)
		}
	}
	if r.Expected >= 0 {
		b = b.attrInt(9, "streamlens.chunks.expected", r.Expected)
	}
	if r.PlatformLatencyMs >= 0 {
		b = b.attrFloat(9, "streamlens.platform.response_latency_ms", r.PlatformLatencyMs)
	}
	if r.HasTTFB {
		b = b.attrFloat(9, "streamlens.ttfb_ms", r.TTFBMs)
	}
	if r.Integrity >= 0 {
		b = b.attrBool(9, "streamlens.integrity_ok", r.Integrity == 0)
	}

	// Events: the first useful byte, then one per chunk up to MaxEvents; the
	// rest are counted in the standard dropped_events_count.
	if r.HasTTFB {
		b = b.msg(11, func(m pb) pb {
			return m.fixed64(1, unixNano(r.Time.Add(msDuration(r.TTFBMs)))).str(2, "first_useful_byte").
				attrFloat(3, "streamlens.offset_ms", r.TTFBMs)
		})
	}
	kept := min(len(r.Chunks), e.cfg.MaxEvents)
	for _, c := range r.Chunks[:kept] {
		at, off := r.Time, 0.0
		if c.LatencyMs >= 0 {
			off = state.Ms(c.LatencyMs)
			at = r.Time.Add(msDuration(off))
		}
		b = b.msg(11, func(m pb) pb {
			return m.fixed64(1, unixNano(at)).str(2, "chunk").
				attrStr(3, "streamlens.instrument", c.Inst).
				attrInt(3, "streamlens.seq", int64(c.Seq)).
				attrInt(3, "streamlens.bytes", int64(c.Bytes)).
				attrFloat(3, "streamlens.offset_ms", off)
		})
	}
	dropped := int64(len(r.Chunks)-kept) + max(0, r.Delivered-int64(len(r.Chunks)))
	b = b.uint(12, uint64(dropped))

	switch {
	case r.Verdict.Truncated():
		b = b.msg(15, func(m pb) pb { return m.str(2, "stream truncated: "+r.Verdict.Reason()).uint(3, 2) }) // STATUS_CODE_ERROR
	case r.Integrity == 1:
		b = b.msg(15, func(m pb) pb { return m.str(2, "integrity mismatch: declared hash differs").uint(3, 2) })
	}
	return b.fixed32(16, flags)
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// resourceAttrs returns the resource's attributes: the Lambda environment's,
// the invoked ARN's account and function (arn, once known), then
// OTEL_RESOURCE_ATTRIBUTES, which wins over what streamlens found.
func (e *encoder) resourceAttrs(getenv func(string) string, arn string) []kvAttr {
	attrs := []kvAttr{
		{k: "service.name", s: e.cfg.ServiceName},
		{k: "cloud.provider", s: "aws"},
		{k: "cloud.platform", s: "aws_lambda"},
		{k: "faas.name", s: e.cfg.FunctionName},
		{k: "telemetry.sdk.name", s: "streamlens"},
		{k: "telemetry.sdk.language", s: "go"},
		{k: "telemetry.sdk.version", s: version.Version},
	}
	opt := func(k, v string) {
		if v != "" {
			attrs = append(attrs, kvAttr{k: k, s: v})
		}
	}
	fv := getenv("AWS_LAMBDA_FUNCTION_VERSION")
	if published(fv) {
		// $LATEST is not a version: the code it names changes with every
		// deployment, and the semantic conventions define faas.version on
		// Lambda as the published version's number. service.version is then
		// only what OTEL_RESOURCE_ATTRIBUTES says, if anything.
		opt("service.version", fv)
		opt("faas.version", fv)
	}
	opt("cloud.region", getenv("AWS_REGION"))
	opt("faas.instance", getenv("AWS_LAMBDA_LOG_STREAM_NAME"))
	if mb := getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"); mb != "" {
		var n int64
		for _, c := range mb {
			if c < '0' || c > '9' || n > 1<<40 {
				n = -1
				break
			}
			n = n*10 + int64(c-'0')
		}
		if n > 0 {
			attrs = append(attrs, kvAttr{k: "faas.max_memory", i: n << 20, isInt: true})
		}
	}
	// arn:aws:lambda:<region>:<account>:function:<name>[:<alias or version>]
	if parts := strings.Split(arn, ":"); len(parts) >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function" {
		opt("cloud.account.id", parts[4])
		// cloud.resource_id is the function's ARN with the version that
		// runs, not the alias it was invoked through.
		id := strings.Join(parts[:7], ":")
		if fv != "" {
			id += ":" + fv
		}
		opt("cloud.resource_id", id)
	}
	for _, kv := range e.cfg.Resource {
		set := false
		for i := range attrs {
			if attrs[i].k == kv.Key {
				attrs[i], set = kvAttr{k: kv.Key, s: kv.Value}, true
			}
		}
		if !set {
			attrs = append(attrs, kvAttr{k: kv.Key, s: kv.Value})
		}
	}
	if e.cfg.ServiceName != "" {
		// OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
		attrs[0] = kvAttr{k: "service.name", s: e.cfg.ServiceName}
	}
	return attrs
}

// published reports whether Lambda function version v is a published one
// (a decimal number), not $LATEST (nor Managed Instances' $LATEST.PUBLISHED,
// a label, not a version).
func published(v string) bool {
	if v == "" || len(v) > 20 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// kvAttr is a resource attribute: a string, or an int when isInt.
type kvAttr struct {
	k, s  string
	i     int64
	isInt bool
}

// appendRequest builds an ExportTraceServiceRequest with one ResourceSpans
// and one ScopeSpans holding the spans of results.
func (e *encoder) appendRequest(out pb, resource []kvAttr, results []state.Result) pb {
	return out.msg(1, func(rs pb) pb {
		rs = rs.msg(1, func(r pb) pb {
			for _, a := range resource {
				if a.isInt {
					r = r.attrInt(1, a.k, a.i)
				} else {
					r = r.attrStr(1, a.k, a.s)
				}
			}
			return r
		})
		rs = rs.msg(2, func(ss pb) pb {
			ss = ss.msg(1, func(sc pb) pb { return sc.str(1, scopeName).str(2, version.Version) })
			for i := range results {
				ss = ss.msg(2, func(m pb) pb { return e.appendSpan(m, &results[i]) })
			}
			return ss.str(3, SchemaURL)
		})
		return rs.str(3, SchemaURL)
	})
}

// parseTraceParent reads a W3C traceparent (version 00, or a later version
// read as 00 as the specification asks).
func parseTraceParent(tp string) (parent, bool) {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || (parts[0] == "00" && len(parts) != 4) || len(parts[3]) != 2 {
		return parent{}, false
	}
	p := parent{kind: traceParent, decided: true}
	if !hexInto(p.traceID[:], parts[1]) || !hexInto(p.spanID[:], parts[2]) || isZero(p.traceID[:]) || isZero(p.spanID[:]) {
		return parent{}, false
	}
	var flags [1]byte
	if !hexInto(flags[:], parts[3]) {
		return parent{}, false
	}
	p.sampled = flags[0]&1 == 1
	return p, true
}

// parseXRay converts an X-Ray trace header
// ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
// to W3C ids: the trace id is the epoch part and the unique part joined.
func parseXRay(h string) (parent, bool) {
	x := xray.Parse(h)
	parts := strings.Split(x.Root, "-")
	if len(parts) != 3 || parts[0] != "1" || len(parts[1]) != 8 || len(parts[2]) != 24 {
		return parent{}, false
	}
	p := parent{kind: xrayParent, decided: x.Sampled == "1", sampled: x.Sampled == "1"}
	if !hexInto(p.traceID[:], parts[1]+parts[2]) || !hexInto(p.spanID[:], x.Parent) || isZero(p.traceID[:]) || isZero(p.spanID[:]) {
		return parent{}, false
	}
	return p, true
}

// hexInto decodes lowercase hex s into dst, which it must fill exactly (W3C
// trace context allows lowercase only).
func hexInto(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

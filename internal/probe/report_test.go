package probe

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/streamlens/streamlens/internal/otlpbody"
	"github.com/streamlens/streamlens/metrics"

	"github.com/streamlens/streamlens/internal/syncbuf"
)

// Progress is called at the first byte and after every chunk, with the
// chunks so far; the result's Start is when the request went out.
func TestProgressFollowsTheStream(t *testing.T) {
	srv := httptest.NewServer(pricing(4, false, false))
	defer srv.Close()
	var seen []int
	before := time.Now()
	r, err := Run(context.Background(), Config{URL: srv.URL, Progress: func(p Progress) {
		if p.Status != 200 {
			t.Errorf("progress before the status: %+v", p)
		}
		seen = append(seen, len(p.Chunks))
	}})
	if err != nil {
		t.Fatal(err)
	}
	// headers (0 chunks), then 1..5 (4 quotes and the end marker)
	if want := []int{0, 1, 2, 3, 4, 5}; !equal(seen, want) {
		t.Errorf("progress saw %v chunks, want %v", seen, want)
	}
	if r.Start.Before(before) || r.Start.After(time.Now()) {
		t.Errorf("start %v not within the call", r.Start)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A request that gets no response is the worst truncation a caller sees:
// the result says so, without the URL (its query may hold a credential).
func TestFailedRequestIsATruncation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	r, err := Run(context.Background(), Config{URL: "http://" + addr + "/?X-Amz-Signature=s3cr3t"})
	if err == nil || r.Err == nil || !r.Truncated || !strings.HasPrefix(r.Reason, "request: ") || strings.Contains(r.Reason, "s3cr3t") {
		t.Errorf("err %v, result %+v", err, r)
	}
	if r.Start.IsZero() || r.TraceParent == "" {
		t.Errorf("a failed request still has its start and traceparent: %+v", r)
	}
}

// The timeline shows each chunk in its share of the time, scaled to the
// busiest cell, dots before the first byte, '|' at the first useful chunk.
func TestFrame(t *testing.T) {
	ms := time.Millisecond
	at := []time.Duration{50 * ms, 55 * ms, 60 * ms, 90 * ms}
	line1, line2 := frame("pricing", 100*ms, Progress{Status: 200, TTFB: 40 * ms, FirstUseful: 50 * ms, Bytes: 2048}, at, []bool{true, true, true, false}, 10)
	for _, want := range []string{"pricing", "100.0 ms", "status 200", "ttfb 40.0 ms", "first useful 50.0 ms", "4 chunks", "2.0 KiB", "last 10.0 ms ago"} {
		if !strings.Contains(line1, want) {
			t.Errorf("progress %q lacks %q", line1, want)
		}
	}
	// cells of 10 ms: dots before the first byte (40 ms, cell 4), 50 and
	// 55 in cell 5 (the first useful: '|'), 60 in cell 6 and 90 in 9 (each
	// half the busiest cell's two: '▅').
	if want := "  [···· |▅  ▅]"; line2 != want {
		t.Errorf("timeline %q, want %q", line2, want)
	}
	line1, _ = frame("p", 3*time.Second, Progress{}, nil, nil, 10)
	if !strings.Contains(line1, "3.00 s") || !strings.Contains(line1, "connecting") {
		t.Errorf("before the response: %q", line1)
	}
}

// The live view redraws on every chunk and, while nothing arrives, on its
// tick (time visibly passes on a stalled stream); End clears its lines.
func TestLiveView(t *testing.T) {
	var out syncbuf.Buffer // the live view's ticker writes it while the test reads
	l := NewLive(&out, "canary")
	l.tick = 5 * time.Millisecond
	srv := httptest.NewServer(pricing(3, false, false))
	defer srv.Close()
	l.Begin()
	r, err := Run(context.Background(), Config{URL: srv.URL, Progress: l.Progress})
	if err != nil || r.Truncated {
		t.Fatal(err, r.Reason)
	}
	frames := strings.Count(out.String(), "\r\x1b[K")
	time.Sleep(40 * time.Millisecond) // nothing arrives: the tick redraws
	ticked := strings.Count(out.String(), "\r\x1b[K") - frames
	l.End()
	s := out.String()
	if frames < 1+1+4 || !strings.Contains(s, "4 chunks") || !strings.Contains(s, "status 200") {
		t.Errorf("%d frames drawn during the stream:\n%q", frames, s)
	}
	if ticked < 2 {
		t.Errorf("%d frames while nothing arrived", ticked)
	}
	if !strings.HasSuffix(s, "\r\x1b[K\n\x1b[K\x1b[A\r") {
		t.Errorf("End did not clear the view: %q", s[max(0, len(s)-40):])
	}
	n := len(out.String())
	time.Sleep(20 * time.Millisecond)
	if len(out.String()) != n {
		t.Error("the view still draws after End")
	}
}

// emfDoc is one decoded EMF line.
type emfDoc struct {
	raw     map[string]any
	ns      string
	dims    [][]string
	metrics map[string]string // name → unit
}

func decodeEMF(t *testing.T, b []byte) []emfDoc {
	t.Helper()
	var docs []emfDoc
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		var aws struct {
			AWS struct {
				CloudWatchMetrics []struct {
					Namespace  string
					Dimensions [][]string
					Metrics    []struct{ Name, Unit string }
				}
			} `json:"_aws"`
		}
		_ = json.Unmarshal([]byte(line), &aws)
		d := emfDoc{raw: raw, metrics: map[string]string{}}
		for _, cw := range aws.AWS.CloudWatchMetrics {
			d.ns, d.dims = cw.Namespace, cw.Dimensions
			for _, m := range cw.Metrics {
				d.metrics[m.Name] = m.Unit
			}
		}
		docs = append(docs, d)
	}
	return docs
}

// The caller's figures become metrics under the probe's own dimension, each
// with the unit package metrics defines; every defined caller metric is
// written by one of a complete stream, a wrong hash and a failed request,
// and every key written is defined.
func TestEMF(t *testing.T) {
	srv := httptest.NewServer(pricing(5, false, false))
	bad := httptest.NewServer(pricing(5, true, false))
	// localhost: a name to look up, so that the DNS phase is taken.
	ok, _ := Run(context.Background(), Config{URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/?instruments=5"})
	wrong, _ := Run(context.Background(), Config{URL: bad.URL})
	srv.Close()
	bad.Close()
	failed, _ := Run(context.Background(), Config{URL: srv.URL}) // closed: refused
	e := EMF{Probe: "pricing-canary"}
	var out []byte
	for _, r := range []Result{ok, wrong, failed} {
		var err error
		if out, err = e.Append(out, r); err != nil {
			t.Fatal(err)
		}
	}
	docs := decodeEMF(t, out)
	if len(docs) != 3 {
		t.Fatalf("%d documents", len(docs))
	}
	units := map[string]string{}
	for _, d := range metrics.ProbeDefs() {
		units[d.Name] = string(d.Unit)
	}
	known := map[string]bool{"_aws": true, metrics.DimProbe: true}
	for _, p := range metrics.ProbeProperties() {
		known[p] = true
	}
	seen := map[string]bool{}
	for i, d := range docs {
		if d.ns != metrics.DefaultNamespace || len(d.dims) != 1 || len(d.dims[0]) != 1 || d.dims[0][0] != metrics.DimProbe || d.raw[metrics.DimProbe] != "pricing-canary" {
			t.Errorf("doc %d: namespace %q dimensions %v probe %v", i, d.ns, d.dims, d.raw[metrics.DimProbe])
		}
		for name, unit := range d.metrics {
			seen[name] = true
			if units[name] != unit {
				t.Errorf("doc %d: %s in %q, defined %q", i, name, unit, units[name])
			}
		}
		for k := range d.raw {
			if _, isMetric := d.metrics[k]; !isMetric && !known[k] {
				t.Errorf("doc %d: key %q is defined nowhere in package metrics", i, k)
			}
		}
	}
	for name := range units {
		if !seen[name] && name != metrics.CallerTLS { // plain HTTP here: no handshake
			t.Errorf("%s is defined but never written", name)
		}
	}
	complete, mismatch, refused := docs[0].raw, docs[1].raw, docs[2].raw
	if complete[metrics.CallerTruncated] != 0.0 || complete[metrics.CallerChunks] != 6.0 || complete[metrics.CallerIntegrityMismatch] != 0.0 ||
		complete[metrics.PropProbeVerdict] != "complete" || complete[metrics.CallerTimeToFirstByte].(float64) <= 0 ||
		complete[metrics.PropTraceParent] != ok.TraceParent || complete[metrics.PropHTTPStatus] != 200.0 ||
		!strings.HasSuffix(complete[metrics.PropProbeURL].(string), "/?instruments=5") {
		t.Errorf("complete: %v", complete)
	}
	if mismatch[metrics.CallerTruncated] != 1.0 || mismatch[metrics.CallerIntegrityMismatch] != 1.0 || mismatch[metrics.PropTruncateReason] != "sha256 mismatch" {
		t.Errorf("wrong hash: %v", mismatch)
	}
	if refused[metrics.CallerTruncated] != 1.0 || refused[metrics.PropProbeVerdict] != "truncated" {
		t.Errorf("failed request: %v", refused)
	}
	for _, m := range []string{metrics.CallerTimeToFirstByte, metrics.CallerResponseTime, metrics.CallerChunks} {
		if _, ok := refused[m]; ok {
			t.Errorf("a request without a response has a %s: %v", m, refused)
		}
	}
}

// The caller's metrics are defined once: no name is also one of the
// extension's, which would mix the two views in one series.
func TestProbeMetricsAreTheirOwn(t *testing.T) {
	ext := map[string]bool{}
	for _, d := range metrics.Defs() {
		ext[d.Name] = true
	}
	seen := map[string]bool{}
	for _, d := range metrics.ProbeDefs() {
		if ext[d.Name] || seen[d.Name] || d.Unit == "" || d.Description == "" {
			t.Errorf("%+v: defined twice, or without a unit or a description", d)
		}
		seen[d.Name] = true
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@h.example/x?instruments=5&X-Amz-Signature=abc&sig=1": "https://REDACTED@h.example/x?instruments=5&X-Amz-Signature=REDACTED&sig=REDACTED",
		"http://h:8080/":  "http://h:8080/",
		"http://[::1:bad": "(a URL that does not parse, not shown)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// collector is an OTLP/HTTP receiver that decodes what it gets with the
// collector's own pdata, as a collector would.
type collector struct {
	mu      sync.Mutex
	spans   []ptrace.Span
	res     []map[string]any
	headers []http.Header
	answer  []int // status codes to answer with, in turn; then 200
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = append(c.headers, r.Header.Clone())
	if len(c.answer) > 0 {
		code := c.answer[0]
		c.answer = c.answer[1:]
		w.WriteHeader(code)
		return
	}
	body, err := otlpbody.Read(r, 1<<20)
	er := ptraceotlp.NewExportRequest()
	if err == nil {
		err = er.UnmarshalProto(body)
	}
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	rss := er.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		c.res = append(c.res, rss.At(i).Resource().Attributes().AsRaw())
		for j := 0; j < rss.At(i).ScopeSpans().Len(); j++ {
			ss := rss.At(i).ScopeSpans().At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				c.spans = append(c.spans, ss.At(k))
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The probe's client span reaches a collector as the collector reads it:
// the ids of the traceparent sent (the function's spans are its children),
// CLIENT, named after the method, the HTTP attributes, and an event at the
// caller's receive time of every chunk; a truncated response is an error
// with its error.type.
func TestSpanReachesACollector(t *testing.T) {
	col := &collector{answer: []int{http.StatusServiceUnavailable}} // one retryable refusal first
	cs := httptest.NewServer(col)
	defer cs.Close()
	o, err := OTLPFromEnv(env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": cs.URL, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k%3D1",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=canary",
		"AWS_LAMBDA_FUNCTION_NAME": "pricing-canary", "AWS_REGION": "eu-west-1",
		"STREAMLENS_SPAN_MAX_EVENTS": "4",
	}))
	if err != nil || o == nil {
		t.Fatal(o, err)
	}
	fn := httptest.NewServer(pricing(5, false, false))
	r, _ := Run(context.Background(), Config{URL: fn.URL + "/?instruments=5"})
	cut := httptest.NewServer(pricing(4, false, true))
	rc, _ := Run(context.Background(), Config{URL: cut.URL})
	fn.Close()
	cut.Close()
	for _, res := range []Result{r, rc} {
		if err := o.Export(context.Background(), res, "pricing-canary"); err != nil {
			t.Fatal(err)
		}
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.spans) != 2 || len(col.headers) != 3 {
		t.Fatalf("%d spans in %d requests", len(col.spans), len(col.headers))
	}
	if h := col.headers[1]; h.Get("Api-Key") != "k=1" || h.Get("Content-Encoding") != "gzip" || h.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("request headers %v", h)
	}
	res := col.res[0]
	if res["service.name"] != DefaultServiceName || res["faas.name"] != "pricing-canary" || res["cloud.region"] != "eu-west-1" ||
		res["deployment.environment.name"] != "canary" {
		t.Errorf("resource %v", res)
	}
	s := col.spans[0]
	parts := strings.Split(r.TraceParent, "-")
	tid, sid := s.TraceID(), s.SpanID()
	if hex.EncodeToString(tid[:]) != parts[1] || hex.EncodeToString(sid[:]) != parts[2] || !s.ParentSpanID().IsEmpty() {
		t.Errorf("span ids %x/%x parent %x, traceparent %s", tid, sid, s.ParentSpanID(), r.TraceParent)
	}
	attrs := s.Attributes().AsRaw()
	if s.Kind() != ptrace.SpanKindClient || s.Name() != "GET" || attrs["http.request.method"] != "GET" ||
		attrs["http.response.status_code"] != int64(200) || attrs["server.address"] != "127.0.0.1" ||
		attrs["streamlens.probe.name"] != "pricing-canary" || attrs["streamlens.integrity_ok"] != true ||
		attrs["streamlens.chunks.received"] != int64(6) || s.Status().Code() != ptrace.StatusCodeUnset {
		t.Errorf("span %s %v: %v", s.Name(), s.Kind(), attrs)
	}
	if !s.StartTimestamp().AsTime().Equal(r.Start) || !s.EndTimestamp().AsTime().Equal(r.Start.Add(r.Total)) {
		t.Errorf("span from %v to %v, probe from %v for %v", s.StartTimestamp().AsTime(), s.EndTimestamp().AsTime(), r.Start, r.Total)
	}
	// first_byte, then 4 of the 6 chunks (STREAMLENS_SPAN_MAX_EVENTS), the
	// other 2 counted dropped.
	ev := s.Events()
	if ev.Len() != 5 || ev.At(0).Name() != "first_byte" || s.DroppedEventsCount() != 2 {
		t.Fatalf("%d events, %d dropped", ev.Len(), s.DroppedEventsCount())
	}
	for i := 1; i < ev.Len(); i++ {
		e := ev.At(i)
		if e.Name() != "chunk_received" || !e.Timestamp().AsTime().Equal(r.Start.Add(r.Chunks[i-1].At)) ||
			e.Attributes().AsRaw()["streamlens.seq"] != int64(i) || e.Attributes().AsRaw()["streamlens.bytes"] != int64(r.Chunks[i-1].Bytes) {
			t.Errorf("event %d: %s at %v %v, chunk at %v", i, e.Name(), e.Timestamp().AsTime(), e.Attributes().AsRaw(), r.Start.Add(r.Chunks[i-1].At))
		}
	}
	c := col.spans[1]
	if c.Status().Code() != ptrace.StatusCodeError || c.Attributes().AsRaw()["error.type"] != "Runtime.HandlerError" ||
		c.Attributes().AsRaw()["streamlens.truncated"] != true {
		t.Errorf("truncated span: %v %v", c.Status().Code(), c.Attributes().AsRaw())
	}
}

// No endpoint, no spans (the probe is a command, not a service with a
// collector beside it); off is off; grpc is refused aloud, not lost.
func TestOTLPFromEnv(t *testing.T) {
	for name, c := range map[string]struct {
		env       map[string]string
		on, isErr bool
	}{
		"nothing set":     {map[string]string{}, false, false},
		"endpoint":        {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"}, true, false},
		"streamlens on":   {map[string]string{"STREAMLENS_OTLP": "on"}, true, false},
		"sdk disabled":    {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false, false},
		"exporter none":   {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false, false},
		"grpc":            {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, true},
		"bad compression": {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, true, true},
		"missing CA":      {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, false, true},
	} {
		o, err := OTLPFromEnv(env(c.env))
		if (o != nil) != c.on || (err != nil) != c.isErr {
			t.Errorf("%s: exporter %v, error %v", name, o != nil, err)
		}
		if name == "grpc" && (err == nil || !strings.Contains(err.Error(), "http/protobuf only")) {
			t.Errorf("grpc: %v", err)
		}
		if name == "endpoint" && (o.url != "http://collector.example:4318/v1/traces" || o.timeout != defaultOTLPTimeout) {
			t.Errorf("endpoint: %s, timeout %v", o.url, o.timeout)
		}
	}
}

// A collector that rejects part of a request says why; one that answers
// 400 is not retried; neither shows the endpoint's credentials.
func TestExportFailuresAreSaid(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("mode") == "partial" {
			w.Header().Set("Content-Type", "application/x-protobuf")
			// partial_success{rejected_spans: 1, error_message: "too old"}
			_, _ = w.Write([]byte{0x0a, 0x0b, 0x08, 0x01, 0x12, 0x07, 't', 'o', 'o', ' ', 'o', 'l', 'd'})
			return
		}
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	r := Result{TraceParent: newTraceParent(), Start: time.Now(), URL: "http://f.example/"}
	for mode, want := range map[string]string{"partial": "rejected the span: too old", "bad": "answered 400"} {
		mu.Lock()
		calls = 0
		mu.Unlock()
		o, err := OTLPFromEnv(env(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/v1/traces?mode=" + mode + "&token=s3cr3t"}))
		if err != nil {
			t.Fatal(err)
		}
		err = o.Export(context.Background(), r, "p")
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cr3t") || calls != 1 {
			t.Errorf("%s: %v after %d calls", mode, err, calls)
		}
	}
}

// The body is a TracesData, which is an ExportTraceServiceRequest on the
// wire: gzip aside, what the collector decoded above. Here: a span whose
// traceparent does not parse is not exported.
func TestNoIDsNoSpan(t *testing.T) {
	o, _ := OTLPFromEnv(env(map[string]string{"STREAMLENS_OTLP": "on"}))
	if err := o.Export(context.Background(), Result{TraceParent: "garbage", Start: time.Now()}, "p"); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("export of a span without ids: %v", err)
	}
}

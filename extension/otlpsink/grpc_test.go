package otlpsink

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // the server accepts grpc-encoding gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
)

// grpcCollector is a real gRPC TraceService (google.golang.org/grpc, the
// official generated types): it keeps what it decoded, and answers with
// answer (the errors in turn, the last one for good; nil is OK).
type grpcCollector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu     sync.Mutex
	got    []*collectorpb.ExportTraceServiceRequest
	md     []metadata.MD
	wire   []wire // what the stats handler saw of each call
	answer []error
	reply  *collectorpb.ExportTraceServiceResponse
	hang   bool
	url    string
}

// wire is what a call looked like on the wire.
type wire struct {
	compression    string // grpc-encoding
	length, onWire int    // the message's length, and as sent
	deadline       bool   // a grpc-timeout gave the call a deadline
}

func (c *grpcCollector) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *grpcCollector) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *grpcCollector) HandleConn(context.Context, stats.ConnStats) {}
func (c *grpcCollector) HandleRPC(_ context.Context, s stats.RPCStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		c.wire = append(c.wire, wire{compression: s.Compression})
	case *stats.InPayload:
		if n := len(c.wire); n > 0 {
			c.wire[n-1].length, c.wire[n-1].onWire = s.Length, s.CompressedLength
		}
	}
}

func (c *grpcCollector) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, deadline := ctx.Deadline()
	c.mu.Lock()
	c.got = append(c.got, req)
	c.md = append(c.md, md)
	if n := len(c.wire); n > 0 {
		c.wire[n-1].deadline = deadline
	}
	var err error
	if len(c.answer) > 0 {
		err = c.answer[0]
		if len(c.answer) > 1 {
			c.answer = c.answer[1:]
		}
	}
	reply, hang := c.reply, c.hang
	c.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	if reply == nil {
		reply = &collectorpb.ExportTraceServiceResponse{}
	}
	return reply, nil
}

func (c *grpcCollector) requests() ([]*collectorpb.ExportTraceServiceRequest, []metadata.MD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*collectorpb.ExportTraceServiceRequest(nil), c.got...), append([]metadata.MD(nil), c.md...)
}

// newGRPCCollector serves a grpcCollector on 127.0.0.1:0 in plain text
// (h2c with prior knowledge, as gRPC's insecure credentials do).
func newGRPCCollector(t testing.TB, answer ...error) *grpcCollector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &grpcCollector{answer: answer, url: "http://" + ln.Addr().String()}
	s := grpc.NewServer(grpc.StatsHandler(c))
	collectorpb.RegisterTraceServiceServer(s, c)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return c
}

func newGRPCExporter(t *testing.T, o config.OTLP) *Exporter {
	t.Helper()
	o.Protocol = config.ProtocolGRPC
	return newExporter(t, o, map[string]string{"AWS_LAMBDA_FUNCTION_VERSION": "3"})
}

// Spans go to a real gRPC collector, plain and gzipped, with the configured
// headers as metadata; what it decodes with the official types is what
// OTLP/HTTP sends (pdata agrees), and nothing is lost.
func TestGRPCExport(t *testing.T) {
	for _, gz := range []bool{false, true} {
		col := newGRPCCollector(t)
		// A path on the endpoint is not used: the gRPC method is the path.
		e := newGRPCExporter(t, config.OTLP{URL: col.url + "/ignored", Gzip: gz, Sampler: defaultSampler,
			Headers: []config.KV{{Key: "X-Api-Key", Value: "s3cret"}}})
		r := healthy()
		r.XRayTrace = xrayUnsampled
		r.Verdict = state.Verdict{Cause: state.Platform, Detail: "timeout", Class: state.Service}
		results := []state.Result{r, healthy(), healthy()}
		if lost, err := e.Export(context.Background(), results); lost != 0 || err != nil {
			t.Fatalf("gzip %v: lost %d: %v", gz, lost, err)
		}
		reqs, mds := col.requests()
		if len(reqs) != 1 {
			t.Fatalf("gzip %v: %d calls", gz, len(reqs))
		}
		md := mds[0]
		if got := md.Get("x-api-key"); len(got) != 1 || got[0] != "s3cret" {
			t.Errorf("gzip %v: metadata %v", gz, md)
		}
		col.mu.Lock()
		w := col.wire[0]
		col.mu.Unlock()
		if gz && (w.compression != "gzip" || w.onWire >= w.length) || !gz && (w.compression != "" || w.onWire != w.length) {
			t.Errorf("gzip %v: %+v", gz, w)
		}
		body, _ := proto.Marshal(reqs[0])
		req := decodeStrict(t, body)
		spans := req.ResourceSpans[0].ScopeSpans[0].Spans
		if len(spans) != 3 || spans[0].Name != "pricing" || spans[0].Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR ||
			attrs(spans[0].Attributes)["error.type"] != "runtime-timeout" {
			t.Errorf("gzip %v: %d spans, first %v", gz, len(spans), spans[0])
		}
		if res := attrs(req.ResourceSpans[0].Resource.Attributes); res["faas.version"] != "3" || res["service.name"] != nil && res["faas.name"] != "pricing" {
			t.Errorf("gzip %v: resource %v", gz, res)
		}
		// The same request as OTLP/HTTP sends, byte for byte (ids apart).
		pr := ptraceotlp.NewExportRequest()
		if err := pr.UnmarshalProto(body); err != nil || pr.Traces().SpanCount() != 3 {
			t.Errorf("gzip %v: pdata: %v", gz, err)
		}
	}
}

// The codes the OTLP specification calls retryable are retried within the
// budget, RESOURCE_EXHAUSTED only with RetryInfo; the others are failures
// at once, their message said; a partial success loses the rejected spans.
func TestGRPCRetriesAndPartialSuccess(t *testing.T) {
	two := []state.Result{healthy(), healthy()}
	withRetryInfo, _ := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(20 * time.Millisecond)})
	tooLong, _ := status.New(codes.ResourceExhausted, "come back tomorrow").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Hour)})
	for _, c := range []struct {
		name   string
		answer []error
		lost   int
		calls  int
		says   string
	}{
		{"unavailable then OK", []error{status.Error(codes.Unavailable, "restarting"), nil}, 0, 2, ""},
		{"aborted, unavailable, then OK", []error{status.Error(codes.Aborted, "x"), status.Error(codes.Unavailable, "y"), nil}, 0, 3, ""},
		{"unavailable to the end", []error{status.Error(codes.Unavailable, "down")}, 2, maxAttempts, "UNAVAILABLE: down"},
		{"resource exhausted", []error{status.Error(codes.ResourceExhausted, "quota"), nil}, 2, 1, "RESOURCE_EXHAUSTED: quota"},
		{"resource exhausted with RetryInfo", []error{withRetryInfo.Err(), nil}, 0, 2, ""},
		{"RetryInfo past the limit", []error{tooLong.Err(), nil}, 2, 1, "come back tomorrow"},
		{"invalid argument", []error{status.Error(codes.InvalidArgument, "bad span 50% off"), nil}, 2, 1, "INVALID_ARGUMENT: bad span 50% off"},
		{"unauthenticated", []error{status.Error(codes.Unauthenticated, "no key"), nil}, 2, 1, "UNAUTHENTICATED: no key"},
	} {
		col := newGRPCCollector(t, c.answer...)
		e := newGRPCExporter(t, config.OTLP{URL: col.url})
		start := time.Now()
		lost, err := e.Export(context.Background(), two)
		reqs, _ := col.requests()
		if lost != c.lost || len(reqs) != c.calls || (err == nil) != (c.lost == 0) || err != nil && !strings.Contains(err.Error(), c.says) ||
			errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: lost %d after %d calls: %v", c.name, lost, len(reqs), err)
		}
		if c.name == "resource exhausted with RetryInfo" && time.Since(start) < 20*time.Millisecond {
			t.Errorf("%s: retried after %v, before the RetryInfo's 20ms", c.name, time.Since(start))
		}
	}
	// HTTP 503 from whatever is in front of the collector is UNAVAILABLE:
	// retried.
	var asked atomic.Int64
	lb := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	lb.Config.Protocols = new(http.Protocols)
	lb.Config.Protocols.SetUnencryptedHTTP2(true)
	lb.Start()
	defer lb.Close()
	e503 := newGRPCExporter(t, config.OTLP{URL: lb.URL})
	if lost, err := e503.Export(context.Background(), two); lost != 2 || err == nil || asked.Load() != maxAttempts ||
		!strings.Contains(err.Error(), "HTTP 503 (UNAVAILABLE)") || strings.Contains(err.Error(), notGRPC) {
		t.Errorf("503: lost %d after %d calls: %v", lost, asked.Load(), err)
	}
	col := newGRPCCollector(t)
	col.reply = &collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "span too old"}}
	e := newGRPCExporter(t, config.OTLP{URL: col.url})
	if lost, err := e.Export(context.Background(), two); lost != 1 || err == nil || !strings.Contains(err.Error(), "span too old") {
		t.Errorf("partial success: lost %d: %v", lost, err)
	}
}

// A call the budget ends before the collector answers is of unknown
// outcome, as over HTTP.
func TestGRPCBudgetCutIsUnknown(t *testing.T) {
	col := newGRPCCollector(t)
	col.hang = true
	e := newGRPCExporter(t, config.OTLP{URL: col.url})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	if lost, err := e.Export(ctx, []state.Result{healthy(), healthy()}); lost != 2 || !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("lost %d: %v", lost, err)
	}
	// A deadline is the budget too; it is not sent as grpc-timeout (the
	// budget is paused over freezes: the collector's clock is not).
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if lost, err := e.Export(ctx, []state.Result{healthy()}); lost != 1 || !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("deadline: lost %d: %v", lost, err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, w := range col.wire {
		if w.deadline {
			t.Errorf("grpc-timeout sent: %+v", col.wire)
		}
	}
	// The collector's own DEADLINE_EXCEEDED, or a reset call: it may have
	// taken the spans.
	for name, answer := range map[string]error{
		"DEADLINE_EXCEEDED": status.Error(codes.DeadlineExceeded, "too slow"),
	} {
		c := newGRPCCollector(t, answer)
		e := newGRPCExporter(t, config.OTLP{URL: c.url})
		if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 1 || !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: lost %d: %v", name, lost, err)
		}
		if reqs, _ := c.requests(); len(reqs) != maxAttempts {
			t.Errorf("%s: %d calls, want %d (retryable)", name, len(reqs), maxAttempts)
		}
	}
	// An HTTP/2 server that resets the call (RST_STREAM) once it read it.
	reset := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		panic(http.ErrAbortHandler)
	}))
	reset.Config.Protocols = new(http.Protocols)
	reset.Config.Protocols.SetHTTP1(true)
	reset.Config.Protocols.SetUnencryptedHTTP2(true)
	reset.Config.ErrorLog = log.New(io.Discard, "", 0)
	reset.Start()
	defer reset.Close()
	e = newGRPCExporter(t, config.OTLP{URL: reset.URL})
	if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 1 || !errors.Is(err, ErrOutcomeUnknown) ||
		!strings.Contains(err.Error(), "reset") {
		t.Errorf("reset: lost %d: %v", lost, err)
	}
}

// protocol grpc towards an endpoint that is not gRPC — an HTTP/1 server,
// an OTLP/HTTP collector, a gRPC server's refused port — fails loudly: the
// spans are counted lost (not unknown), and the message says what is wrong
// and shows no credential of the endpoint.
func TestGRPCToANonGRPCEndpointFailsLoudly(t *testing.T) {
	http1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer http1.Close()
	col := newCollector(t) // OTLP/HTTP on HTTP/1
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	ca := writeCA(t, h2)
	tls1 := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})) // HTTP/1 only
	defer tls1.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	for name, c := range map[string]struct {
		url, ca, says string
	}{
		"HTTP/1 server":       {http1.URL, "", "not an OTLP/gRPC endpoint"},
		"OTLP/HTTP":           {strings.TrimSuffix(col.url, "/v1/traces"), "", "not an OTLP/gRPC endpoint"},
		"HTTP/2 without gRPC": {h2.URL, ca, "HTTP 404 (UNIMPLEMENTED)"},
		"refused":             {"http://" + refused, "", "refused"},
		"TLS without HTTP/2":  {tls1.URL, writeCA(t, tls1), "not an OTLP/gRPC endpoint"},
	} {
		u := strings.Replace(c.url, "://", "://alice:s3cret-pw@", 1) + "/?api_key=s3cret-key"
		e := newGRPCExporter(t, config.OTLP{URL: u, CACert: c.ca})
		lost, err := e.Export(context.Background(), []state.Result{healthy()})
		if lost != 1 || err == nil || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: lost %d: %v", name, lost, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "alice") {
			t.Errorf("%s: a credential is shown: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

// An https:// endpoint is gRPC over TLS (ALPN h2), trusting
// OTEL_EXPORTER_OTLP_CERTIFICATE.
func TestGRPCOverTLS(t *testing.T) {
	col := &grpcCollector{}
	s := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(s, col)
	srv := httptest.NewUnstartedServer(s) // grpc.Server serves HTTP/2 as an http.Handler
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake below
	srv.StartTLS()
	defer srv.Close()
	e := newGRPCExporter(t, config.OTLP{URL: srv.URL, CACert: writeCA(t, srv), Gzip: true})
	if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 0 || err != nil {
		t.Fatalf("lost %d: %v", lost, err)
	}
	if reqs, _ := col.requests(); len(reqs) != 1 || len(reqs[0].ResourceSpans[0].ScopeSpans[0].Spans) != 1 {
		t.Errorf("%d calls", len(reqs))
	}
	// Without the CA the handshake fails: a failure, not an unknown.
	e = newGRPCExporter(t, config.OTLP{URL: srv.URL})
	if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 1 || err == nil || errors.Is(err, ErrOutcomeUnknown) ||
		!strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), notGRPC) {
		t.Errorf("untrusted: lost %d: %v", lost, err)
	}
	// https:// towards a plaintext gRPC collector says so.
	plain := newGRPCCollector(t)
	e = newGRPCExporter(t, config.OTLP{URL: strings.Replace(plain.url, "http://", "https://", 1)})
	if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 1 || err == nil || errors.Is(err, ErrOutcomeUnknown) ||
		!strings.Contains(err.Error(), "does not answer TLS") {
		t.Errorf("https to plaintext: lost %d: %v", lost, err)
	}
}

// writeCA writes srv's certificate as a PEM file and returns its path.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A grpc endpoint that is not an http(s) URL is refused by New, redacted.
func TestGRPCEndpointMustBeAURL(t *testing.T) {
	_, err := New(Config{OTLP: config.OTLP{Protocol: config.ProtocolGRPC, URL: "alice:s3cret@collector:4317"}}, nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("%v", err)
	}
}

func TestRetryInfo(t *testing.T) {
	st, _ := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.ErrorInfo{Reason: "r"},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	b, _ := proto.Marshal(st.Proto())
	for _, enc := range []func([]byte) string{base64Raw, base64Padded} {
		if d, ok := retryInfo(enc(b)); !ok || d != 1500*time.Millisecond {
			t.Errorf("%v %v", d, ok)
		}
	}
	neg, _ := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(-time.Second)})
	b, _ = proto.Marshal(neg.Proto())
	if d, ok := retryInfo(base64Raw(b)); !ok || d <= maxRetryWait {
		t.Errorf("a negative delay: %v %v", d, ok)
	}
	for _, bad := range []string{"", "!!", base64Raw([]byte{0xff})} {
		if _, ok := retryInfo(bad); ok {
			t.Errorf("%q read", bad)
		}
	}
}

func base64Raw(b []byte) string    { return base64.RawStdEncoding.EncodeToString(b) }
func base64Padded(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// BenchmarkGRPCExport: the span export of a 50-chunk stream to a live gRPC
// collector, plain and gzipped (compare BenchmarkSpanExport's live runs).
func BenchmarkGRPCExport(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(map[bool]string{false: "live", true: "live-gzip"}[gz], func(b *testing.B) {
			col := newGRPCCollector(b)
			e, err := New(Config{OTLP: config.OTLP{Protocol: config.ProtocolGRPC, URL: col.url, Gzip: gz}, FunctionName: "pricing",
				MaxEvents: 128, TTFBThreshold: 100 * time.Millisecond}, nil)
			if err != nil {
				b.Fatal(err)
			}
			r := healthy()
			for i := range 50 {
				r.Chunks = append(r.Chunks, state.Chunk{Inst: "INST", LatencyMs: float32(i), Seq: uint32(i + 1), Bytes: 190})
			}
			start := time.Now()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
				if lost, err := e.Export(ctx, []state.Result{r}); lost != 0 {
					b.Fatal(err)
				}
				cancel()
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/flush")
		})
	}
}

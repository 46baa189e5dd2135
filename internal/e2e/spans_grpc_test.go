package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"
)

// grpcReceiver is a real OTLP/gRPC TraceService; it hands what it decoded
// to an otlpReceiver, through pdata as a collector would.
type grpcReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	t   *testing.T
	rcv *otlpReceiver
}

func (g *grpcReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	b, _ := proto.Marshal(req)
	er := ptraceotlp.NewExportRequest()
	if err := er.UnmarshalProto(b); err != nil {
		g.t.Errorf("pdata: %v", err)
	}
	g.rcv.add(er.Traces())
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func newGRPCReceiver(t *testing.T) (*otlpReceiver, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	s := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(s, &grpcReceiver{t: t, rcv: rcv})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return rcv, "http://" + ln.Addr().String()
}

// OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the spans reach a real gRPC collector,
// gzipped, and no configuration error is counted.
func TestSpansOverGRPC(t *testing.T) {
	rcv, url := newGRPCReceiver(t)
	e := start(t, withOTLP(url, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_COMPRESSION=gzip"))
	e.invoke(t, "instruments=5")
	s := rcv.one(t, e)
	if s.name != "pricing" || countEvents(s, "chunk") != 5 || s.resource["faas.name"] != "pricing" || s.resource["service.version"] != nil {
		t.Errorf("span %s, %d chunk events, resource %v", s.name, countEvents(s, "chunk"), s.resource)
	}
	ds := e.log.docs(t)
	if sumKey(ds, "ConfigErrors") != 0 || sumKey(ds, "SpanExportFailures") != 0 {
		t.Errorf("ConfigErrors %v, SpanExportFailures %v", sumKey(ds, "ConfigErrors"), sumKey(ds, "SpanExportFailures"))
	}
}

// grpc towards an OTLP/HTTP (HTTP/1) collector: every span is counted lost,
// and said on stderr.
func TestGRPCToAnHTTPCollectorIsCounted(t *testing.T) {
	var asked atomic.Int64
	http1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Add(1) }))
	defer http1.Close()
	e := start(t, withOTLP(http1.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"))
	for i := 0; i < 3; i++ {
		e.invoke(t, "instruments=5")
	}
	e.sb.Close()
	ds := e.log.waitDocs(t, "3 streams", func(ds []doc) bool { return len(streamDocs(ds)) == 3 })
	// (Go's HTTP/1 server hands the HTTP/2 preface to the handler as a
	// PRI request: asked counts those, not exports.)
	if got := sumKey(ds, "SpanExportFailures"); got != 3 || sumKey(ds, "SpanExportUnknown") != 0 {
		t.Errorf("SpanExportFailures %v, SpanExportUnknown %v (PRI requests %d)", got, sumKey(ds, "SpanExportUnknown"), asked.Load())
	}
}

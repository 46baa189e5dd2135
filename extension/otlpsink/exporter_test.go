package otlpsink

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/streamtest"
)

// A redirect is never followed, to another host or to the same one: the
// export's headers (an api-key) go to the configured endpoint only, and
// the redirect is a failed export, not an unknown one.
func TestRedirectIsNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		if r.Header.Get("X-Api-Key") != "" {
			t.Errorf("the api key reached the redirect's host")
		}
	}))
	defer other.Close()
	for _, code := range []int{301, 302, 307, 308} {
		var asked atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if asked.Add(1) == 1 {
				w.Header().Set("Location", other.URL+"/v1/traces?token=s3cret")
			} else {
				w.Header().Set("Location", "/elsewhere") // the same host
			}
			w.WriteHeader(code)
		}))
		e := newExporter(t, config.OTLP{URL: srv.URL + "/v1/traces", Headers: []config.KV{{Key: "x-api-key", Value: "k3y"}}}, nil)
		for range 2 {
			lost, err := e.Export(context.Background(), []state.Result{healthy()})
			if lost != 1 || err == nil || errors.Is(err, ErrOutcomeUnknown) || !strings.Contains(err.Error(), "redirect") {
				t.Errorf("%d: lost %d, %v", code, lost, err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%d: the Location's credential is shown: %v", code, err)
			}
		}
		if asked.Load() != 2 || elsewhere.Load() != 0 {
			t.Errorf("%d: %d requests to the endpoint, %d elsewhere", code, asked.Load(), elsewhere.Load())
		}
		srv.Close()
	}
}

// No message shows the endpoint's credentials, whether the failure is a
// transport's (url.Error quotes the URL) or an answer's.
func TestEndpointCredentialsAreNeverShown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there now: the connection is refused
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }))
	defer failing.Close()
	for _, host := range []string{refused, strings.TrimPrefix(failing.URL, "http://")} {
		u := "http://alice:s3cret-pw@" + host + "/v1/traces?api_key=s3cret-key&team=pricing"
		e := newExporter(t, config.OTLP{URL: u}, nil)
		lost, err := e.Export(context.Background(), []state.Result{healthy()})
		if lost != 1 || err == nil {
			t.Fatalf("%s: lost %d, %v", host, lost, err)
		}
		for _, secret := range []string{"s3cret", "alice", "pricing"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%q shown: %v", secret, err)
			}
		}
		if !strings.Contains(err.Error(), "REDACTED@"+host) {
			t.Errorf("the redacted endpoint is not named: %v", err)
		}
	}
}

// An export the budget ends before the answer is read is of unknown
// outcome, not failed: the collector may have taken the spans. A collector
// that answered (503 to the end) failed.
func TestBudgetCutExportIsUnknown(t *testing.T) {
	two := []state.Result{healthy(), healthy()}
	e := newExporter(t, config.OTLP{URL: streamtest.HangingCollector(t) + "/v1/traces"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if lost, err := e.Export(ctx, two); lost != 2 || !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging collector: lost %d, %v", lost, err)
	}
	// The same cut by cancel, as the lifecycle's budget timer does.
	e = newExporter(t, config.OTLP{URL: streamtest.HangingCollector(t) + "/v1/traces"}, nil)
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if lost, err := e.Export(ctx, two); lost != 2 || !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("cancelled: lost %d, %v", lost, err)
	}
	col := newCollector(t, 503)
	e = newExporter(t, config.OTLP{URL: col.url}, nil)
	if lost, err := e.Export(context.Background(), two); lost != 2 || err == nil || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("503 to the end: lost %d, %v", lost, err)
	}
}

// A 2xx whose partial-success body is cut short (by the budget, by a
// closed connection) is not a full success: its outcome is unknown.
func TestCutPartialSuccessBodyIsNotSuccess(t *testing.T) {
	ps, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{
		RejectedSpans: 1, ErrorMessage: "span too old"}})
	release := make(chan struct{})
	defer close(release)
	// Cut after 4 bytes, and before the first: what was read (nothing)
	// would decode as "none rejected".
	for _, cut := range []struct {
		how string
		at  int
	}{{"hang", 4}, {"close", 4}, {"hang", 0}, {"close", 0}} {
		how := cut.how
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.Header().Set("Content-Length", "64")
			w.WriteHeader(200)
			_, _ = w.Write(ps[:cut.at])
			w.(http.Flusher).Flush()
			if how == "hang" {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			// Hijack to close the connection mid-body.
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		}))
		e := newExporter(t, config.OTLP{URL: srv.URL + "/v1/traces"}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		lost, err := e.Export(ctx, []state.Result{healthy(), healthy()})
		cancel()
		if lost != 2 || !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s after %d bytes: lost %d, %v", how, cut.at, lost, err)
		}
		srv.Close()
	}
}

// Every cut of a partial-success body decodes as malformed, never as "none
// rejected"; the whole body decodes; a collector that claims more rejected
// spans than were sent loses them all, and the message does not say "3 of 1".
func TestTruncatedPartialSuccessDecode(t *testing.T) {
	ps, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{
		RejectedSpans: 3, ErrorMessage: "span too old"}})
	for i := 1; i < len(ps); i++ {
		if n, _, ok := decodePartialSuccess(ps[:i]); ok {
			t.Errorf("cut at %d of %d: decoded, %d rejected", i, len(ps), n)
		}
	}
	if n, msg, ok := decodePartialSuccess(ps); !ok || n != 3 || msg != "span too old" {
		t.Errorf("whole: %d %q %v", n, msg, ok)
	}
	for _, b := range [][]byte{nil, {}} {
		if n, _, ok := decodePartialSuccess(b); !ok || n != 0 {
			t.Errorf("empty body: %d %v", n, ok)
		}
	}
	col := newCollector(t)
	col.reply = ps
	e := newExporter(t, config.OTLP{URL: col.url}, nil)
	lost, err := e.Export(context.Background(), []state.Result{healthy()})
	if lost != 1 || err == nil || errors.Is(err, ErrOutcomeUnknown) || strings.Contains(err.Error(), "3 of 1") {
		t.Errorf("3 rejected of 1: lost %d, %v", lost, err)
	}
	// A complete body that is not protobuf, labelled protobuf: unknown.
	col.reply = []byte("OK")
	if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 1 || !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("an undecodable 200: lost %d, %v", lost, err)
	}
}

// Half a client-certificate pair gives no client certificate, and spans
// still go out, whichever half it is (the configuration reports it).
func TestHalfClientCertificatePairIsIgnored(t *testing.T) {
	for _, o := range []config.OTLP{{ClientCert: "/nonexistent/cert.pem"}, {ClientKey: "/nonexistent/key.pem"}} {
		col := newCollector(t)
		o.URL = col.url
		e, err := New(Config{OTLP: o, FunctionName: "pricing"}, func(string) string { return "" })
		if err != nil {
			t.Errorf("%+v: %v", o, err)
			continue
		}
		if lost, err := e.Export(context.Background(), []state.Result{healthy()}); lost != 0 || err != nil {
			t.Errorf("%+v: lost %d, %v", o, lost, err)
		}
	}
	if _, err := New(Config{OTLP: config.OTLP{ClientCert: "/nonexistent/cert.pem", ClientKey: "/nonexistent/key.pem"}}, nil); err == nil {
		t.Error("a whole pair of missing files accepted")
	}
}

// FuzzDecodePartialSuccess: the strict reader never fails, accepts only
// what protobuf itself accepts, and agrees with the lenient one on it.
func FuzzDecodePartialSuccess(f *testing.F) {
	ok, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{PartialSuccess: &collectorpb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "x"}})
	f.Add(ok)
	f.Add(ok[:len(ok)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		n, msg, good := decodePartialSuccess(b)
		if !good {
			if n != 0 || msg != "" {
				t.Errorf("%x: malformed, yet %d %q", b, n, msg)
			}
			return
		}
		var want collectorpb.ExportTraceServiceResponse
		if err := proto.Unmarshal(b, &want); err != nil && !strings.Contains(err.Error(), "UTF-8") {
			// (A message that is not UTF-8 is only shown, never trusted.)
			t.Errorf("%x: accepted, protobuf says %v", b, err)
		}
		if ln, lmsg := partialSuccess(b); ln != n || lmsg != msg {
			t.Errorf("%x: %d %q, lenient %d %q", b, n, msg, ln, lmsg)
		}
		if canon, err := proto.Marshal(&want); err == nil && bytes.Equal(canon, b) && want.GetPartialSuccess().GetRejectedSpans() != n {
			t.Errorf("%x: read %d rejected, protobuf %d", b, n, want.GetPartialSuccess().GetRejectedSpans())
		}
	})
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamlens/streamlens/metrics"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// function is a streaming function's URL: quotes and the end marker with
// its hash, or with ?cut=1 no end marker, or with ?hang=1 a stream that
// stops sending until the caller gives up. It counts its requests and
// keeps their headers.
type function struct {
	mu      sync.Mutex
	headers []http.Header
}

func (f *function) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	h := sha256.New()
	for i := 0; i < 3; i++ {
		line := fmt.Sprintf(`{"instrument":"I%d"}`+"\n", i)
		h.Write([]byte(line))
		_, _ = w.Write([]byte(line))
		w.(http.Flusher).Flush()
	}
	if r.URL.Query().Get("hang") == "1" {
		<-r.Context().Done()
		return
	}
	if r.URL.Query().Get("cut") != "1" {
		fmt.Fprintf(w, `{"type":"BUNDLE_COMPLETE","sha256":"%s"}`+"\n", hex.EncodeToString(h.Sum(nil)))
	}
}

func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		out = append(out, d)
	}
	return out
}

// One invocation: STREAMLENS_CANARY_PROBES requests, each an EMF line on
// stdout under the canary's Probe dimension and namespace, unsigned when
// STREAMLENS_CANARY_SIGV4=off; a truncation is a metric and a summary
// entry, not an invocation error.
func TestInvocation(t *testing.T) {
	fn := &function{}
	srv := httptest.NewServer(fn)
	defer srv.Close()
	for name, c := range map[string]struct {
		query     string
		truncated float64
	}{"complete": {"", 0}, "cut": {"?cut=1", 1}} {
		var out bytes.Buffer
		var logs []string
		cn := newCanary(env(map[string]string{
			"STREAMLENS_CANARY_URL": srv.URL + c.query, "STREAMLENS_CANARY_PROBES": "3", "STREAMLENS_CANARY_SIGV4": "off",
			"STREAMLENS_PROBE_NAME": "pricing-eu", "STREAMLENS_NAMESPACE": "Canary/Test",
		}), &out, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
		sum, err := cn.handle(context.Background(), json.RawMessage(`{}`))
		if err != nil || sum.Probes != 3 || sum.Truncated != int(3*c.truncated) || len(logs) != 0 {
			t.Errorf("%s: %+v %v, logs %q", name, sum, err, logs)
		}
		ds := docs(t, out.Bytes())
		if len(ds) != 3 {
			t.Fatalf("%s: %d EMF lines", name, len(ds))
		}
		for _, d := range ds {
			aws, _ := json.Marshal(d["_aws"])
			if d[metrics.DimProbe] != "pricing-eu" || d[metrics.CallerTruncated] != c.truncated ||
				!strings.Contains(string(aws), `"Namespace":"Canary/Test"`) || !strings.Contains(string(aws), `"Dimensions":[["Probe"]]`) {
				t.Errorf("%s: %v", name, d)
			}
		}
	}
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if len(fn.headers) != 6 || fn.headers[0].Get("Authorization") != "" || fn.headers[0].Get("Traceparent") == "" ||
		fn.headers[0].Get("User-Agent") != "streamlens-canary" {
		t.Errorf("%d requests, first with %v", len(fn.headers), fn.headers[0])
	}
}

// A stream that hangs past the function's own timeout is cut with the
// margin left, and still reported: its line says truncated, and the
// invocation returns before its deadline.
func TestDeadlineLeavesRoomToReport(t *testing.T) {
	srv := httptest.NewServer(&function{})
	defer srv.Close()
	var out bytes.Buffer
	cn := newCanary(env(map[string]string{"STREAMLENS_CANARY_URL": srv.URL + "?hang=1", "STREAMLENS_CANARY_SIGV4": "off"}), &out, func(string, ...any) {})
	ctx, cancel := context.WithTimeout(context.Background(), deadlineMargin+300*time.Millisecond)
	defer cancel()
	dl, _ := ctx.Deadline()
	sum, err := cn.handle(ctx, nil)
	if err != nil || sum.Probes != 1 || sum.Truncated != 1 || time.Now().After(dl) {
		t.Errorf("%+v %v, %v past the deadline", sum, err, time.Since(dl))
	}
	ds := docs(t, out.Bytes())
	if len(ds) != 1 || ds[0][metrics.CallerTruncated] != 1.0 || ds[0][metrics.CallerChunks] != 3.0 {
		t.Errorf("%v", ds)
	}
}

// The span of each probe goes to the configured collector.
func TestSpans(t *testing.T) {
	var mu sync.Mutex
	var posts []string
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts = append(posts, r.URL.Path)
		mu.Unlock()
	}))
	defer col.Close()
	srv := httptest.NewServer(&function{})
	defer srv.Close()
	cn := newCanary(env(map[string]string{"STREAMLENS_CANARY_URL": srv.URL, "STREAMLENS_CANARY_SIGV4": "off", "STREAMLENS_CANARY_PROBES": "2",
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL}), &bytes.Buffer{}, func(string, ...any) {})
	if _, err := cn.handle(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 || posts[0] != "/v1/traces" {
		t.Errorf("posts %v", posts)
	}
}

// Misconfiguration degrades: no URL fails each invocation with a reason
// (nothing to probe: the canary's Errors and its silence alarm show it); a
// bad count falls back to 1 and is logged; sigv4 on without a region goes
// unsigned and is logged.
func TestConfiguration(t *testing.T) {
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	cn := newCanary(env(nil), &bytes.Buffer{}, logf)
	if _, err := cn.handle(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "STREAMLENS_CANARY_URL") {
		t.Errorf("no URL: %v", err)
	}
	logs = nil
	cn = newCanary(env(map[string]string{"STREAMLENS_CANARY_URL": "https://abc.lambda-url.eu-west-1.on.aws/", "STREAMLENS_CANARY_PROBES": "500"}), &bytes.Buffer{}, logf)
	if cn.probes != 1 || cn.region != "" || cn.name != "abc.lambda-url.eu-west-1.on.aws" || len(logs) != 2 {
		t.Errorf("probes %d region %q name %q, logs %q", cn.probes, cn.region, cn.name, logs)
	}
	cn = newCanary(env(map[string]string{"STREAMLENS_CANARY_URL": "https://x/", "AWS_REGION": "eu-west-1"}), &bytes.Buffer{}, logf)
	if cn.region != "eu-west-1" {
		t.Errorf("sign by default in AWS_REGION: %q", cn.region)
	}
}

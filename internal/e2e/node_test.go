package e2e

// Node.js functions end to end: the real extension binary and the Node
// pricing function (examples/node-pricing) run by AWS's own runtime interface
// client (npm aws-lambda-ric, installed by scripts/need-node-ric.sh into
// bin/node-ric), in the sandbox, under the layer's exec wrapper
// (/opt/streamlens-node) laid out from the files the layer zip ships. What is
// checked is what reaches the log stream: the EMF documents the extension
// writes.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/layer"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// nodeRIC returns the RIC's entry point, or skips the test loudly when node
// or the RIC is missing (make test installs the RIC first).
func nodeRIC(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("SKIPPED LOUDLY: node is not on this machine; the Node functions are untested")
	}
	ric, err := filepath.Abs("../../bin/node-ric/node_modules/aws-lambda-ric/index.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(ric), "rapid-client.node")); err != nil {
		t.Skip("SKIPPED LOUDLY: aws-lambda-ric is not installed in bin/node-ric (run scripts/need-node-ric.sh; make test does); the Node functions are untested")
	}
	return ric
}

// optDir lays the layer's Node files out as Lambda unpacks the layer into
// /opt, from the same list cmd/layer zips.
func optDir(t *testing.T) string {
	t.Helper()
	opt := filepath.Join(t.TempDir(), "opt")
	for _, f := range layer.NodeFiles {
		b, err := os.ReadFile(filepath.Join("../..", f.Source))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(opt, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, os.FileMode(f.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	return opt
}

// startNode starts the sandbox with the Node pricing function's handler (as
// Lambda's _HANDLER names it) under the layer's exec wrapper; mod, if not
// nil, changes the configuration, and env is added last (exec keeps the last
// value of a variable).
func startNode(t *testing.T, handler string, timeout time.Duration, mod func(*sandbox.Config), env ...string) *env {
	t.Helper()
	ric := nodeRIC(t)
	opt := optDir(t)
	fn, err := filepath.Abs("../../examples/node-pricing/bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	return start(t, func(c *sandbox.Config) {
		c.Function = fn
		c.Timeout = timeout
		// Node's init, with the RIC's addon, takes longer than a Go
		// binary's on a busy 2-core machine.
		c.InitTimeout = 10 * time.Second
		// _HANDLER and LAMBDA_TASK_ROOT are set by Lambda; the sandbox
		// leaves them to the function's configuration.
		c.Env = append(c.Env, "_HANDLER="+handler, "LAMBDA_TASK_ROOT="+filepath.Dir(fn),
			"STREAMLENS_NODE_RIC="+ric,
			"AWS_LAMBDA_EXEC_WRAPPER="+filepath.Join(opt, "streamlens-node"),
			"STREAMLENS_NODE_AUTO="+filepath.Join(opt, "streamlens/node/auto.js"))
		c.Env = append(c.Env, env...)
		if mod != nil {
			mod(c)
		}
	})
}

// streamOf waits for the stream document of one invocation.
func (e *env) streamOf(t *testing.T, requestID string) doc {
	t.Helper()
	var found doc
	e.log.waitDocs(t, "the stream document of "+requestID, func(ds []doc) bool {
		for _, d := range streamDocs(ds) {
			if d.str("RequestId") == requestID {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

func wantNums(t *testing.T, what string, d doc, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got := d.num(k); got != v {
			t.Errorf("%s: %s = %v, want %v (%v)", what, k, got, v, d)
		}
	}
}

// The zero-code instrumentation, an ES module handler with no streamlens code:
// a complete stream, a throw mid-stream and before the first byte, a stream
// destroyed with an error (the RIC then exits, as it does on Lambda), and a
// timeout, each as one EMF document with the request's id.
func TestNodeZeroCode(t *testing.T) {
	e := startNode(t, "zero-code.handler", 2*time.Second, nil)

	res, body := e.invoke(t, "instruments=5&delay_ms=1")
	if res.Status != "success" || quotes(body) != 5 || !strings.Contains(body, "BUNDLE_COMPLETE") {
		t.Fatalf("success: %+v, body %q", res, body)
	}
	s := e.streamOf(t, res.RequestID)
	// Every write is a chunk: five quotes and the BUNDLE_COMPLETE line, which
	// the instrumentation cannot tell from a quote.
	wantNums(t, "success", s, map[string]float64{"ChunksDelivered": 6, "StreamTruncated": 0, "DroppedEvents": 0, "StreamBytes": float64(len(body))})
	if s.str("StreamStatus") != "complete" || s.num("TimeToFirstByte") <= 0 {
		t.Errorf("success: status %q, TTFB %v", s.str("StreamStatus"), s["TimeToFirstByte"])
	}
	if !strings.Contains(body, `"quoteId":"`) || strings.Contains(body, s.str("QuoteId")) {
		// The instrumentation's stream id is its own (a UUIDv7), never the
		// function's quote id.
		t.Errorf("quote ids: stream %s, body %q", s.str("QuoteId"), body)
	}

	res, body = e.invoke(t, "instruments=5&throw_after=2")
	if res.Status != "error" || quotes(body) != 2 {
		t.Errorf("throw mid-stream: %+v, body %q", res, body)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "throw mid-stream", s, map[string]float64{"ChunksDelivered": 2, "StreamTruncated": 1})
	if s.str("StreamStatus") != "error" {
		t.Errorf("throw mid-stream: status %q", s.str("StreamStatus"))
	}

	res, body = e.invoke(t, "instruments=5&throw_after=0")
	if res.Status != "error" || body != "" {
		t.Errorf("throw before the first byte: %+v, body %q", res, body)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "throw before the first byte", s, map[string]float64{"ChunksDelivered": 0, "StreamTruncated": 1})
	if s.str("StreamStatus") != "error" || s["TimeToFirstByte"] != nil {
		t.Errorf("throw before the first byte: status %q, TTFB %v", s.str("StreamStatus"), s["TimeToFirstByte"])
	}

	// destroy(err) makes the RIC reject a promise nobody awaits: the runtime
	// process exits (on Lambda too). The error end went out before.
	res, body = e.invoke(t, "instruments=5&fail_after=2")
	// destroy discards what the request had not sent yet: the caller may
	// get fewer quotes than the two written.
	if res.Status != "failure" || res.ErrorType != "Runtime.ExitError" || quotes(body) > 2 {
		t.Errorf("destroyed stream: %+v, body %q", res, body)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "destroyed stream", s, map[string]float64{"ChunksDelivered": 2, "StreamTruncated": 1})
	if s.str("StreamStatus") != "error" {
		t.Errorf("destroyed stream: status %q", s.str("StreamStatus"))
	}

	// The crash reset the environment: its next init runs inside the next
	// invocation (suppressed init), which must not be the timed one.
	if res, _ = e.invoke(t, "instruments=1"); res.Status != "success" || !res.SuppressedInit {
		t.Errorf("after the crash: %+v", res)
	}
	res, body = e.invoke(t, "instruments=5&hang_after=2")
	if res.Status != "timeout" || quotes(body) != 2 {
		t.Errorf("timeout: %+v, body %q", res, body)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "timeout", s, map[string]float64{"ChunksDelivered": 2, "StreamTruncated": 1})
	if s.str("StreamStatus") != "none" || !strings.Contains(s.str("TruncationReason"), "timeout") {
		t.Errorf("timeout: status %q, reason %q", s.str("StreamStatus"), s.str("TruncationReason"))
	}

	// Every line the instrumentation sent was one the extension decoded
	// (blocked_us included), and nothing was lost.
	e.sb.Close()
	ds := e.log.waitDocs(t, "the extension's counters", func(ds []doc) bool {
		for _, d := range ds {
			if _, ok := d["MalformedEvents"]; ok {
				return true
			}
		}
		return false
	})
	for _, d := range ds {
		if d.num("MalformedEvents") > 0 || d.num("DroppedEvents") > 0 {
			t.Errorf("malformed %v, dropped %v: %v", d["MalformedEvents"], d["DroppedEvents"], d)
		}
	}
	if n := len(streamDocs(ds)); n != 6 {
		t.Errorf("%d stream documents for 6 invocations", n)
	}
}

// The explicit client (a CommonJS handler) under the same exec wrapper: the
// instrumentation stands aside, so each invocation is one stream, with what
// only the function knows: expected quotes, instruments, the trailer and the
// declared SHA-256.
func TestNodeExplicitClient(t *testing.T) {
	e := startNode(t, "explicit.handler", 2*time.Second, nil)

	res, body := e.invoke(t, "instruments=5&delay_ms=1&bundle=EQ-NODE")
	if res.Status != "success" || quotes(body) != 5 || !strings.Contains(body, "BUNDLE_COMPLETE") {
		t.Fatalf("success: %+v, body %q", res, body)
	}
	s := e.streamOf(t, res.RequestID)
	wantNums(t, "success", s, map[string]float64{"ChunksDelivered": 5, "ChunksExpected": 5, "StreamTruncated": 0, "IntegrityMismatch": 0, "DroppedEvents": 0})
	if s.str("StreamStatus") != "complete" || s.str("BundleId") != "EQ-NODE" || !strings.Contains(body, `"quoteId":"`+s.str("QuoteId")+`"`) {
		t.Errorf("success: %v", s)
	}

	res, body = e.invoke(t, "instruments=5&throw_after=3")
	if res.Status != "error" || quotes(body) != 3 {
		t.Errorf("throw mid-stream: %+v, body %q", res, body)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "throw mid-stream", s, map[string]float64{"ChunksDelivered": 3, "ChunksExpected": 5, "ChunksMissing": 2, "StreamTruncated": 1})

	res, _ = e.invoke(t, "instruments=5&hang_after=1")
	if res.Status != "timeout" {
		t.Errorf("timeout: %+v", res)
	}
	s = e.streamOf(t, res.RequestID)
	wantNums(t, "timeout", s, map[string]float64{"ChunksDelivered": 1, "ChunksExpected": 5, "StreamTruncated": 1})

	// One stream per invocation: the zero-code instrumentation recorded none
	// of the explicit client's.
	e.sb.Close()
	ds := e.log.waitDocs(t, "every invocation's document", func(ds []doc) bool { return len(invocationDocs(ds)) >= 3 })
	if n := len(streamDocs(ds)); n != 3 {
		t.Errorf("%d stream documents for 3 invocations", n)
	}
}

// A handler that does not stream (its response posted whole by the RIC's
// native client) is left alone by the instrumentation: its response is
// unchanged and the extension records the invocation, with no stream.
func TestNodeBufferedHandlerLeftAlone(t *testing.T) {
	root := t.TempDir()
	src := `export const handler = async (event) => ({ quotes: 3, fn: typeof awslambda.streamifyResponse });
`
	if err := os.WriteFile(filepath.Join(root, "plain.mjs"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// The bootstrap is the example's; the handler's module is this one.
	e := startNode(t, "plain.handler", 2*time.Second, nil, "LAMBDA_TASK_ROOT="+root)
	res, body := e.invoke(t, "")
	if res.Status != "success" || body != `{"quotes":3,"fn":"function"}` { // as the RIC serialised it
		t.Fatalf("%+v, body %q", res, body)
	}
	e.sb.Close()
	ds := e.log.waitDocs(t, "the invocation's document", func(ds []doc) bool { return len(invocationDocs(ds)) >= 1 })
	if n := len(streamDocs(ds)); n != 0 {
		t.Errorf("%d stream documents for a handler that does not stream", n)
	}
}

// The zero-code instrumentation with a CommonJS handler that sets its HTTP
// status through awslambda.HttpResponseStream.from: the prelude the RIC
// writes before the first chunk is not payload, and is not counted.
func TestNodeZeroCodeCommonJSWithPrelude(t *testing.T) {
	root := t.TempDir()
	src := `exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const rs = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: { "x-quotes": "2" } });
  rs.write("a\n");
  await new Promise((r) => setTimeout(r, 5));
  rs.write("b\n");
  rs.end();
});
`
	if err := os.WriteFile(filepath.Join(root, "cjs.js"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startNode(t, "cjs.handler", 2*time.Second, nil, "LAMBDA_TASK_ROOT="+root)
	res, body := e.invoke(t, "")
	if res.Status != "success" || !strings.HasSuffix(body, "a\nb\n") {
		t.Fatalf("%+v, body %q", res, body)
	}
	s := e.streamOf(t, res.RequestID)
	wantNums(t, "prelude", s, map[string]float64{"ChunksDelivered": 2, "StreamBytes": 4, "StreamTruncated": 0})
	if s.str("StreamStatus") != "complete" {
		t.Errorf("status %q", s.str("StreamStatus"))
	}
}

// Lambda Managed Instances: the RIC runs the handler in worker threads, each
// with several invocations at once; NODE_OPTIONS preloads the
// instrumentation in every worker, and each concurrent stream is recorded
// as its own. Two workers: the sandbox answers 403 to more runtime next
// calls than its MaxConcurrency, which the RIC's default worker count (8 per
// vCPU) exceeds (see the report of issue #27).
func TestNodeZeroCodeManagedInstances(t *testing.T) {
	e := startNode(t, "zero-code.handler", 3*time.Second, func(c *sandbox.Config) { c.MaxConcurrency = 4 },
		"AWS_LAMBDA_NODEJS_WORKER_COUNT=2")
	const n = 6
	type out struct {
		res  sandbox.Result
		body string
		err  error
	}
	results := make(chan out, n)
	ev, _ := json.Marshal(map[string]any{"rawPath": "/", "queryStringParameters": map[string]string{"instruments": "10", "delay_ms": "10"},
		"requestContext": map[string]any{}})
	for range n {
		go func() {
			var b bytes.Buffer
			res, err := e.sb.Invoke(context.Background(), ev, &b)
			results <- out{res, b.String(), err}
		}()
	}
	for range n {
		o := <-results
		if o.err != nil || o.res.Status != "success" || quotes(o.body) != 10 {
			t.Fatalf("%v %+v, body %q", o.err, o.res, o.body)
		}
		s := e.streamOf(t, o.res.RequestID)
		wantNums(t, o.res.RequestID, s, map[string]float64{"ChunksDelivered": 11, "StreamTruncated": 0, "StreamBytes": float64(len(o.body))})
		if s.str("StreamStatus") != "complete" {
			t.Errorf("%s: status %q", o.res.RequestID, s.str("StreamStatus"))
		}
	}
	if ds := streamDocs(e.log.docs(t)); len(ds) != n {
		t.Errorf("%d stream documents for %d invocations", len(ds), n)
	}
}

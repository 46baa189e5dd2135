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
	"fmt"
	"math"
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
func nodeRIC(t testing.TB) string {
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
func optDir(t testing.TB) string {
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
		// A stream that starts after STREAMLENS_START_WAIT_MS (20 ms of wall
		// time) leaves its invocation taken for a non-streaming one, and its
		// document for the next boundary (README, "Lifecycle rules the
		// extension keeps"). The RIC's dispatch of an invocation to the handler
		// took 20–28 ms on a busy 2-core CI host (never on Lambda's ~1 ms):
		// these tests are about what the instrumentation records, so they
		// give the start the time the host takes.
		c.Env = append(c.Env, "STREAMLENS_START_WAIT_MS=300")
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

// fairHandler is one Node function in two builds that differ only in how
// streamlens learns about its stream: fair.auto has no streamlens code (the
// exec wrapper's zero-code instrumentation records it), fair.explicit uses
// the client. Every write of both is payload, with no trailer: the
// zero-code path counts every write as a chunk and cannot know a trailer,
// so a handler whose last line is a BUNDLE_COMPLETE trailer would be
// counted one more chunk zero-code (examples/node-pricing: n+1 against n)
// by design, not by error. Here the two must agree exactly.
//
// The handler sleeps delay_ms before its first write, then writes one line
// per n (1 ms apart), then a last payload line with its own measure of
// time to first byte: the monotonic clock (process.hrtime, ns) at handler
// entry and just before and after its first write, fixed width so both
// builds write the same number of bytes. throw_after=N throws after N
// lines, hang_after=N waits after N lines until the timeout.
const fairHandler = `'use strict';
const path = require('node:path');
// The client the layer ships, next to the auto.js the wrapper preloads.
const { Client } = require(path.join(path.dirname(process.env.STREAMLENS_NODE_AUTO), 'index.js'));
const sl = Client.fromEnv();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pad = (v) => String(v).padStart(16, '0');

async function body(q, write, entry) {
  const n = Number(q.n || 3);
  await sleep(Number(q.delay_ms || 0));
  const a = process.hrtime.bigint();
  write('first line\n');
  const b = process.hrtime.bigint();
  for (let i = 1; i < n; i++) {
    if (i === Number(q.throw_after)) throw new Error('fair: failed mid-stream');
    if (i === Number(q.hang_after)) await sleep(3600000);
    await sleep(1);
    write('line ' + pad(i) + '\n');
  }
  write('ttfb_ns ' + pad(a - entry) + ' ' + pad(b - entry) + '\n');
}

exports.auto = awslambda.streamifyResponse(async (event, rs) => {
  const entry = process.hrtime.bigint();
  await body(event.queryStringParameters || {}, (s) => rs.write(s), entry);
  rs.end();
});

exports.explicit = awslambda.streamifyResponse(async (event, rs, context) => {
  // Start at handler entry, read the way auto.js reads it (Date.now()).
  const start = Date.now();
  const entry = process.hrtime.bigint();
  const s = sl.start(rs, { requestId: context.awsRequestId, startTime: start });
  try {
    await body(event.queryStringParameters || {}, (x) => s.writeChunk(x), entry);
  } catch (err) {
    s.end({ status: 'error' });
    throw err;
  }
  s.end();
  rs.end();
});
`

// The same Node function measured zero-code and with the explicit client
// gives the same stream: chunk count, bytes, truncation and status for a
// success, a throw mid-stream and a timeout, and the same time to first
// byte within the clocks' resolution.
//
// The clocks: both paths read the stream's start with Date.now() (whole
// milliseconds, truncated) at handler entry, and time each chunk as that
// start advanced by process.hrtime (nanoseconds) since the client's Stream
// was made, whose wall time is read with Date.now() again. So TTFB =
// (Date.now() at the Stream's creation - Date.now() at entry) + an hrtime
// span: the difference of two truncated millisecond readings is within 1 ms
// of the true interval (strictly less), the hrtime part is exact to the
// nanosecond, and the EMF document rounds to 1 µs. The resolution is then
// 1 ms + 1 µs for each path against the truth; the truth being the
// function's own hrtime reading of entry → first write, reported in its
// last line. auto.js reads its start in the wrapper, a few microseconds
// before the handler's entry: zeroCodeEntrySlack allows for it. The two
// paths agree with each other within their two resolutions plus the
// difference of the two truths (which is the run's own jitter, not the
// instrumentation's).
func TestNodeZeroCodeMatchesExplicit(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "fair.js"), []byte(fairHandler), 0o644); err != nil {
		t.Fatal(err)
	}
	const resolutionMs = 1.001       // Date.now()'s 1 ms + the EMF document's 1 µs rounding
	const zeroCodeEntrySlack = 0.500 // wrapper work before the handler's entry (auto.js only)
	cases := []struct{ name, query string }{
		{"success", "n=4&delay_ms=15"},
		{"error mid-stream", "n=4&delay_ms=5&throw_after=2"},
		{"timeout", "n=4&delay_ms=5&hang_after=2"},
	}
	type measured struct {
		res  sandbox.Result
		body string
		s    doc
	}
	run := func(handler string) []measured {
		e := startNode(t, handler, 2*time.Second, nil, "LAMBDA_TASK_ROOT="+root)
		defer e.sb.Close()
		var out []measured
		for _, c := range cases {
			res, body := e.invoke(t, c.query)
			out = append(out, measured{res, body, e.streamOf(t, res.RequestID)})
		}
		return out
	}
	auto, explicit := run("fair.auto"), run("fair.explicit")

	// truth reads the function's own [before, after] first write, in ms.
	truth := func(body string) (lo, hi float64, ok bool) {
		i := strings.LastIndex(body, "ttfb_ns ")
		if i < 0 {
			return 0, 0, false
		}
		var a, b int64
		if _, err := fmt.Sscanf(body[i:], "ttfb_ns %d %d", &a, &b); err != nil {
			return 0, 0, false
		}
		return float64(a) / 1e6, float64(b) / 1e6, true
	}
	for i, c := range cases {
		a, x := auto[i], explicit[i]
		if a.res.Status != x.res.Status || len(a.body) != len(x.body) {
			t.Errorf("%s: the function itself differs: zero-code %+v %q, explicit %+v %q", c.name, a.res, a.body, x.res, x.body)
		}
		for _, k := range []string{"ChunksDelivered", "StreamBytes", "StreamTruncated", "DroppedEvents"} {
			if a.s.num(k) != x.s.num(k) {
				t.Errorf("%s: %s zero-code %v, explicit %v", c.name, k, a.s.num(k), x.s.num(k))
			}
		}
		for _, k := range []string{"StreamStatus", "TruncationReason"} {
			if a.s.str(k) != x.s.str(k) {
				t.Errorf("%s: %s zero-code %q, explicit %q", c.name, k, a.s.str(k), x.s.str(k))
			}
		}
		if a.s.num("StreamBytes") != float64(len(a.body)) {
			t.Errorf("%s: StreamBytes %v, the caller got %d", c.name, a.s.num("StreamBytes"), len(a.body))
		}
		t.Logf("%s: status %s, chunks %v, bytes %v, truncated %v, reason %q, TTFB zero-code %v ms, explicit %v ms",
			c.name, a.s.str("StreamStatus"), a.s.num("ChunksDelivered"), a.s.num("StreamBytes"), a.s.num("StreamTruncated"),
			a.s.str("TruncationReason"), a.s["TimeToFirstByte"], x.s["TimeToFirstByte"])
	}
	// The expected outcomes, so that agreeing on a wrong answer fails too.
	wantNums(t, "success", auto[0].s, map[string]float64{"ChunksDelivered": 5, "StreamTruncated": 0})
	wantNums(t, "error mid-stream", auto[1].s, map[string]float64{"ChunksDelivered": 2, "StreamTruncated": 1})
	wantNums(t, "timeout", auto[2].s, map[string]float64{"ChunksDelivered": 2, "StreamTruncated": 1})
	if auto[0].s.str("StreamStatus") != "complete" || auto[1].s.str("StreamStatus") != "error" || !strings.Contains(auto[2].s.str("TruncationReason"), "timeout") {
		t.Errorf("outcomes: %q, %q, %q", auto[0].s.str("StreamStatus"), auto[1].s.str("StreamStatus"), auto[2].s.str("TruncationReason"))
	}

	// TTFB, on the success: each path against the function's own reading.
	alo, ahi, ok1 := truth(auto[0].body)
	xlo, xhi, ok2 := truth(explicit[0].body)
	if !ok1 || !ok2 {
		t.Fatalf("no ttfb_ns line: %q, %q", auto[0].body, explicit[0].body)
	}
	at, xt := auto[0].s.num("TimeToFirstByte"), explicit[0].s.num("TimeToFirstByte")
	if at < alo-resolutionMs || at > ahi+resolutionMs+zeroCodeEntrySlack {
		t.Errorf("zero-code TTFB %v ms; the function measured [%.3f, %.3f] ms (resolution %v ms)", at, alo, ahi, resolutionMs)
	}
	if xt < xlo-resolutionMs || xt > xhi+resolutionMs {
		t.Errorf("explicit TTFB %v ms; the function measured [%.3f, %.3f] ms (resolution %v ms)", xt, xlo, xhi, resolutionMs)
	}
	// And so against each other, once the runs' own difference is taken out.
	if d := math.Abs((at - alo) - (xt - xlo)); d > 2*resolutionMs+zeroCodeEntrySlack+(ahi-alo)+(xhi-xlo) {
		t.Errorf("TTFB beyond the function's own: zero-code +%.3f ms, explicit +%.3f ms", at-alo, xt-xlo)
	}
}

// hostileHandler misuses its response stream in the ways a real function
// can (mode=...): writes that are not Buffers (strings in encodings,
// Uint8Array, DataView, objects, null), end with a chunk and end twice,
// stream.pipeline() from a Readable, a write after end, a write after
// destroy, a return without end, and a stream never ended (the timeout).
// Each op's outcome ("ok" or what it threw: the RIC's own write throws
// a TypeError on null and undefined) goes into the body while the
// stream can still carry it, so a throw only the instrumented run has is
// seen by the caller.
const hostileHandler = `'use strict';
const { Readable, pipeline } = require('node:stream');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

exports.handler = awslambda.streamifyResponse(async (event, rs) => {
  const mode = (event.queryStringParameters || {}).mode;
  const log = [];
  const op = (name, fn) => { try { fn(); log.push(name + ' ok'); } catch (err) { log.push(name + ' threw ' + (err.code || err.name)); } };
  switch (mode) {
    case 'types':
      op('base64', () => rs.write('aGVsbG8=', 'base64'));
      op('hex', () => rs.write('2c20', 'hex'));
      op('Uint8Array', () => rs.write(new Uint8Array([0x41, 0x42])));
      op('DataView', () => rs.write(new DataView(new ArrayBuffer(4))));
      op('object', () => rs.write({ quote: 1 }));
      op('null', () => rs.write(null));
      op('undefined', () => rs.write(undefined));
      op('empty', () => rs.write(''));
      rs.write('|' + log.join(',') + '|');
      rs.end('z\n');
      rs.end(); // again
      return;
    case 'pipeline':
      await new Promise((resolve, reject) => pipeline(Readable.from(['q1\n', Buffer.from('q2\n'), 'q3\n']), rs, (err) => (err ? reject(err) : resolve())));
      return;
    case 'after-end':
      rs.write('a\n');
      rs.end();
      op('write after end', () => rs.write('b\n'));
      await sleep(20);
      return;
    case 'after-destroy':
      rs.write('a\n');
      op('destroy', () => rs.destroy());
      op('write after destroy', () => rs.write('b\n'));
      await sleep(20);
      return;
    case 'no-end':
      rs.write('a\n');
      return;
    case 'hang':
      rs.write('a\n');
      await sleep(3600000);
  }
});
`

// The hostile handler under the real RIC, with the exec wrapper and without
// it: the caller gets the same result and the same bytes either way (so
// nothing the instrumentation did reached the function), every invocation
// is one stream document, and the bytes the extension counts are the ones
// the caller got.
func TestNodeZeroCodeHostile(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hostile.js"), []byte(hostileHandler), 0o644); err != nil {
		t.Fatal(err)
	}
	modes := []string{"types", "pipeline", "after-end", "after-destroy", "no-end", "hang"}
	type got struct {
		res  sandbox.Result
		body string
	}
	run := func(env ...string) (*env, []got) {
		// 3 s: after-end and after-destroy crash the RIC (as on Lambda), and
		// the next invocation's timeout covers its suppressed init too.
		e := startNode(t, "hostile.handler", 3*time.Second, nil, append([]string{"LAMBDA_TASK_ROOT=" + root}, env...)...)
		var out []got
		for _, m := range modes {
			res, body := e.invoke(t, "mode="+m)
			out = append(out, got{res, body})
			// A crash or a timeout resets the environment: the next
			// init runs inside the next invocation, which is then a
			// warm-up, not one of the compared ones (a slow init on a
			// busy machine would otherwise time a mode out before its
			// handler runs, in one run and not the other).
			for i := 0; res.Status != "success" && i < 3; i++ {
				res, _ = e.invoke(t, "mode=pipeline")
			}
		}
		return e, out
	}
	// No exec wrapper at all: the bootstrap runs node on the RIC directly.
	bare, bareOut := run("AWS_LAMBDA_EXEC_WRAPPER=")
	bare.sb.Close()
	e, out := run()
	for i, m := range modes {
		b, g := bareOut[i], out[i]
		// Bytes on their way when the process dies may or may not reach
		// the caller, with or without the wrapper (the RIC's last write
		// races the crash): a failed invocation's bodies need only agree
		// as far as both got.
		sameBody := g.body == b.body ||
			g.res.Status != "success" && (strings.HasPrefix(g.body, b.body) || strings.HasPrefix(b.body, g.body))
		if g.res.Status != b.res.Status || g.res.ErrorType != b.res.ErrorType || !sameBody {
			t.Errorf("%s: instrumented %+v %q, bare %+v %q", m, g.res, g.body, b.res, b.body)
		}
		s := e.streamOf(t, g.res.RequestID)
		t.Logf("%s: %+v, body %q; stream %s, chunks %v, bytes %v, reason %q", m, g.res, g.body,
			s.str("StreamStatus"), s.num("ChunksDelivered"), s.num("StreamBytes"), s.str("TruncationReason"))
		if s.num("StreamBytes") < float64(len(g.body)) {
			t.Errorf("%s: the extension counted %v bytes, the caller got %d", m, s.num("StreamBytes"), len(g.body))
		}
	}
	if !strings.Contains(out[0].body, "|base64 ok,hex ok,Uint8Array ok,DataView ok,object ok,null threw TypeError,undefined threw TypeError,empty ok|") {
		t.Errorf("types: %q", out[0].body)
	}
	for i, want := range map[int]map[string]float64{
		// 5 writes that reach the wire, the log, end's chunk (the RIC throws
		// on null and undefined: it reads chunk.length before anything).
		0: {"ChunksDelivered": 7, "StreamBytes": float64(len(out[0].body)), "StreamTruncated": 0},
		1: {"ChunksDelivered": 3, "StreamBytes": 9, "StreamTruncated": 0},
		5: {"ChunksDelivered": 1, "StreamTruncated": 1},
	} {
		wantNums(t, modes[i], e.streamOf(t, out[i].res.RequestID), want)
	}
	if s := e.streamOf(t, out[5].res.RequestID); !strings.Contains(s.str("TruncationReason"), "timeout") {
		t.Errorf("hang: reason %q", s.str("TruncationReason"))
	}
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
	// One stream document per invocation, the warm-ups' included.
	seen := map[string]int{}
	for _, d := range streamDocs(ds) {
		seen[d.str("RequestId")]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%d stream documents for %s", n, id)
		}
	}
}

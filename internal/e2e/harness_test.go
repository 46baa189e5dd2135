// Package e2e runs the real binaries (pricing function, streamlens extension) in
// the local sandbox and checks what reaches the log stream.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/cwcheck"
	"github.com/streamlens/streamlens/internal/sandbox"

	"github.com/streamlens/streamlens/internal/syncbuf"
)

var bins struct {
	function, extension string
	// plain is a runtime that never sends stream events: a non-streaming
	// function, or one that does not link the client.
	plain string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "streamlens-e2e")
	if err != nil {
		panic(err)
	}
	bins.function = filepath.Join(dir, "bootstrap")
	// Lambda names an extension after its file in /opt/extensions.
	bins.extension = filepath.Join(dir, "extensions", "streamlens")
	bins.plain = filepath.Join(dir, "plain")
	for _, b := range []struct{ out, pkg string }{{bins.function, "./examples/pricing"}, {bins.extension, "./cmd/streamlens"},
		{bins.plain, "./internal/sandbox/testdata/testrt"}} {
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", b.out, b.pkg)
		cmd.Dir = "../.."
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuf is the sandbox's log stream, read while the sandbox writes it.
type logBuf struct{ syncbuf.Buffer }

// doc is one decoded EMF line.
type doc map[string]any

func (d doc) num(k string) float64 {
	switch v := d[k].(type) {
	case float64:
		return v
	case []any:
		if len(v) == 1 {
			return v[0].(float64)
		}
	}
	return -1
}

func (d doc) values(k string) []float64 {
	switch v := d[k].(type) {
	case float64:
		return []float64{v}
	case []any:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = x.(float64)
		}
		return out
	}
	return nil
}

func (d doc) str(k string) string { s, _ := d[k].(string); return s }

func (l *logBuf) docs(t *testing.T) []doc {
	t.Helper()
	var out []doc
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"_aws"`)) {
			continue
		}
		var d doc
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("EMF line is not JSON: %v: %s", err, line)
		}
		// Every line of every end-to-end test is one CloudWatch accepts
		// whole, by the independent checker.
		if _, err := cwcheck.Check(line, time.Now()); err != nil {
			t.Errorf("CloudWatch would drop the metrics of %s: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}

// streamDocs returns the per-stream documents (they carry a QuoteId); a stream
// with more than 100 chunks spans several, and only the first has the counts.
func streamDocs(ds []doc) []doc {
	var out []doc
	for _, d := range ds {
		if _, counts := d["StreamTruncated"]; d.str("QuoteId") != "" && counts {
			out = append(out, d)
		}
	}
	return out
}

func invocationDocs(ds []doc) []doc {
	var out []doc
	for _, d := range ds {
		if _, ok := d["ColdStart"]; ok {
			out = append(out, d)
		}
	}
	return out
}

// platformValues counts the values of platform metric k (ResponseLatency,
// ExtensionOverhead, …) in ds: one in each record that has it, and each in
// the platform documents, which carry the figures of the invocations whose
// outcome went with their only stream's document, many a document.
func platformValues(ds []doc, k string) int {
	n := 0
	for _, d := range ds {
		n += len(d.values(k))
	}
	return n
}

// recordsApart returns the invocation records that are not a stream's
// document: the invocations whose outcome did not go with their only stream
// (none or several streams, the record that carries the init).
func recordsApart(ds []doc) []doc {
	var out []doc
	for _, d := range invocationDocs(ds) {
		if d.str("QuoteId") == "" {
			out = append(out, d)
		}
	}
	return out
}

// waitDocs polls the log until pred holds. The extension writes before it asks
// for the next event, but the bytes still cross a pipe to the log.
func (l *logBuf) waitDocs(t *testing.T, what string, pred func([]doc) bool) []doc {
	t.Helper()
	// A deadline, not a count of tries: parsing a flood's thousands of
	// documents makes each try slow, and a count let one failure wait 5 min.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if ds := l.docs(t); pred(ds) {
			return ds
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ds := l.docs(t); pred(ds) {
		return ds
	}
	t.Fatalf("no %s in the log:\n%s", what, l.String())
	return nil
}

type env struct {
	sb   *sandbox.Sandbox
	log  *logBuf
	addr string // where the extension listens (STREAMLENS_ADDR)
	// telemetryPort is where its telemetry listener binds: the production
	// name, sandbox.localdomain, which binds loopback where the name does
	// not resolve, on a port of the test's own (never the default 4243,
	// which a sandbox run by hand may hold).
	telemetryPort int
}

func start(t *testing.T, mod func(*sandbox.Config)) *env {
	t.Helper()
	lb := &logBuf{}
	addr := "127.0.0.1:" + strconv.Itoa(freeUDPPort(t))
	tport := freeTCPPort(t)
	cfg := sandbox.Config{
		Function: bins.function, Extensions: []string{bins.extension}, FunctionName: "pricing",
		Timeout: 3 * time.Second, Freeze: true, Log: lb,
		// UDP, the default transport: a unix datagram socket queues only
		// net.unix.max_dgram_qlen (10) datagrams, too few for a fast burst.
		// Spans are off unless a test brings its own receiver (withOTLP):
		// the default endpoint (localhost, the standard OTLP/HTTP port) may belong to another program.
		// The stdout wait before next is 50 ms by default: on a test host
		// busy with other packages the extension (SCHED_IDLE) may not
		// finish writing in it, and its lines then wait for a thaw a test
		// never brings. A test of that bound sets its own (later wins).
		Env: []string{"STREAMLENS_ADDR=" + addr, "OTEL_SDK_DISABLED=true", "STREAMLENS_TELEMETRY_ADDR=sandbox.localdomain:" + strconv.Itoa(tport),
			"STREAMLENS_STDOUT_WAIT_MS=1000"},
	}
	if mod != nil {
		mod(&cfg)
	}
	sb, err := sandbox.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{sb: sb, log: lb, addr: addr, telemetryPort: tport}
	t.Cleanup(func() {
		sb.Close()
		if t.Failed() || os.Getenv("E2E_LOG") != "" {
			t.Logf("log stream:\n%s", lb.String())
		}
	})
	return e
}

// invoke calls the function through its URL handler, like a client would.
func (e *env) invoke(t *testing.T, query string) (sandbox.Result, string) {
	t.Helper()
	return e.invokeWith(t, query, nil)
}

func (e *env) invokeWith(t *testing.T, query string, headers map[string]string) (sandbox.Result, string) {
	t.Helper()
	ev, _ := json.Marshal(map[string]any{"rawPath": "/", "queryStringParameters": parseQuery(query), "headers": headers, "requestContext": map[string]any{}})
	var out bytes.Buffer
	res, err := e.sb.Invoke(context.Background(), ev, &out)
	if err != nil {
		t.Fatalf("invoke %s: %v", query, err)
	}
	return res, out.String()
}

func parseQuery(q string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(q, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

var _ = io.Discard

// onlyStream waits for the one stream document of a test and returns it.
func (e *env) onlyStream(t *testing.T) doc {
	t.Helper()
	return streamDocs(e.log.waitDocs(t, "the stream document", func(ds []doc) bool { return len(streamDocs(ds)) == 1 }))[0]
}

// quotes counts the quote envelopes in a response body.
func quotes(body string) int { return strings.Count(body, `"instrument"`) }

package sandbox

// Each test here shows one rule of real Lambda that the sandbox models
// (docs/sandbox.md maps rules to tests). They run scriptable stand-ins for a
// runtime and an extension (testdata/testrt, testdata/testext) that record
// what they see.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/syncbuf"
)

var bins struct{ rt, ext, dir string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandbox-test")
	if err != nil {
		panic(err)
	}
	bins.dir = dir
	bins.rt = filepath.Join(dir, "bootstrap")
	bins.ext = filepath.Join(dir, "extensions", "testext")
	for _, b := range []struct{ out, pkg string }{{bins.rt, "./testdata/testrt"}, {bins.ext, "./testdata/testext"}} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
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

// extNamed is the test extension under another name: Lambda names an
// extension after its file, and testext reads TESTEXT_<NAME>_* first.
func extNamed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(bins.ext)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "extensions", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// rec is one line a test program recorded.
type rec map[string]any

func (r rec) str(k string) string { s, _ := r[k].(string); return s }
func (r rec) num(k string) float64 {
	f, _ := r[k].(float64)
	return f
}

// event is the Extensions API event of an "event" record.
func (r rec) event() rec { m, _ := r["event"].(map[string]any); return m }

type fixture struct {
	sb  *Sandbox
	dir string
	log *syncbuf.Buffer
}

// run starts a sandbox around the test runtime and, unless mod says
// otherwise, the test extension; env goes to every process.
func run(t *testing.T, mod func(*Config), env ...string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), log: &syncbuf.Buffer{}}
	cfg := Config{Function: bins.rt, Extensions: []string{bins.ext}, Timeout: 2 * time.Second, Freeze: true, Log: f.log,
		Env: append([]string{"TESTRT_OUT=" + filepath.Join(f.dir, "rt.jsonl"), "TESTEXT_OUT=" + f.dir}, env...)}
	if mod != nil {
		mod(&cfg)
	}
	sb, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.sb = sb
	t.Cleanup(func() {
		sb.Close()
		if t.Failed() {
			t.Logf("sandbox log:\n%s", f.log.String())
		}
	})
	return f
}

func (f *fixture) records(t *testing.T, name string) []rec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name+".jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r rec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", name, err, sc.Bytes())
		}
		out = append(out, r)
	}
	return out
}

func (f *fixture) invoke(t *testing.T, payload string) Result {
	t.Helper()
	res, err := f.sb.Invoke(context.Background(), []byte(payload), io.Discard)
	if err != nil {
		t.Fatalf("invoke %s: %v", payload, err)
	}
	return res
}

// ofKind returns the records with ev == kind.
func ofKind(rs []rec, kind string) []rec {
	var out []rec
	for _, r := range rs {
		if r.str("ev") == kind {
			out = append(out, r)
		}
	}
	return out
}

// events returns the Extensions API events of type typ an extension received.
func events(rs []rec, typ string) []rec {
	var out []rec
	for _, r := range ofKind(rs, "event") {
		if r.event().str("eventType") == typ {
			out = append(out, r)
		}
	}
	return out
}

// telemetry returns the Telemetry API events of type typ an extension received.
func telemetry(rs []rec, typ string) []rec {
	var out []rec
	for _, r := range ofKind(rs, "telemetry") {
		batch, _ := r["batch"].([]any)
		for _, item := range batch {
			if m, _ := item.(map[string]any); m["type"] == typ {
				out = append(out, m)
			}
		}
	}
	return out
}

func (r rec) record() rec { m, _ := r["record"].(map[string]any); return m }

// Rule 1: the function timeout covers the extensions. An extension that asks
// for the next event after the deadline times the invocation out, and the
// environment is reset (SHUTDOWN "timeout", a new init).
func TestExtensionPastTheDeadlineTimesOutTheInvocation(t *testing.T) {
	f := run(t, func(c *Config) { c.Timeout = time.Second }, "TESTEXT_HOLD_MS=1300")
	res := f.invoke(t, `{}`)
	if res.Status != "timeout" || res.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("extension back 300 ms after the deadline: status %q %q, want timeout", res.Status, res.ErrorType)
	}
	shut := events(f.records(t, "testext"), "SHUTDOWN")
	if len(shut) != 1 || shut[0].event().str("shutdownReason") != "timeout" {
		t.Errorf("SHUTDOWN events %v, want one with reason timeout", shut)
	}
	if res2 := f.invoke(t, `{}`); !res2.SuppressedInit {
		t.Errorf("the invocation after the reset did not re-initialise the environment: %+v", res2)
	}
	if n := len(ofKind(f.records(t, "testext"), "register")); n != 2 {
		t.Errorf("%d extension registrations, want 2 (reset)", n)
	}
}

// The other side of rule 1: extension time within the deadline is part of the
// invocation (report − runtimeDone), not a failure.
func TestExtensionTimeCountsInTheInvocation(t *testing.T) {
	f := run(t, func(c *Config) { c.Timeout = 2 * time.Second }, "TESTEXT_HOLD_MS=300")
	res := f.invoke(t, `{}`)
	if res.Status != "success" {
		t.Fatalf("status %q", res.Status)
	}
	// The hold began at INVOKE, while the runtime was working too.
	if res.PostRuntime() < 250*time.Millisecond {
		t.Errorf("post-runtime time %v: the extension's 300 ms hold is not in the invocation's duration", res.PostRuntime())
	}
}

// Rule 2: after a reset the next init is suppressed: it runs inside the
// invocation, reports phase "invoke", and its time counts against the timeout.
func TestSuppressedInitCountsAgainstTheTimeout(t *testing.T) {
	// The init alone fits the timeout with room to spare, so that on a
	// loaded machine the suppressed init itself still ends (and reports);
	// init and work together do not.
	f := run(t, func(c *Config) { c.Timeout = 2 * time.Second },
		"TESTEXT_INIT_SLEEP_MS=600", "TESTEXT_SUBSCRIBE=sandbox.localdomain", "TESTEXT_SHUTDOWN_WAIT_MS=1000")
	// 600 ms of cold init and 1.5 s of work: within a 2 s timeout only if
	// the init is not part of it.
	if res := f.invoke(t, `{"sleep_ms":1500}`); res.Status != "success" || res.SuppressedInit {
		t.Fatalf("cold invocation: %+v (a cold init is not part of the timeout)", res)
	}
	if res := f.invoke(t, `{"crash":true}`); res.Status != "failure" {
		t.Fatalf("crash: %+v", res)
	}
	res := f.invoke(t, `{"sleep_ms":1500}`)
	if !res.SuppressedInit || res.Status != "timeout" {
		t.Errorf("600 ms suppressed init + 1.5 s of work under a 2 s timeout: %+v, want a timeout", res)
	}
	var phases []string
	for _, r := range telemetry(f.records(t, "testext"), "platform.initReport") {
		phases = append(phases, r.record().str("phase"))
	}
	if strings.Join(phases, ",") != "init,invoke" {
		t.Errorf("initReport phases %v, want init then invoke", phases)
	}
}

// Rule 3: a Telemetry API destination must be sandbox.localdomain; the
// sandbox resolves that name to loopback itself and delivers there.
func TestTelemetryDestinationMustBeSandboxLocaldomain(t *testing.T) {
	f := run(t, func(c *Config) {
		c.Extensions = []string{extNamed(t, "good"), extNamed(t, "bad"), extNamed(t, "short")}
	},
		"TESTEXT_GOOD_SUBSCRIBE=sandbox.localdomain", "TESTEXT_BAD_SUBSCRIBE=127.0.0.1", "TESTEXT_SHORT_SUBSCRIBE=sandbox", "TESTEXT_SHUTDOWN_WAIT_MS=1000")
	res := f.invoke(t, `{}`)
	if sub := ofKind(f.records(t, "bad"), "subscribe"); len(sub) != 1 || sub[0].num("status") != 400 {
		t.Errorf("subscription to 127.0.0.1: %v, want 400", sub)
	}
	if sub := ofKind(f.records(t, "good"), "subscribe"); len(sub) != 1 || sub[0].num("status") != 200 {
		t.Fatalf("subscription to sandbox.localdomain: %v, want 200", sub)
	}
	// AWS's emulator accepts the short name too, and extensions in the
	// field use it: refusing it would refuse a working extension.
	if sub := ofKind(f.records(t, "short"), "subscribe"); len(sub) != 1 || sub[0].num("status") != 200 {
		t.Errorf("subscription to sandbox: %v, want 200", sub)
	}
	f.sb.Close()
	var got bool
	for _, r := range telemetry(f.records(t, "good"), "platform.start") {
		got = got || r.record().str("requestId") == res.RequestID
	}
	if !got {
		t.Error("no platform.start delivered to sandbox.localdomain")
	}
}

// Rule 4: where the Telemetry API is missing (the emulator behind sam local),
// a subscription gets 202 Telemetry.NotSupported, which is not a subscription.
func TestTelemetryNotSupported(t *testing.T) {
	f := run(t, func(c *Config) { c.Telemetry = TelemetryUnsupported }, "TESTEXT_SUBSCRIBE=sandbox.localdomain")
	if res := f.invoke(t, `{}`); res.Status != "success" {
		t.Fatalf("%+v", res)
	}
	sub := ofKind(f.records(t, "testext"), "subscribe")
	if len(sub) != 1 || sub[0].num("status") != 202 || !strings.Contains(sub[0].str("body"), `"Telemetry.NotSupported"`) {
		t.Errorf("subscription answer %v, want 202 Telemetry.NotSupported", sub)
	}
	f.sb.Close()
	if n := len(ofKind(f.records(t, "testext"), "telemetry")); n != 0 {
		t.Errorf("%d telemetry batches delivered without a subscription", n)
	}
}

// Rule 5: an extension gets only the events it registered for; one not
// registered for SHUTDOWN is killed at shutdown.
func TestOnlyRegisteredEventsAreDelivered(t *testing.T) {
	f := run(t, func(c *Config) { c.Extensions = []string{extNamed(t, "shutonly"), extNamed(t, "invonly")} },
		"TESTEXT_SHUTONLY_EVENTS=SHUTDOWN", "TESTEXT_INVONLY_EVENTS=INVOKE")
	for i := 0; i < 2; i++ {
		if res := f.invoke(t, `{}`); res.Status != "success" {
			t.Fatalf("%+v", res)
		}
	}
	f.sb.Close()
	so, io := f.records(t, "shutonly"), f.records(t, "invonly")
	if n, m := len(events(so, "INVOKE")), len(events(so, "SHUTDOWN")); n != 0 || m != 1 {
		t.Errorf("SHUTDOWN-only extension got %d INVOKE and %d SHUTDOWN, want 0 and 1", n, m)
	}
	if n, m := len(events(io, "INVOKE")), len(events(io, "SHUTDOWN")); n != 2 || m != 0 {
		t.Errorf("INVOKE-only extension got %d INVOKE and %d SHUTDOWN, want 2 and 0", n, m)
	}
	if !strings.Contains(f.log.String(), "extension invonly is not registered for SHUTDOWN: killed") {
		t.Error("the INVOKE-only extension was not killed at shutdown")
	}
}

// Rule 6: at shutdown the runtime goes first (SIGTERM, killed after 500 ms),
// telemetry still buffered is delivered, then the extensions get SHUTDOWN
// with the rest of the 2 s budget.
func TestShutdownOrder(t *testing.T) {
	f := run(t, nil, "TESTRT_IGNORE_TERM=1", "TESTEXT_SUBSCRIBE=sandbox.localdomain",
		"TESTEXT_BUFFER_MS=30000", "TESTEXT_SHUTDOWN_WAIT_MS=1500")
	res := f.invoke(t, `{}`)
	f.sb.Close()
	term := ofKind(f.records(t, "rt"), "sigterm")
	ext := f.records(t, "testext")
	shut := events(ext, "SHUTDOWN")
	if len(term) != 1 || len(shut) != 1 {
		t.Fatalf("runtime SIGTERMs %d, extension SHUTDOWNs %d, want 1 and 1", len(term), len(shut))
	}
	termAt, shutAt := int64(term[0].num("t")), int64(shut[0].num("t"))
	// The runtime ignores SIGTERM: the extensions hear of the shutdown only
	// once the runtime was given its 500 ms and killed.
	if shutAt-termAt < int64(450*time.Millisecond) {
		t.Errorf("SHUTDOWN reached the extension %v after the runtime's SIGTERM, want it after the runtime's 500 ms", time.Duration(shutAt-termAt))
	}
	if budget := time.UnixMilli(int64(shut[0].event().num("deadlineMs"))).Sub(time.Unix(0, termAt)); budget > 2050*time.Millisecond {
		t.Errorf("SHUTDOWN deadline %v after the runtime's SIGTERM, want the one 2 s budget", budget)
	}
	// Buffered for 30 s, the report reached the extension only because the
	// shutdown sent it before anything was killed.
	var got bool
	for _, r := range telemetry(ext, "platform.report") {
		got = got || r.record().str("requestId") == res.RequestID
	}
	if !got {
		t.Error("the last invocation's platform.report, still buffered at shutdown, was never delivered")
	}
}

// Rule 7: tracing follows the function's mode. PassThrough (the default)
// samples nothing itself: without a caller header the trace is Sampled=0.
func TestTracingModes(t *testing.T) {
	for _, tc := range []struct {
		mode, caller, wantSampled, wantRoot string
	}{
		{TracingPassThrough, "", "Sampled=0", ""},
		{TracingPassThrough, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "Sampled=1", "Root=1-5759e988-bd862e3fe1be46a994272793"},
		{TracingActive, "", "Sampled=1", ""},
	} {
		t.Run(tc.mode+"/"+tc.wantSampled, func(t *testing.T) {
			f := run(t, func(c *Config) { c.Tracing = tc.mode })
			res, err := f.sb.InvokeRequest(context.Background(), Request{Payload: []byte(`{}`), TraceHeader: tc.caller}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			rt := ofKind(f.records(t, "rt"), "invoke")
			inv := events(f.records(t, "testext"), "INVOKE")
			if len(rt) != 1 || len(inv) != 1 {
				t.Fatalf("%d runtime invokes, %d INVOKE events", len(rt), len(inv))
			}
			tracing, _ := inv[0].event()["tracing"].(map[string]any)
			for _, h := range []string{res.TraceHeader, rt[0].str("trace"), fmt.Sprint(tracing["value"])} {
				if !strings.Contains(h, tc.wantSampled) || !strings.Contains(h, tc.wantRoot) || h != res.TraceHeader {
					t.Errorf("trace header %q, want %s %s (and the same for runtime and extensions)", h, tc.wantRoot, tc.wantSampled)
				}
			}
		})
	}
}

// recorder is a caller's response: each write, and the end.
type recorder struct {
	mu     sync.Mutex
	writes int
	bytes  int
	ended  []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	r.bytes += len(p)
	return len(p), nil
}

func (r *recorder) EndResponse(errType string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = append(r.ended, errType)
}

// Rule 8: buffered and streamed responses, their size limits and the
// streaming bandwidth cap.
func TestResponseModes(t *testing.T) {
	streamed := `{"chunks":3,"chunk_bytes":100,"gap_ms":50}`
	t.Run("stream", func(t *testing.T) {
		f := run(t, nil)
		var r recorder
		res, err := f.sb.Invoke(context.Background(), []byte(streamed), &r)
		if err != nil || res.Status != "success" || r.writes < 3 || r.bytes != 300 || len(r.ended) != 1 {
			t.Errorf("streamed: %+v %v: %d writes of %d bytes, ended %v", res, err, r.writes, r.bytes, r.ended)
		}
	})
	t.Run("buffered", func(t *testing.T) {
		f := run(t, func(c *Config) { c.InvokeMode = ModeBuffered })
		var r recorder
		res, err := f.sb.Invoke(context.Background(), []byte(streamed), &r)
		if err != nil || res.Status != "success" || r.writes != 1 || r.bytes != 300 {
			t.Errorf("buffered: %+v %v: %d writes of %d bytes, want the whole body in one", res, err, r.writes, r.bytes)
		}
	})
	t.Run("buffered over 6 MB", func(t *testing.T) {
		f := run(t, func(c *Config) { c.InvokeMode = ModeBuffered })
		var r recorder
		res, err := f.sb.Invoke(context.Background(), []byte(`{"chunks":7,"chunk_bytes":1048576}`), &r)
		if err != nil || res.Status != "error" || res.ErrorType != "Function.ResponseSizeTooLarge" || r.bytes != 0 ||
			len(r.ended) != 1 || r.ended[0] != "Function.ResponseSizeTooLarge" {
			t.Errorf("7 MB buffered: %+v %v, %d bytes to the caller, ended %v", res, err, r.bytes, r.ended)
		}
	})
	t.Run("streamed past 6 MB is throttled", func(t *testing.T) {
		f := run(t, nil)
		var r recorder
		res, err := f.sb.Invoke(context.Background(), []byte(`{"chunks":7,"chunk_bytes":1048576}`), &r)
		if err != nil || res.Status != "success" || r.bytes != 7<<20 {
			t.Fatalf("7 MB streamed: %+v %v, %d bytes", res, err, r.bytes)
		}
		// 1 MB past the first 6 MB at 2 MiB/s.
		if res.Duration < 500*time.Millisecond {
			t.Errorf("7 MB streamed in %v: the 2 MiB/s cap past 6 MB was not applied", res.Duration)
		}
	})
}

func TestStreamPace(t *testing.T) {
	for n, want := range map[int64]time.Duration{0: 0, 6 << 20: 0, 7 << 20: 500 * time.Millisecond, 8 << 20: time.Second} {
		if got := streamPace(n); got != want {
			t.Errorf("streamPace(%d) = %v, want %v", n, got, want)
		}
	}
	if MaxStreamBytes != 200<<20 || MaxBufferedBytes != 6<<20 {
		t.Errorf("limits %d/%d", MaxStreamBytes, MaxBufferedBytes)
	}
}

// Rule 9: Lambda Managed Instances: several invocations at once in one
// environment; no INVOKE for extensions; telemetry schema 2025-01-29 only.
func TestManagedInstances(t *testing.T) {
	t.Run("INVOKE refused", func(t *testing.T) {
		// The environment initialises before it takes traffic: Start
		// fails with an extension that cannot register.
		dir := t.TempDir()
		sb, err := Start(Config{Function: bins.rt, Extensions: []string{bins.ext}, MaxConcurrency: 4, Env: []string{"TESTEXT_OUT=" + dir}})
		if err == nil {
			sb.Close()
			t.Fatal("init succeeded with an extension that cannot register")
		}
		f := &fixture{dir: dir}
		reg := ofKind(f.records(t, "testext"), "register")
		if len(reg) != 1 || reg[0].num("status") != 403 || !strings.Contains(reg[0].str("body"), "Extension.InvalidEventType") {
			t.Errorf("register for INVOKE: %v, want 403 Extension.InvalidEventType", reg)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		f := run(t, func(c *Config) {
			c.MaxConcurrency = 4
			c.Extensions = []string{extNamed(t, "old"), extNamed(t, "new")}
		}, "TESTEXT_EVENTS=SHUTDOWN", "TESTEXT_SUBSCRIBE=sandbox.localdomain", "TESTEXT_NEW_SCHEMA=2025-01-29")
		var wg sync.WaitGroup
		results := make([]Result, 4)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = f.invoke(t, `{"sleep_ms":300}`)
			}()
		}
		wg.Wait()
		for _, r := range results {
			if r.Status != "success" {
				t.Errorf("%+v", r)
			}
		}
		// All four were handed to the runtime before any was done.
		rs := f.records(t, "rt")
		seen := 0
		for _, r := range rs {
			if r.str("ev") == "done" {
				break
			}
			if r.str("ev") == "invoke" {
				seen++
			}
		}
		if seen != 4 {
			t.Errorf("%d invocations running at once, want 4", seen)
		}
		if sub := ofKind(f.records(t, "old"), "subscribe"); len(sub) != 1 || sub[0].num("status") != 400 {
			t.Errorf("schema 2022-12-13 on Managed Instances: %v, want 400", sub)
		}
		if sub := ofKind(f.records(t, "new"), "subscribe"); len(sub) != 1 || sub[0].num("status") != 200 {
			t.Errorf("schema 2025-01-29 on Managed Instances: %v, want 200", sub)
		}
	})
}

// Rule 9, continued: on Managed Instances a runtime may have more workers
// waiting in next than the concurrency (AWS's Node runtime client starts 8
// per vCPU): they all wait and none is refused. (The concurrency's cap on
// invocations in flight is TestManagedInstances/concurrent's.)
func TestManagedInstancesMoreWorkersThanConcurrency(t *testing.T) {
	f := run(t, func(c *Config) { c.MaxConcurrency = 2 }, "TESTEXT_EVENTS=SHUTDOWN", "TESTRT_WORKERS=6")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := f.invoke(t, `{"sleep_ms":100}`); r.Status != "success" {
				t.Errorf("%+v", r)
			}
		}()
	}
	wg.Wait()
	invoked := 0
	for _, r := range f.records(t, "rt") {
		if r.str("ev") != "invoke" {
			continue
		}
		if r.str("id") == "" {
			t.Fatal("a waiting worker's next was refused (no request id)")
		}
		invoked++
	}
	if invoked != 4 {
		t.Errorf("%d invocations reached the runtime, want 4", invoked)
	}
}

// Rule 9, continued: what Lambda Managed Instances tell extensions, as AWS's
// emulator does in its Managed Instances mode: no platform.runtimeDone at all;
// platform.report carries the status, the error type, the response spans and
// durationMs, and no billed duration, memory or produced bytes; the init
// events name the init type lambda-managed-instances.
func TestManagedInstancesTelemetry(t *testing.T) {
	f := run(t, func(c *Config) { c.MaxConcurrency = 4; c.Timeout = time.Second },
		"TESTEXT_EVENTS=SHUTDOWN", "TESTEXT_SUBSCRIBE=sandbox.localdomain", "TESTEXT_SCHEMA=2025-01-29", "TESTEXT_SHUTDOWN_WAIT_MS=1500",
		"TESTEXT_WANT_REPORTS=2")
	ok := f.invoke(t, `{"chunks":2,"chunk_bytes":10,"gap_ms":20}`)
	failed := f.invoke(t, `{"error":"Custom.Failure"}`)
	f.sb.Close()
	ext := f.records(t, "testext")
	if n := len(telemetry(ext, "platform.runtimeDone")); n != 0 {
		t.Errorf("%d platform.runtimeDone events: Managed Instances send none", n)
	}
	for _, typ := range []string{"platform.initStart", "platform.initReport"} {
		evs := telemetry(ext, typ)
		if len(evs) != 1 || evs[0].record().str("initializationType") != "lambda-managed-instances" {
			t.Errorf("%s: %v, want initializationType lambda-managed-instances", typ, evs)
		}
	}
	reports := map[string]rec{}
	for _, r := range telemetry(ext, "platform.report") {
		reports[r.record().str("requestId")] = r.record()
	}
	metrics := func(r rec) rec { m, _ := r["metrics"].(map[string]any); return m }
	r := reports[ok.RequestID]
	spans, _ := r["spans"].([]any)
	if r.str("status") != "success" || len(spans) != 2 || metrics(r).num("durationMs") <= 0 {
		t.Errorf("report of a success %v: want status, 2 response spans and durationMs", r)
	}
	for _, k := range []string{"billedDurationMs", "maxMemoryUsedMB", "memorySizeMB", "initDurationMs", "producedBytes"} {
		if _, has := metrics(r)[k]; has {
			t.Errorf("report has %s, which Managed Instances do not send", k)
		}
	}
	if r := reports[failed.RequestID]; r.str("status") != "error" || r.str("errorType") != "Custom.Failure" {
		t.Errorf("report of an error %v", r)
	}
}

// Rule 9, continued: on Lambda Managed Instances a timed-out invocation fails
// (status timeout; the caller's stream ends) while its code runs on: the
// runtime is not reset, its late response is refused with 410, and it goes
// on serving.
func TestManagedInstancesTimeoutLetsTheCodeRunOn(t *testing.T) {
	f := run(t, func(c *Config) { c.MaxConcurrency = 2; c.Timeout = 500 * time.Millisecond }, "TESTEXT_EVENTS=SHUTDOWN")
	res := f.invoke(t, `{"chunks":3,"chunk_bytes":10,"gap_ms":400}`)
	if res.Status != "timeout" || res.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("%+v, want timeout", res)
	}
	done := func() bool {
		for _, r := range f.records(t, "rt") {
			if r.str("ev") == "done" && r.str("id") == res.RequestID {
				return true
			}
		}
		return false
	}
	for i := 0; i < 300 && !done(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !done() {
		t.Fatal("the timed-out invocation's code did not run to its end")
	}
	if next := f.invoke(t, `{}`); next.Status != "success" {
		t.Errorf("after the timeout: %+v", next)
	}
	if n := len(ofKind(f.records(t, "rt"), "start")); n != 1 {
		t.Errorf("the runtime started %d times: a timeout reset it", n)
	}
	if len(ofKind(f.records(t, "testext"), "event")) != 0 {
		t.Errorf("an extension got an event before shutdown: %v", ofKind(f.records(t, "testext"), "event"))
	}
}

// Rule 9, continued: on Lambda Managed Instances an extension that exits
// terminates the environment: the invocation running fails with
// Extension.Crash and the other extensions get SHUTDOWN with reason failure.
// (On a classic environment an extension's crash surfaces only when it
// misses its next event/next.)
func TestManagedInstancesExtensionCrashEndsTheEnvironment(t *testing.T) {
	f := run(t, func(c *Config) {
		c.MaxConcurrency = 2
		c.Extensions = []string{extNamed(t, "crashes"), extNamed(t, "stays")}
	}, "TESTEXT_EVENTS=SHUTDOWN", "TESTEXT_CRASHES_EXIT_AFTER_MS=300")
	res := f.invoke(t, `{"sleep_ms":1500}`)
	if res.Status != "error" || res.ErrorType != "Extension.Crash" {
		t.Errorf("%+v, want error Extension.Crash", res)
	}
	var reason string
	for i := 0; i < 300 && reason == ""; i++ { // the reset runs beside the invocation's end
		for _, e := range ofKind(f.records(t, "stays"), "event") {
			reason = e.event().str("shutdownReason")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if reason != "failure" {
		t.Errorf("the other extension got SHUTDOWN %q, want failure", reason)
	}
}

// Rule 10: CPU and memory like a Lambda function of the configured size.
func TestResourceCaps(t *testing.T) {
	if q := cpuQuotaUs(1769); q != 100_000 {
		t.Errorf("1769 MB: quota %d µs, want a full core", q)
	}
	if q := cpuQuotaUs(128); q != 7235 {
		t.Errorf("128 MB: quota %d µs, want 7235 (128/1769 of a core)", q)
	}
	f := run(t, func(c *Config) { c.CapResources = true; c.MemoryMB = 128 })
	f.invoke(t, `{}`)
	if strings.Contains(f.log.String(), "cannot cap") {
		t.Skipf("SKIPPED LOUDLY: cgroups are not writable here, the sandbox runs uncapped: %s", f.log.String())
	}
	cg := f.sb.cg
	pids := []int{f.sb.RuntimePID()}
	for _, e := range f.sb.Extensions() {
		pids = append(pids, e.PID)
	}
	for _, pid := range pids {
		for _, d := range cg.dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil || !strings.Contains("\n"+string(b), "\n"+strconv.Itoa(pid)+"\n") {
				t.Errorf("process %d is not in %s: %v", pid, d, err)
			}
		}
	}
	for _, want := range []struct{ file, value string }{
		{"cpu.cfs_quota_us", "7235"}, {"memory.limit_in_bytes", strconv.Itoa(128 << 20)}, {"cpu.max", "7235 100000"}, {"memory.max", strconv.Itoa(128 << 20)},
	} {
		for _, d := range cg.dirs {
			if b, err := os.ReadFile(filepath.Join(d, want.file)); err == nil && strings.TrimSpace(string(b)) != want.value {
				t.Errorf("%s/%s = %s, want %s", d, want.file, b, want.value)
			}
		}
	}
}

// Rule 10, uncapped: the environment's processes still share a CPU group of
// their own, as they share a microVM on Lambda, so a process that yields
// (SCHED_IDLE) yields to the function, not to whatever else the host runs.
func TestEnvironmentHasItsOwnCPUGroup(t *testing.T) {
	f := run(t, nil)
	f.invoke(t, `{}`)
	if strings.Contains(f.log.String(), "no CPU group") {
		t.Skipf("SKIPPED LOUDLY: cgroups are not writable here, the environment shares the host's CPU group: %s", f.log.String())
	}
	own := cpuGroup(os.Getpid())
	pids := []int{f.sb.RuntimePID()}
	for _, e := range f.sb.Extensions() {
		pids = append(pids, e.PID)
	}
	env := cpuGroup(pids[0])
	if env == own {
		t.Fatalf("the runtime is in the sandbox's own CPU group %s", own)
	}
	for _, pid := range pids[1:] {
		if g := cpuGroup(pid); g != env {
			t.Errorf("process %d in CPU group %s, the runtime in %s", pid, g, env)
		}
	}
	for _, want := range []struct{ file, value string }{{"cpu.cfs_quota_us", "-1"}, {"cpu.max", "max 100000"}} {
		for _, d := range f.sb.cg.dirs {
			if b, err := os.ReadFile(filepath.Join(d, want.file)); err == nil && strings.TrimSpace(string(b)) != want.value {
				t.Errorf("%s/%s = %s uncapped, want %s", d, want.file, b, want.value)
			}
		}
	}
}

// cpuGroup is the cgroup of pid that schedules its CPU, in the hierarchy
// newCgroup uses: v2 where it is the only one, else the v1 cpu controller's.
func cpuGroup(pid int) string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return cgroupOf(strconv.Itoa(pid), "", "0")
	}
	return cgroupOf(strconv.Itoa(pid), "cpu", "")
}

// Rule 11: platform.report carries what AWS sends: errorType, initDurationMs
// on the first invocation, runtimeDone spans in milliseconds.
func TestPlatformReportFields(t *testing.T) {
	f := run(t, nil, "TESTEXT_SUBSCRIBE=sandbox.localdomain", "TESTEXT_SHUTDOWN_WAIT_MS=1000")
	first := f.invoke(t, `{"chunks":2,"chunk_bytes":10,"gap_ms":20}`)
	second := f.invoke(t, `{"error":"Custom.Failure"}`)
	f.sb.Close()
	ext := f.records(t, "testext")
	reports := map[string]rec{}
	for _, r := range telemetry(ext, "platform.report") {
		reports[r.record().str("requestId")] = r.record()
	}
	metrics := func(r rec) rec { m, _ := r["metrics"].(map[string]any); return m }
	if r := reports[first.RequestID]; r == nil || metrics(r).num("initDurationMs") <= 0 || r.str("status") != "success" {
		t.Errorf("first report %v: want initDurationMs", r)
	}
	r := reports[second.RequestID]
	if _, has := metrics(r)["initDurationMs"]; r == nil || has || r.str("status") != "error" || r.str("errorType") != "Custom.Failure" {
		t.Errorf("second report %v: want errorType Custom.Failure and no initDurationMs", r)
	}
	for _, d := range telemetry(ext, "platform.runtimeDone") {
		if d.record().str("requestId") != first.RequestID {
			continue
		}
		spans, _ := d.record()["spans"].([]any)
		if len(spans) != 2 {
			t.Fatalf("runtimeDone spans %v", spans)
		}
		// The chunks were 20 ms apart: responseDuration is about 20, in ms.
		if dur := rec(spans[1].(map[string]any)).num("durationMs"); dur < 15 || dur > 2000 {
			t.Errorf("responseDuration %v, want milliseconds (~20)", dur)
		}
	}
}

// Rule 12: the caller's response ends when the function's response ends, not
// when the extensions are done; their time still counts in the invocation.
func TestCallerResponseEndsWithTheFunctionsResponse(t *testing.T) {
	f := run(t, nil, "TESTEXT_HOLD_MS=800")
	srv := httptest.NewServer(f.sb.URLHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The extension holds the invocation for 800 ms after it recorded the
	// INVOKE: when the caller has its whole response, it has not asked for
	// the next event yet. The record itself may come a little later on a
	// loaded machine; it is awaited.
	var ext []rec
	for deadline := time.Now().Add(5 * time.Second); len(events(ext, "INVOKE")) == 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
		ext = f.records(t, "testext")
	}
	if len(events(ext, "INVOKE")) != 1 {
		t.Fatalf("extension records %v", ext)
	}
	if last := ext[len(ext)-1]; last.str("ev") != "event" {
		t.Errorf("the caller's response ended only after the extension was done (last record %v)", last)
	}
}

// Rule: every process of the environment gets the variables Lambda sets,
// the log group and stream included (an extension names its
// faas.instance after the stream): /aws/lambda/<function> and
// <date>/[<version>]<32 hex>.
func TestEnvironmentVariablesAsLambdaSetsThem(t *testing.T) {
	f := run(t, nil)
	env := map[string]string{}
	for _, kv := range f.sb.env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	stream := regexp.MustCompile(`^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$`)
	if env["AWS_LAMBDA_LOG_GROUP_NAME"] != "/aws/lambda/"+f.sb.cfg.FunctionName || !stream.MatchString(env["AWS_LAMBDA_LOG_STREAM_NAME"]) ||
		env["AWS_LAMBDA_FUNCTION_VERSION"] != "$LATEST" || env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "" || env["AWS_REGION"] == "" {
		t.Errorf("environment %v", env)
	}
}

// Rule 11: every environment has a /tmp of its own (TMPDIR here), shared by
// its runtime and its extensions, seen by no other environment, and gone
// with it. On Lambda /tmp is per execution environment: two environments
// of a host never meet there (the streamlens ring directory lives in it).
func TestEnvironmentHasItsOwnTmp(t *testing.T) {
	a, b := run(t, nil), run(t, nil)
	a.invoke(t, `{}`)
	b.invoke(t, `{}`)
	tmpOf := func(pid int) string {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "TMPDIR="); ok {
				return v
			}
		}
		return ""
	}
	ta := tmpOf(a.sb.RuntimePID())
	for _, e := range a.sb.Extensions() {
		if got := tmpOf(e.PID); got != ta {
			t.Errorf("extension %s: TMPDIR %q, the runtime's %q", e.Name, got, ta)
		}
	}
	if ta == "" || ta == tmpOf(b.sb.RuntimePID()) || ta == os.TempDir() {
		t.Fatalf("TMPDIR %q: not the environment's own (the other's %q, the host's %q)", ta, tmpOf(b.sb.RuntimePID()), os.TempDir())
	}
	if fi, err := os.Stat(ta); err != nil || !fi.IsDir() {
		t.Fatalf("%s: %v", ta, err)
	}
	a.sb.Close()
	if _, err := os.Stat(ta); !os.IsNotExist(err) {
		t.Errorf("%s outlived its environment: %v", ta, err)
	}
}

//go:build unix

// Package sandbox is a local Lambda execution environment, as strict as Lambda
// where Lambda is strict: the Runtime API (buffered and streaming responses,
// error trailers, size limits, the streaming bandwidth cap), the Extensions API
// (register for the events you want, event/next, INVOKE/SHUTDOWN, init and exit
// errors), the Telemetry API (subscription rules, batching, the
// sandbox.localdomain destination), the function timeout covering extensions,
// suppressed inits after a reset, the shutdown order, X-Ray tracing modes,
// Lambda Managed Instances (many invocations at once) and Lambda-sized CPU and
// memory. It runs the real function and extension binaries as processes and
// freezes them between invocations (SIGSTOP). docs/sandbox.md lists each rule
// with the test that shows it, and what is not modelled.
//
// The AWS Runtime Interface Emulator (github.com/aws/aws-lambda-runtime-interface-emulator)
// covers part of this, but it buffers streamed responses, does not freeze and
// answers a Telemetry API subscription with Telemetry.NotSupported.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Header names of the Runtime API.
const (
	hdrRequestID    = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline     = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionArn  = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID      = "Lambda-Runtime-Trace-Id"
	hdrResponseMode = "Lambda-Runtime-Function-Response-Mode"
	hdrErrType      = "Lambda-Runtime-Function-Error-Type"
	hdrErrBody      = "Lambda-Runtime-Function-Error-Body"
	hdrExtName      = "Lambda-Extension-Name"
	hdrExtID        = "Lambda-Extension-Identifier"
	hdrExtErrType   = "Lambda-Extension-Function-Error-Type"
)

// Response limits of Lambda.
const (
	MaxBufferedBytes = 6 << 20   // a buffered response
	MaxStreamBytes   = 200 << 20 // a streamed response
	// Past the first 6 MB a streamed response is sent at most at 2 MiB/s.
	unthrottledBytes = 6 << 20
	throttledRate    = 2 << 20 // bytes per second
)

// Invoke modes of a function URL, tracing modes and telemetry modes.
const (
	ModeStream   = "RESPONSE_STREAM"
	ModeBuffered = "BUFFERED"

	TracingPassThrough = "PassThrough"
	TracingActive      = "Active"

	TelemetryOn          = "on"
	TelemetryUnsupported = "unsupported"
)

// Config describes the environment.
type Config struct {
	Function     string   // path of the function executable (bootstrap)
	Extensions   []string // paths of extension executables (/opt/extensions/*)
	Env          []string // extra environment for every process
	FunctionName string   // default "function"
	MemoryMB     int      // default 128
	// CapResources limits the environment's processes to MemoryMB of memory
	// and MemoryMB/1769 of a CPU core, as Lambda does, where cgroups are
	// writable; elsewhere it says so on the log and runs uncapped. Capped or
	// not, the environment's processes share a CPU group of their own where
	// cgroups are writable, as they share a microVM on Lambda.
	CapResources    bool
	Timeout         time.Duration // function timeout, covering extensions; default 3s
	InitType        string        // "on-demand" (default) or "provisioned-concurrency"
	Freeze          bool          // SIGSTOP processes between invocations
	Log             io.Writer     // stdout and stderr of all processes: the log stream
	InitTimeout     time.Duration // default 10s
	ShutdownTimeout time.Duration // the whole Shutdown phase, runtime first; default 2s
	InvokeMode      string        // ModeStream (default) or ModeBuffered
	Tracing         string        // TracingPassThrough (default) or TracingActive
	Telemetry       string        // TelemetryOn (default) or TelemetryUnsupported (the emulator behind sam local)
	// MaxConcurrency > 1 is a Lambda Managed Instances environment: that many
	// invocations at once, extensions may register for SHUTDOWN only, the
	// Telemetry API speaks schema 2025-01-29 only, and nothing is frozen.
	MaxConcurrency int
	// Suppress lists Telemetry API event types the sandbox does not deliver, to
	// test how an extension copes when the platform's telemetry is lost.
	Suppress []string
}

// Lambda stops the runtime for at most this long at shutdown before it gives
// the extensions the rest of the shutdown budget.
const runtimeStopTimeout = 500 * time.Millisecond

// Request is one invocation's input.
type Request struct {
	Payload []byte
	// TraceHeader is the caller's X-Amzn-Trace-Id header, if any.
	TraceHeader string
}

// ResponseEnder is implemented by a response writer that wants to know when
// the function's response is over: the caller's response ends then, while
// the extensions may still be working (their time still counts in the
// invocation's duration). errType is the function's error, if any.
type ResponseEnder interface {
	EndResponse(errType string)
}

// Result describes one invocation.
type Result struct {
	RequestID       string
	Status          string // success | error | timeout | failure
	ErrorType       string
	ContentType     string
	Bytes           int64
	ResponseLatency time.Duration // invoke → first response byte
	ResponseEnd     time.Duration // invoke → the caller's response ended
	Duration        time.Duration // invoke → runtime done (platform.runtimeDone)
	Total           time.Duration // invoke → every extension back in event/next (platform.report)
	TraceHeader     string        // the X-Ray header given to runtime and extensions
	SuppressedInit  bool          // the environment was initialised inside this invocation
}

// PostRuntime is what the extensions added to the invocation after the
// runtime finished: report − runtimeDone.
func (r Result) PostRuntime() time.Duration { return r.Total - r.Duration }

// Sandbox is one execution environment.
type Sandbox struct {
	cfg   Config
	log   *syncWriter
	ln    net.Listener
	srv   *http.Server
	slots chan struct{} // one per concurrent invocation
	envMu sync.Mutex    // init, reset and Close
	arn   string
	// logStream is the environment's log stream, as Lambda names it:
	// <date>/[<version>]<32 hex>.
	logStream string
	cg        *cgroup // nil: uncapped
	// tmp is the environment's own temporary directory (TMPDIR): on
	// Lambda every execution environment has a /tmp of its own, which
	// its runtime and extensions share and no other environment sees.
	tmp   string
	stMu  sync.Mutex
	st    *state
	down  bool
	inits int

	closeOnce sync.Once
	closeErr  error // environments initialised so far: after the first, inits are suppressed
}

// state is one initialised environment; a reset replaces it.
type state struct {
	mu        sync.Mutex
	runtime   *proc
	exts      []*extension
	byID      map[string]*extension
	subs      []*subscriber
	initEvts  []json.RawMessage
	initErr   error
	rtNext    chan chan *invocation
	invs      map[string]*invocation
	frozen    bool
	initPhase bool
	initDur   time.Duration
	initUsed  bool // the first invocation's report carries initDurationMs
	resetOnce sync.Once
	// Lambda Managed Instances: the environment is ending (crashed says
	// why, when an extension crashed), and the ids of invocations that
	// timed out while their code runs on (a late response gets 410).
	ending   bool
	crashed  string
	timedOut map[string]bool
}

type extension struct {
	spawned    time.Time
	registered time.Time
	name       string
	path       string
	id         string
	events     map[string]bool
	proc       *proc
	next       chan chan []byte // a waiting /event/next call
}

type invocation struct {
	id          string
	payload     []byte
	deadline    time.Time
	start       time.Time
	w           io.Writer
	buffered    bool
	mu          sync.Mutex
	firstByte   time.Time
	lastByte    time.Time
	bytes       int64
	body        []byte // buffered mode: the response until it is complete
	contentType string
	errType     string
	responded   bool
	closed      bool          // the caller's response is over: no more writes
	done        chan struct{} // closed when the runtime's response or error is posted
	ctx         context.Context
	cancel      context.CancelFunc
	xray        string // X-Ray trace header, as Lambda passes it to the runtime and extensions
}

// Start starts the Runtime/Extensions/Telemetry API server. With
// provisioned-concurrency the environment initialises now, otherwise on the
// first Invoke.
func Start(cfg Config) (*Sandbox, error) {
	if cfg.FunctionName == "" {
		cfg.FunctionName = "function"
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 128
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.InitType == "" {
		cfg.InitType = "on-demand"
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 10 * time.Second
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.InvokeMode == "" {
		cfg.InvokeMode = ModeStream
	}
	if cfg.Tracing == "" {
		cfg.Tracing = TracingPassThrough
	}
	if cfg.Telemetry == "" {
		cfg.Telemetry = TelemetryOn
	}
	if cfg.MaxConcurrency < 1 {
		cfg.MaxConcurrency = 1
	}
	switch {
	case cfg.InvokeMode != ModeStream && cfg.InvokeMode != ModeBuffered:
		return nil, fmt.Errorf("invoke mode %q: want %s or %s", cfg.InvokeMode, ModeStream, ModeBuffered)
	case cfg.Tracing != TracingPassThrough && cfg.Tracing != TracingActive:
		return nil, fmt.Errorf("tracing %q: want %s or %s", cfg.Tracing, TracingPassThrough, TracingActive)
	case cfg.Telemetry != TelemetryOn && cfg.Telemetry != TelemetryUnsupported:
		return nil, fmt.Errorf("telemetry %q: want %s or %s", cfg.Telemetry, TelemetryOn, TelemetryUnsupported)
	}
	if cfg.managed() {
		cfg.Freeze = false // Lambda Managed Instances do not freeze between invocations
		// Their init type, in the init events and the environment, and
		// the environment is initialised before it takes traffic.
		cfg.InitType = initManaged
	}
	tmp, err := os.MkdirTemp("", "sandbox-tmp-")
	if err != nil {
		return nil, fmt.Errorf("the environment's /tmp: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	s := &Sandbox{cfg: cfg, log: &syncWriter{w: cfg.Log}, ln: ln, slots: make(chan struct{}, cfg.MaxConcurrency), tmp: tmp,
		arn:       "arn:aws:lambda:us-east-1:123456789012:function:" + cfg.FunctionName,
		logStream: time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16)}
	switch cg, err := newCgroup(cfg.MemoryMB, cfg.CapResources); {
	case err != nil && cfg.CapResources:
		fmt.Fprintf(s.log, "SANDBOX WARNING: cannot cap CPU and memory like a %d MB function (%v): running uncapped\n", cfg.MemoryMB, err)
	case err != nil:
		fmt.Fprintf(s.log, "SANDBOX WARNING: no CPU group of the environment's own (%v): its processes compete with every busy process of the host, which on Lambda they never do\n", err)
	case cfg.CapResources:
		s.cg = cg
		fmt.Fprintf(s.log, "SANDBOX capped like a %d MB function: %s\n", cfg.MemoryMB, cg)
	default:
		s.cg = cg
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", s.runtimeNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", s.runtimeResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", s.runtimeError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", s.runtimeInitError)
	mux.HandleFunc("POST /2020-01-01/extension/register", s.extRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", s.extNext)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", s.extInitError)
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", s.extExitError)
	mux.HandleFunc("PUT /2022-07-01/telemetry", s.telemetrySubscribe)
	s.srv = &http.Server{Handler: mux}
	go func() { _ = s.srv.Serve(ln) }()
	if cfg.InitType == "provisioned-concurrency" || cfg.managed() {
		s.envMu.Lock()
		_, err := s.init(time.Now().Add(cfg.InitTimeout), "init")
		s.envMu.Unlock()
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (c Config) managed() bool { return c.MaxConcurrency > 1 }

// idleRuntimes is how many runtime calls to next may wait at once: one in a
// classic environment (a second is an error); on Managed Instances every
// worker of the runtime waits in its own next — AWS's Node runtime client
// starts 8 per vCPU whatever the concurrency — and AWS's emulator queues up
// to 10,000 of them, handing each invocation to one.
func (c Config) idleRuntimes() int {
	if c.managed() {
		return 10_000
	}
	return c.MaxConcurrency
}

// initManaged is the initializationType of a Lambda Managed Instances
// environment.
const initManaged = "lambda-managed-instances"

// TempDir is the environment's own temporary directory, its processes'
// TMPDIR (Lambda's /tmp); removed at Close.
func (s *Sandbox) TempDir() string { return s.tmp }

// RuntimeAPI is the value of AWS_LAMBDA_RUNTIME_API.
func (s *Sandbox) RuntimeAPI() string { return s.ln.Addr().String() }

func (s *Sandbox) env() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_LAMBDA_RUNTIME_API=" + s.RuntimeAPI(),
		"AWS_LAMBDA_FUNCTION_NAME=" + s.cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(s.cfg.MemoryMB),
		"AWS_LAMBDA_INITIALIZATION_TYPE=" + s.cfg.InitType,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + s.cfg.FunctionName,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + s.logStream,
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"TZ=:UTC",
		// The environment's /tmp: its own, as on Lambda, where it is
		// /tmp itself (os.TempDir, Node's os.tmpdir() read TMPDIR).
		"TMPDIR=" + s.tmp,
	}
	if s.cfg.managed() {
		env = append(env, "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(s.cfg.MaxConcurrency))
	}
	return append(env, s.cfg.Env...)
}

func (s *Sandbox) spawn(name, path string) (*proc, error) {
	p, err := spawn(name, path, s.env(), s.log)
	if err != nil {
		return nil, err
	}
	if s.cg != nil {
		if err := s.cg.add(p.cmd.Process.Pid); err != nil {
			fmt.Fprintf(s.log, "SANDBOX WARNING: %s is not in the environment's cgroup: %v\n", name, err)
		}
	}
	return p, nil
}

// init runs an Init phase that must end by deadline: extensions start and
// register, then the runtime starts; the phase ends when the runtime and
// every extension wait in next. phase is "init", or "invoke" for a suppressed
// init (after a reset, inside the invocation that needed it). s.envMu is held.
func (s *Sandbox) init(deadline time.Time, phase string) (*state, error) {
	st := &state{byID: map[string]*extension{}, rtNext: make(chan chan *invocation, s.cfg.idleRuntimes()),
		invs: map[string]*invocation{}, initPhase: true, timedOut: map[string]bool{}}
	s.setState(st)
	s.inits++
	begin := time.Now()
	initType := s.cfg.InitType
	st.initEvts = append(st.initEvts, event(begin, "platform.initStart", map[string]any{
		"initializationType": initType, "phase": phase, "functionName": s.cfg.FunctionName, "functionVersion": "$LATEST"}))
	fail := func(err error) (*state, error) {
		s.kill(st)
		s.setState(nil)
		return nil, fmt.Errorf("init: %w", err)
	}
	timeout := time.After(time.Until(deadline))
	for _, path := range s.cfg.Extensions {
		// Listed before it starts: a fast extension registers at once.
		e := &extension{name: filepath.Base(path), path: path, next: make(chan chan []byte, 1)}
		st.mu.Lock()
		st.exts = append(st.exts, e)
		e.spawned = time.Now()
		st.mu.Unlock()
		p, err := s.spawn("extension "+e.name, path)
		if err != nil {
			return fail(err)
		}
		st.mu.Lock()
		e.proc = p
		st.mu.Unlock()
	}
	err := poll(timeout, "extensions to register", func() (bool, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.initErr != nil {
			return false, st.initErr
		}
		registered := 0
		for _, e := range st.exts {
			if e.id != "" {
				registered++
			}
			if !e.proc.alive() {
				return false, fmt.Errorf("extension %s exited during init", e.name)
			}
		}
		return registered == len(st.exts), nil
	})
	if err != nil {
		return fail(err)
	}
	rt, err := s.spawn("runtime", s.cfg.Function)
	if err != nil {
		return fail(err)
	}
	st.mu.Lock()
	st.runtime = rt
	st.mu.Unlock()
	// Ready: the runtime and every extension are waiting in next.
	for _, e := range st.exts {
		if err := s.waitExtNext(st, e, timeout); err != nil {
			return fail(err)
		}
	}
	err = poll(timeout, "the runtime to call next", func() (bool, error) {
		if err := st.initError(); err != nil {
			return false, err
		}
		if len(st.rtNext) > 0 {
			return true, nil
		}
		if !rt.alive() {
			return false, errors.New("runtime exited during init")
		}
		return false, nil
	})
	if err != nil {
		return fail(err)
	}
	if err := st.initError(); err != nil {
		return fail(err)
	}
	st.mu.Lock()
	st.initPhase = false
	st.initDur = time.Since(begin)
	st.mu.Unlock()
	s.emit(st, "platform", event(time.Now(), "platform.initRuntimeDone", map[string]any{"initializationType": initType, "phase": phase, "status": "success"}))
	s.emit(st, "platform", event(time.Now(), "platform.initReport", map[string]any{
		"initializationType": initType, "phase": phase, "status": "success",
		"metrics": map[string]any{"durationMs": ms(st.initDur)}}))
	if s.cfg.managed() {
		for _, e := range st.exts {
			go s.watchExtension(st, e)
		}
	}
	return st, nil
}

func (st *state) initError() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.initErr
}

// waitExtNext waits until extension e calls /event/next (e.next holds the call).
func (s *Sandbox) waitExtNext(st *state, e *extension, deadline <-chan time.Time) error {
	return poll(deadline, "extension "+e.name+" to call event/next", func() (bool, error) {
		if len(e.next) > 0 {
			return true, nil
		}
		if !e.proc.alive() {
			if err := st.initError(); err != nil {
				return false, err
			}
			return false, fmt.Errorf("extension %s exited", e.name)
		}
		return false, nil
	})
}

// poll checks cond every millisecond until it is done or fails, or the
// deadline passes. Polling keeps the waits free of helper goroutines that could
// outlive a failed init.
func poll(deadline <-chan time.Time, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if done, err := cond(); err != nil || done {
			return err
		}
		select {
		case <-deadline:
			return fmt.Errorf("%w waiting for %s", errTimedOut, what)
		case <-tick.C:
		}
	}
}

var errTimedOut = errors.New("timed out")

// Invoke runs one invocation with payload and no caller trace header.
func (s *Sandbox) Invoke(ctx context.Context, payload []byte, w io.Writer) (Result, error) {
	return s.InvokeRequest(ctx, Request{Payload: payload}, w)
}

// InvokeRequest runs one invocation and writes the response bytes to w as the
// runtime streams them (in buffered mode: at once, when complete). If w has a
// Flush method it is called after every write; if it has
// SetContentType(string) it is told the response's content type first; if it
// is a ResponseEnder it is told when the caller's response is over. It
// returns when the whole invocation is over, extensions included.
func (s *Sandbox) InvokeRequest(ctx context.Context, req Request, w io.Writer) (Result, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	defer func() { <-s.slots }()

	// The timeout starts now: a suppressed init below counts against it (a
	// cold start's does not: the clock starts again after it).
	inv := &invocation{id: uuid.NewString(), payload: req.Payload, start: time.Now(), w: w,
		buffered: s.cfg.InvokeMode == ModeBuffered, done: make(chan struct{})}
	inv.xray = traceHeader(s.cfg.Tracing, req.TraceHeader, inv.start)
	inv.deadline = inv.start.Add(s.cfg.Timeout)
	inv.ctx, inv.cancel = context.WithDeadline(ctx, inv.deadline)
	defer func() { inv.cancel() }()

	st, phase, err := s.environment(inv)
	suppressed := phase == "invoke"
	if err != nil {
		if suppressed && errors.Is(err, errTimedOut) {
			// The suppressed init ran out the invocation's own timeout.
			res := Result{RequestID: inv.id, Status: "timeout", ErrorType: "Sandbox.Timedout", TraceHeader: inv.xray,
				SuppressedInit: true, Duration: time.Since(inv.start)}
			res.Total = res.Duration
			inv.endResponse(res.ErrorType)
			return res, nil
		}
		return Result{}, err
	}
	if phase == "init" {
		// A cold start's init is the Init phase, with a limit of its own:
		// the invocation, its timeout and its duration start after it.
		inv.cancel()
		inv.start = time.Now()
		inv.deadline = inv.start.Add(s.cfg.Timeout)
		inv.ctx, inv.cancel = context.WithDeadline(ctx, inv.deadline)
	}
	s.thaw(st)
	st.mu.Lock()
	st.invs[inv.id] = inv
	initDur := time.Duration(-1)
	if !st.initUsed && (s.cfg.InitType != "provisioned-concurrency" || suppressed) {
		initDur = st.initDur
	}
	st.initUsed = true
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.invs, inv.id)
		st.mu.Unlock()
	}()
	s.emit(st, "platform", event(inv.start, "platform.start", map[string]any{"requestId": inv.id, "version": "$LATEST",
		"tracing": map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.xray}}))

	// INVOKE to every extension registered for it, the event to the runtime.
	evt, _ := json.Marshal(map[string]any{"eventType": "INVOKE", "deadlineMs": inv.deadline.UnixMilli(), "requestId": inv.id,
		"invokedFunctionArn": s.arn, "tracing": map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.xray}})
	invoked := st.invokeExtensions()
	for _, e := range invoked {
		select {
		case reply := <-e.next:
			reply <- evt
		case <-e.proc.exited: // a dead extension gets nothing; the wait below notices
		}
	}

	status := ""
	var rtDone time.Time
	select {
	case reply := <-st.rtNext:
		reply <- inv
		status = s.waitRuntime(st, inv)
	case <-st.runtime.exited:
		status = "failure"
	case <-inv.ctx.Done():
		status = "timeout"
	}
	rtDone = time.Now()
	inv.cancel() // stops a response still streaming (timeout)
	inv.mu.Lock()
	if status == "success" && inv.errType != "" {
		status = "error"
	}
	switch status {
	case "timeout":
		inv.errType = "Sandbox.Timedout"
	case "failure":
		inv.errType = "Runtime.ExitError"
	}
	if s.cfg.managed() && status == "failure" {
		// The environment ended under it because an extension crashed.
		st.mu.Lock()
		if st.crashed != "" {
			status, inv.errType = "error", st.crashed
		}
		st.mu.Unlock()
	}
	res := Result{RequestID: inv.id, TraceHeader: inv.xray, Status: status, ErrorType: inv.errType, ContentType: inv.contentType,
		Bytes: inv.bytes, Duration: rtDone.Sub(inv.start), SuppressedInit: suppressed}
	if !inv.firstByte.IsZero() {
		res.ResponseLatency = inv.firstByte.Sub(inv.start)
	}
	rd := map[string]any{"requestId": inv.id, "status": status,
		"metrics": map[string]any{"durationMs": ms(res.Duration), "producedBytes": inv.bytes}}
	if !inv.firstByte.IsZero() {
		rd["spans"] = []map[string]any{
			{"name": "responseLatency", "start": inv.start.UTC().Format(time.RFC3339Nano), "durationMs": ms(res.ResponseLatency)},
			{"name": "responseDuration", "start": inv.firstByte.UTC().Format(time.RFC3339Nano), "durationMs": ms(inv.lastByte.Sub(inv.firstByte))},
		}
	}
	if res.ErrorType != "" {
		rd["errorType"] = res.ErrorType
	}
	inv.mu.Unlock()
	// The caller's response is over now, whatever the extensions still do.
	inv.endResponse(res.ErrorType)
	res.ResponseEnd = time.Since(inv.start)
	if s.cfg.managed() {
		// Lambda Managed Instances send no runtimeDone: the report says
		// how the invocation ended, with the response spans. A timed-out
		// invocation fails while its code runs on: no reset.
		if status == "timeout" {
			st.mu.Lock()
			st.timedOut[inv.id] = true
			st.mu.Unlock()
		}
		res.Total = res.Duration
		s.report(st, inv, res, initDur, rd["spans"])
		if status == "failure" {
			// A runtime that exits terminates the environment, as an
			// extension that does (watchExtension).
			s.reset(st, "failure")
		}
		return res, nil
	}
	s.emit(st, "platform", event(rtDone, "platform.runtimeDone", rd))

	if status == "failure" || status == "timeout" {
		// Lambda resets the environment: runtime gone, extensions shut down
		// with the reason, a fresh (suppressed) init on the next invocation.
		st.runtime.signal(syscall.SIGKILL)
		res.Total = time.Since(inv.start)
		s.report(st, inv, res, initDur, nil)
		s.reset(st, status)
		return res, nil
	}
	// The invoke phase ends when every extension is back in event/next, and
	// the function timeout covers it: an extension still busy at the deadline
	// times the invocation out.
	extDeadline := time.After(time.Until(inv.deadline))
	for _, e := range invoked {
		if err := s.waitExtNext(st, e, extDeadline); err != nil {
			res.Status, res.ErrorType = "timeout", "Sandbox.Timedout"
			if !e.proc.alive() {
				res.Status, res.ErrorType = "failure", "Extension.Crash"
			}
			fmt.Fprintf(s.log, "SANDBOX extension %s: %v: invocation %s\n", e.name, err, res.Status)
			res.Total = time.Since(inv.start)
			s.report(st, inv, res, initDur, nil)
			s.reset(st, res.Status)
			return res, nil
		}
	}
	res.Total = time.Since(inv.start)
	s.report(st, inv, res, initDur, nil)
	if s.cfg.Freeze {
		s.freeze(st)
	}
	return res, nil
}

// environment returns the initialised environment, running an init first if
// there is none, and the phase of the init it ran ("" if none). The first is
// the Init phase ("init"), before the invocation; after it, an init is
// suppressed: it runs inside the invocation (phase "invoke") and its time
// counts against inv's timeout.
func (s *Sandbox) environment(inv *invocation) (*state, string, error) {
	s.envMu.Lock()
	defer s.envMu.Unlock()
	if s.down {
		return nil, "", errors.New("sandbox is shut down")
	}
	if st := s.state(); st != nil {
		return st, "", nil
	}
	if s.inits == 0 {
		st, err := s.init(time.Now().Add(s.cfg.InitTimeout), "init")
		return st, "init", err
	}
	st, err := s.init(inv.deadline, "invoke")
	return st, "invoke", err
}

// invokeExtensions lists the extensions registered for INVOKE.
func (st *state) invokeExtensions() []*extension {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*extension
	for _, e := range st.exts {
		if e.events["INVOKE"] {
			out = append(out, e)
		}
	}
	return out
}

// waitRuntime waits until the runtime has answered inv (response or error
// posted) and, in a classic environment, is back in next: that is when the
// platform says runtimeDone.
func (s *Sandbox) waitRuntime(st *state, inv *invocation) string {
	select {
	case <-inv.done:
	case <-st.runtime.exited:
		return "failure"
	case <-inv.ctx.Done():
		return "timeout"
	}
	if s.cfg.managed() {
		return "success"
	}
	err := poll(time.After(time.Until(inv.deadline)), "the runtime to call next", func() (bool, error) {
		if len(st.rtNext) > 0 {
			return true, nil
		}
		if !st.runtime.alive() {
			return false, errors.New("runtime exited")
		}
		return false, nil
	})
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, errTimedOut):
		return "timeout"
	}
	return "failure"
}

// watchExtension ends a Lambda Managed Instances environment when extension e
// exits outside a shutdown: there an extension crash terminates the
// environment. Its running invocations fail (error, Extension.Crash), the
// other extensions get SHUTDOWN with reason failure.
func (s *Sandbox) watchExtension(st *state, e *extension) {
	<-e.proc.exited
	st.mu.Lock()
	ending := st.ending
	if !ending {
		st.crashed = "Extension.Crash"
	}
	st.mu.Unlock()
	if ending {
		return
	}
	fmt.Fprintf(s.log, "SANDBOX extension %s exited: Lambda Managed Instances terminate the environment\n", e.name)
	s.reset(st, "failure")
}

// reset ends an environment after a timeout or a crash, once.
func (s *Sandbox) reset(st *state, reason string) {
	st.resetOnce.Do(func() {
		s.shutdown(st, reason)
		s.envMu.Lock()
		if s.state() == st {
			s.setState(nil)
		}
		s.envMu.Unlock()
	})
}

// report emits platform.report. On Lambda Managed Instances it carries the
// status, the error type, the response spans and durationMs (from the
// invocation's start to its response) and nothing else: no billed
// duration, memory or init duration.
func (s *Sandbox) report(st *state, inv *invocation, res Result, initDur time.Duration, spans any) {
	if s.cfg.managed() {
		rec := map[string]any{"requestId": inv.id, "status": res.Status, "metrics": map[string]any{"durationMs": ms(res.Duration)}}
		if spans != nil {
			rec["spans"] = spans
		}
		if res.ErrorType != "" {
			rec["errorType"] = res.ErrorType
		}
		s.emit(st, "platform", event(inv.start.Add(res.Duration), "platform.report", rec))
		return
	}
	var kb int64
	st.mu.Lock()
	kb += st.runtime.maxRSSKB()
	for _, e := range st.exts {
		kb += e.proc.maxRSSKB()
	}
	st.mu.Unlock()
	d := res.Total
	metrics := map[string]any{"durationMs": ms(d), "billedDurationMs": (d.Milliseconds() + 1), "memorySizeMB": s.cfg.MemoryMB,
		"maxMemoryUsedMB": (kb + 1023) / 1024}
	if initDur >= 0 {
		metrics["initDurationMs"] = ms(initDur)
	}
	rec := map[string]any{"requestId": inv.id, "status": res.Status, "metrics": metrics}
	if res.ErrorType != "" {
		rec["errorType"] = res.ErrorType
	}
	s.emit(st, "platform", event(inv.start.Add(d), "platform.report", rec))
}

func (s *Sandbox) freeze(st *state) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.runtime.signal(syscall.SIGSTOP)
	for _, e := range st.exts {
		e.proc.signal(syscall.SIGSTOP)
	}
	st.frozen = true
}

func (s *Sandbox) thaw(st *state) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.frozen {
		return
	}
	st.runtime.signal(syscall.SIGCONT)
	for _, e := range st.exts {
		e.proc.signal(syscall.SIGCONT)
	}
	st.frozen = false
}

// shutdown runs the Shutdown phase as Lambda does: the runtime first (SIGTERM,
// then SIGKILL after at most 500 ms), then telemetry still buffered is sent,
// then SHUTDOWN to each extension registered for it, which has the rest of
// the budget; SIGKILL for whatever still runs at the deadline, and at once for
// an extension that did not register for SHUTDOWN.
func (s *Sandbox) shutdown(st *state, reason string) {
	st.mu.Lock()
	st.ending = true
	st.mu.Unlock()
	s.thaw(st)
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	if st.runtime.alive() {
		st.runtime.signal(syscall.SIGTERM)
		select {
		case <-st.runtime.exited:
		case <-time.After(min(runtimeStopTimeout, time.Until(deadline))):
			fmt.Fprintf(s.log, "SANDBOX runtime did not stop within %v of SIGTERM: killed\n", runtimeStopTimeout)
		}
	}
	st.runtime.kill()
	st.mu.Lock()
	subs := append([]*subscriber(nil), st.subs...)
	st.mu.Unlock()
	for _, sub := range subs {
		sub.flush()
	}
	evt, _ := json.Marshal(map[string]any{"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline.UnixMilli()})
	var wg sync.WaitGroup
	for _, e := range st.exts {
		if !e.events["SHUTDOWN"] {
			if e.proc.alive() {
				fmt.Fprintf(s.log, "SANDBOX extension %s is not registered for SHUTDOWN: killed\n", e.name)
			}
			e.proc.kill()
			continue
		}
		wg.Add(1)
		go func(e *extension) {
			defer wg.Done()
			select {
			case reply := <-e.next:
				reply <- evt
			case <-e.proc.exited:
				return
			case <-time.After(time.Until(deadline)):
			}
			select {
			case <-e.proc.exited:
				if e.proc.err != nil {
					fmt.Fprintf(s.log, "SANDBOX extension %s exited after SHUTDOWN: %v\n", e.name, e.proc.err)
				}
			case <-time.After(time.Until(deadline)):
				fmt.Fprintf(s.log, "SANDBOX extension %s did not exit before the shutdown deadline: killed\n", e.name)
			}
		}(e)
	}
	wg.Wait()
	s.kill(st)
}

func (s *Sandbox) kill(st *state) {
	st.mu.Lock()
	procs := []*proc{st.runtime}
	for _, e := range st.exts {
		procs = append(procs, e.proc)
	}
	subs := st.subs
	st.subs = nil
	st.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, sub := range subs {
		sub.close()
	}
}

// Close shuts the environment down (SHUTDOWN with reason spindown) once every
// invocation in flight is over, and stops the API server. Calls after the
// first return at once.
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() {
		for i := 0; i < cap(s.slots); i++ {
			s.slots <- struct{}{}
		}
		s.envMu.Lock()
		s.down = true
		st := s.state()
		s.envMu.Unlock()
		if st != nil {
			s.shutdown(st, "spindown")
			s.setState(nil)
		}
		if s.cg != nil {
			s.cg.remove()
		}
		os.RemoveAll(s.tmp)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.closeErr = s.srv.Shutdown(ctx)
	})
	return s.closeErr
}

func (s *Sandbox) emit(st *state, category string, ev json.RawMessage) {
	var head struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(ev, &head)
	for _, t := range s.cfg.Suppress {
		if t == head.Type {
			return
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.initPhase {
		st.initEvts = append(st.initEvts, ev)
	}
	for _, sub := range st.subs {
		sub.add(category, ev)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Sandbox) setState(st *state) {
	s.stMu.Lock()
	s.st = st
	s.stMu.Unlock()
}

// endResponse ends the caller's response once: in buffered mode the body goes
// out now, whole, unless the function failed.
func (inv *invocation) endResponse(errType string) {
	inv.mu.Lock()
	if inv.closed {
		inv.mu.Unlock()
		return
	}
	inv.closed = true
	body := inv.body
	inv.body = nil
	inv.mu.Unlock()
	if inv.buffered && errType == "" && len(body) > 0 {
		_, _ = inv.w.Write(body)
	}
	if e, ok := inv.w.(ResponseEnder); ok {
		e.EndResponse(errType)
	}
}

// ExtensionInfo describes a running extension process.
type ExtensionInfo struct {
	Name string
	PID  int
	// Register is the time from exec to its register call: the extension's
	// share of a cold start.
	Register time.Duration
}

// Extensions describes the extensions of the current environment (none before
// the first init or after a reset).
func (s *Sandbox) Extensions() []ExtensionInfo {
	st := s.state()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []ExtensionInfo
	for _, e := range st.exts {
		info := ExtensionInfo{Name: e.name, Register: e.registered.Sub(e.spawned)}
		if e.proc != nil && e.proc.cmd.Process != nil {
			info.PID = e.proc.cmd.Process.Pid
		}
		out = append(out, info)
	}
	return out
}

// RuntimePID is the runtime process's pid, 0 when there is no environment.
func (s *Sandbox) RuntimePID() int {
	st := s.state()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.runtime == nil || st.runtime.cmd.Process == nil {
		return 0
	}
	return st.runtime.cmd.Process.Pid
}

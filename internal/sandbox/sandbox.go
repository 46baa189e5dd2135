// Package sandbox is a local Lambda execution environment, faithful to the
// documented Runtime API (buffered and streaming responses, error trailers),
// Extensions API (register, event/next, INVOKE/SHUTDOWN, init and exit errors)
// and Telemetry API (subscription, batched platform events). It runs the real
// function and extension binaries as processes, freezes them between
// invocations (SIGSTOP), enforces the function timeout and resets the
// environment after a timeout or a crash, as Lambda does.
//
// The AWS Runtime Interface Emulator would cover part of this, but its module
// path (go.amzn.com) is not served by the Go module proxy, and it implements
// neither the Telemetry API nor freezing.
package sandbox

import (
	"context"
	"crypto/rand"
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

	// MaxStreamBytes is Lambda's soft limit for a streamed response.
	MaxStreamBytes = 20 << 20
)

// Config describes the environment.
type Config struct {
	Function        string        // path of the function executable (bootstrap)
	Extensions      []string      // paths of extension executables (/opt/extensions/*)
	Env             []string      // extra environment for every process
	FunctionName    string        // default "function"
	MemoryMB        int           // default 128
	Timeout         time.Duration // function timeout; default 3s
	InitType        string        // "on-demand" (default) or "provisioned-concurrency"
	Freeze          bool          // SIGSTOP processes between invocations
	Log             io.Writer     // stdout and stderr of all processes: the log stream
	InitTimeout     time.Duration // default 10s
	ShutdownTimeout time.Duration // time extensions get after SHUTDOWN; default 2s
	// Suppress lists Telemetry API event types the sandbox does not deliver, to
	// test how an extension copes when the platform's telemetry is lost.
	Suppress []string
}

// Result describes one invocation.
type Result struct {
	RequestID       string
	Status          string // success | error | timeout | failure
	ErrorType       string
	ContentType     string
	Bytes           int64
	ResponseLatency time.Duration // invoke → first response byte
	Duration        time.Duration // invoke → runtime done
	TraceHeader     string        // the X-Ray header given to runtime and extensions
}

// Sandbox is one execution environment: one invocation at a time.
type Sandbox struct {
	cfg  Config
	log  *syncWriter
	ln   net.Listener
	srv  *http.Server
	mu   sync.Mutex // serialises Invoke, init and Close
	arn  string
	stMu sync.Mutex // guards st for the API handlers; writers also hold mu
	st   *state
	down bool
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
	cur       *invocation
	frozen    bool
	initPhase bool
}

type extension struct {
	spawned    time.Time
	registered time.Time
	name       string
	path       string
	id         string
	proc       *proc
	next       chan chan []byte // a waiting /event/next call
	exited     bool
}

type invocation struct {
	id          string
	payload     []byte
	deadline    time.Time
	start       time.Time
	w           io.Writer
	mu          sync.Mutex
	firstByte   time.Time
	lastByte    time.Time
	bytes       int64
	contentType string
	errType     string
	responded   bool
	ctx         context.Context
	cancel      context.CancelFunc
	xray        string // X-Ray trace header, as Lambda passes it to the runtime and extensions
}

// xrayHeader makes an X-Ray trace header: Root=1-<8 hex epoch>-<24 hex>.
func xrayHeader(t time.Time) string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%x;Parent=%x;Sampled=1", t.Unix(), b[:12], b[12:20])
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, log: &syncWriter{w: cfg.Log}, ln: ln,
		arn: "arn:aws:lambda:us-east-1:123456789012:function:" + cfg.FunctionName}
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
	if cfg.InitType == "provisioned-concurrency" {
		s.mu.Lock()
		err := s.init()
		s.mu.Unlock()
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

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
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"TZ=:UTC",
	}
	return append(env, s.cfg.Env...)
}

// init runs the Init phase: extensions start and register, then the runtime
// starts; the phase ends when the runtime and every extension wait in next.
func (s *Sandbox) init() error {
	st := &state{byID: map[string]*extension{}, rtNext: make(chan chan *invocation, 1), initPhase: true}
	s.setState(st)
	begin := time.Now()
	st.initEvts = append(st.initEvts, event(begin, "platform.initStart", map[string]any{
		"initializationType": s.cfg.InitType, "phase": "init", "functionName": s.cfg.FunctionName, "functionVersion": "$LATEST"}))
	fail := func(err error) error {
		s.kill(st)
		s.setState(nil)
		return fmt.Errorf("init: %w", err)
	}
	deadline := time.After(s.cfg.InitTimeout)
	for _, path := range s.cfg.Extensions {
		// Listed before it starts: a fast extension registers at once.
		e := &extension{name: filepath.Base(path), path: path, next: make(chan chan []byte, 1)}
		st.mu.Lock()
		st.exts = append(st.exts, e)
		st.mu.Unlock()
		st.mu.Lock()
		e.spawned = time.Now()
		st.mu.Unlock()
		p, err := spawn("extension "+e.name, path, s.env(), s.log)
		if err != nil {
			return fail(err)
		}
		st.mu.Lock()
		e.proc = p
		st.mu.Unlock()
	}
	err := poll(deadline, "extensions to register", func() (bool, error) {
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
	rt, err := spawn("runtime", s.cfg.Function, s.env(), s.log)
	if err != nil {
		return fail(err)
	}
	st.mu.Lock()
	st.runtime = rt
	st.mu.Unlock()
	// Ready: the runtime and every extension are waiting in next.
	for _, e := range st.exts {
		if err := s.waitExtNext(st, e, deadline); err != nil {
			return fail(err)
		}
	}
	err = poll(deadline, "the runtime to call next", func() (bool, error) {
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
	st.mu.Unlock()
	d := time.Since(begin)
	s.emit(st, "platform", event(time.Now(), "platform.initRuntimeDone", map[string]any{"initializationType": s.cfg.InitType, "phase": "init", "status": "success"}))
	s.emit(st, "platform", event(time.Now(), "platform.initReport", map[string]any{
		"initializationType": s.cfg.InitType, "phase": "init", "status": "success",
		"metrics": map[string]any{"durationMs": ms(d)}}))
	return nil
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
			return fmt.Errorf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// Invoke runs one invocation and writes the response bytes to w as the runtime
// streams them. If w has a Flush method it is called after every write; if it
// has SetContentType(string) it is told the response's content type first.
func (s *Sandbox) Invoke(ctx context.Context, payload []byte, w io.Writer) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return Result{}, errors.New("sandbox is shut down")
	}
	if s.st == nil {
		if err := s.init(); err != nil {
			return Result{}, err
		}
	}
	st := s.st
	s.thaw(st)
	inv := &invocation{id: uuid.NewString(), payload: payload, start: time.Now(), w: w}
	inv.xray = xrayHeader(inv.start)
	inv.deadline = inv.start.Add(s.cfg.Timeout)
	inv.ctx, inv.cancel = context.WithDeadline(ctx, inv.deadline)
	defer inv.cancel()
	st.mu.Lock()
	st.cur = inv
	st.mu.Unlock()
	s.emit(st, "platform", event(inv.start, "platform.start", map[string]any{"requestId": inv.id, "version": "$LATEST"}))

	// INVOKE to every extension, the event to the runtime.
	evt, _ := json.Marshal(map[string]any{"eventType": "INVOKE", "deadlineMs": inv.deadline.UnixMilli(), "requestId": inv.id,
		"invokedFunctionArn": s.arn, "tracing": map[string]string{"type": "X-Amzn-Trace-Id",
			"value": inv.xray}})
	for _, e := range st.exts {
		select {
		case reply := <-e.next:
			reply <- evt
		case <-e.proc.exited: // a dead extension gets nothing; the reset below notices
		}
	}
	(<-st.rtNext) <- inv

	status := ""
	var rtDone time.Time
	select {
	case reply := <-st.rtNext:
		st.rtNext <- reply // keep it waiting for the next invocation
		rtDone = time.Now()
		status = "success"
		inv.mu.Lock()
		if inv.errType != "" {
			status = "error"
		}
		inv.mu.Unlock()
	case <-st.runtime.exited:
		rtDone, status = time.Now(), "failure"
	case <-inv.ctx.Done():
		rtDone, status = time.Now(), "timeout"
	}
	inv.cancel() // stops a response still streaming (timeout)
	inv.mu.Lock()
	res := Result{RequestID: inv.id, TraceHeader: inv.xray, Status: status, ErrorType: inv.errType, ContentType: inv.contentType, Bytes: inv.bytes,
		Duration: rtDone.Sub(inv.start)}
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
	if status == "timeout" {
		res.ErrorType = "Sandbox.Timedout"
	} else if status == "failure" {
		res.ErrorType = "Runtime.ExitError"
	}
	if res.ErrorType != "" {
		rd["errorType"] = res.ErrorType
	}
	inv.mu.Unlock()
	s.emit(st, "platform", event(rtDone, "platform.runtimeDone", rd))

	if status == "timeout" || status == "failure" {
		// Lambda resets the environment: runtime gone, extensions shut down
		// with the reason, a fresh init on the next invocation.
		st.runtime.signal(syscall.SIGKILL)
		s.report(st, inv, status, rtDone)
		s.shutdown(st, status)
		s.setState(nil)
		return res, nil
	}
	// The invoke phase ends when every extension is back in event/next.
	extDeadline := time.After(time.Until(inv.deadline) + s.cfg.ShutdownTimeout)
	for _, e := range st.exts {
		if err := s.waitExtNext(st, e, extDeadline); err != nil {
			// An extension that dies or overruns fails the invocation and
			// resets the environment, as on Lambda.
			status, errType := "timeout", "Extension.Timeout"
			if !e.proc.alive() {
				status, errType = "failure", "Extension.Crash"
			}
			s.report(st, inv, status, time.Now())
			s.shutdown(st, status)
			s.setState(nil)
			res.Status, res.ErrorType = status, errType
			return res, nil
		}
	}
	s.report(st, inv, status, time.Now())
	if s.cfg.Freeze {
		s.freeze(st)
	}
	return res, nil
}

func (s *Sandbox) report(st *state, inv *invocation, status string, end time.Time) {
	var kb int64
	st.mu.Lock()
	kb += st.runtime.maxRSSKB()
	for _, e := range st.exts {
		kb += e.proc.maxRSSKB()
	}
	st.mu.Unlock()
	d := end.Sub(inv.start)
	s.emit(st, "platform", event(end, "platform.report", map[string]any{"requestId": inv.id, "status": status,
		"metrics": map[string]any{"durationMs": ms(d), "billedDurationMs": (d.Milliseconds() + 1), "memorySizeMB": s.cfg.MemoryMB,
			"maxMemoryUsedMB": (kb + 1023) / 1024}}))
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

// shutdown runs the Shutdown phase: SIGTERM to the runtime, SHUTDOWN to each
// extension when it next waits in event/next, then SIGKILL for whatever is
// still running at the deadline.
func (s *Sandbox) shutdown(st *state, reason string) {
	s.thaw(st)
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	if st.runtime.alive() {
		st.runtime.signal(syscall.SIGTERM)
	}
	evt, _ := json.Marshal(map[string]any{"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline.UnixMilli()})
	var wg sync.WaitGroup
	for _, e := range st.exts {
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
	select {
	case <-st.runtime.exited:
	case <-time.After(time.Until(deadline)):
	}
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
		if p != nil {
			p.signal(syscall.SIGCONT)
			p.signal(syscall.SIGKILL)
			<-p.exited
		}
	}
	for _, sub := range subs {
		sub.close()
	}
}

// Close shuts the environment down (SHUTDOWN with reason spindown) and stops
// the API server.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil
	}
	s.down = true
	if s.st != nil {
		s.shutdown(s.st, "spindown")
		s.setState(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
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
	s.stMu.Lock()
	st := s.st
	s.stMu.Unlock()
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

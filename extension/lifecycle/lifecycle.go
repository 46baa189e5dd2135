// Package lifecycle is the streamlens extension's life: it registers with the
// Extensions API, subscribes to the Telemetry API, feeds the function's
// events and the platform's into the state machine (package state), decides
// when to let each invocation go, and hands what is final to the sinks.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/extapi"
	"github.com/streamlens/streamlens/extension/ingest"
	"github.com/streamlens/streamlens/extension/logpipe"
	"github.com/streamlens/streamlens/extension/otlpsink"
	"github.com/streamlens/streamlens/extension/sched"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/extension/telemetry"
	"github.com/streamlens/streamlens/protocol"
)

// Run is the extension's whole life. cfgErr is the result of config.FromEnv:
// its bad values have fallen back to their defaults, and are said on stderr
// and counted (ConfigErrors). With STREAMLENS_STRICT=on the extension
// registers, then reports them through /init/error instead, so that the
// function's init fails with a message naming the variables (CI, staging).
func Run(ctx context.Context, cfg config.Config, cfgErr error, getenv func(string) string, stdout, stderr io.Writer) error {
	if cfg.RuntimeAPI == "" {
		return cfgErr
	}
	// stderr is the same log pipe as stdout: bounded the same way, so a
	// blocked log agent cannot stall the lifecycle through a warning.
	ew := logpipe.New(stderr, 64<<10)
	defer ew.Close(cfg.StdoutWait)
	stderr = ew
	api := extapi.New(cfg.RuntimeAPI)
	defer api.Close()
	managed := false
	if err := api.Register(ctx, cfg.Name); extapi.InvokeRefused(err) {
		// Lambda Managed Instances: no INVOKE, so no invocation boundary;
		// streams are flushed as they end and telemetry as it arrives.
		managed = true
		fmt.Fprintln(stderr, "streamlens: Lambda Managed Instances (INVOKE refused): registered for SHUTDOWN, flushing on stream end and telemetry")
		if err := api.Register(ctx, cfg.Name, extapi.Shutdown); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if cfg.SchedIdle {
		// From here on the extension only takes CPU the function leaves
		// (package sched): registered at full speed, since Lambda starts
		// the runtime only once every extension has.
		if _, err := sched.Idle(); err != nil {
			fmt.Fprintf(stderr, "streamlens: STREAMLENS_SCHED_IDLE: %v: running at normal priority\n", err)
		}
	}
	fail := func(errType string, err error) error {
		if rerr := api.InitError(ctx, errType, err.Error()); rerr != nil {
			return fmt.Errorf("%w (and reporting it failed: %v)", err, rerr)
		}
		return err
	}
	var configErrors int64
	if cfgErr != nil {
		if cfg.Strict {
			return fail("Extension.ConfigError", fmt.Errorf("streamlens configuration: %w", cfgErr))
		}
		// Degrade, never break the function: each bad value has fallen back
		// to its default; say which, here and as a metric.
		for _, e := range unjoin(cfgErr) {
			fmt.Fprintf(stderr, "streamlens: configuration: %v: using the default (STREAMLENS_STRICT=on fails init instead)\n", e)
			configErrors++
		}
	}

	lw := logpipe.New(stdout, cfg.StdoutBuffer)
	defer lw.Close(cfg.StdoutWait)
	r := &runner{cfg: cfg, api: api, table: state.New(cfg.MaxOpenStreams, cfg.MaxChunksPerStream), changed: make(chan struct{}, 1),
		stderr: stderr, log: lw, managed: managed,
		enc: emfsink.New(emfsink.Config{Namespace: cfg.Namespace, FunctionName: cfg.FunctionName, TTFBThreshold: cfg.TTFBThreshold,
			InstrumentMetrics: cfg.InstrumentMetrics, Version: cfg.Version})}
	r.events = ingest.NewEvents(func(ev *protocol.Event, now time.Time) {
		if r.table.Apply(ev, now) {
			r.notify()
		}
	})
	in, err := ingest.ListenFallback(cfg.Addr, &r.mu, r.events.Datagram)
	var listenErrors int64
	switch {
	case err != nil && (cfg.Strict || !errors.Is(err, ingest.ErrAddrUnusable)):
		return fail("Extension.ListenError", fmt.Errorf("streamlens: STREAMLENS_ADDR: %w", err))
	case err != nil:
		// Degrade, never break the function: it runs as without
		// streamlens, and the platform's figures still come.
		fmt.Fprintf(stderr, "streamlens: STREAMLENS_ADDR: %v: no stream events are received (STREAMLENS_STRICT=on fails init instead)\n", err)
		listenErrors = 1
	}
	defer in.Close()
	r.in = in
	r.table.SetManaged(managed)
	r.table.SetMemoryLimit(cfg.MemoryLimit)
	r.table.Count(state.Counters{ConfigErrors: configErrors, ListenErrors: listenErrors})
	if cfg.OTLP.On {
		sp, err := otlpsink.New(otlpsink.Config{OTLP: cfg.OTLP, FunctionName: cfg.FunctionName,
			MaxEvents: cfg.SpanMaxEvents, TTFBThreshold: cfg.TTFBThreshold}, getenv)
		switch {
		case err != nil && cfg.Strict:
			return fail("Extension.ConfigError", fmt.Errorf("streamlens configuration: %w", err))
		case err != nil:
			// TLS files it cannot use: spans off, the rest goes on.
			fmt.Fprintf(stderr, "streamlens: configuration: %v: spans are not exported (STREAMLENS_STRICT=on fails init instead)\n", err)
			r.table.Count(state.Counters{ConfigErrors: 1})
		default:
			r.spans = sp
		}
	}
	warn := &rateLimited{period: time.Minute, say: func(msg string) { fmt.Fprintf(stderr, "streamlens: span export: %s\n", msg) }}
	r.bg = newBackground(r.enc, r.spans, lw, func(c state.Counters) { r.locked(func(t *state.Table) { t.Count(c) }) }, warn.warn,
		cfg.OTLP.Timeout, cfg.MaxInstruments, cfg.InstrumentMetrics)
	r.bg.inst.Allow(cfg.InstrumentAllow)
	bctx, stopBackground := context.WithCancel(ctx)
	bdone := make(chan struct{})
	go func() { defer close(bdone); r.bg.run(bctx) }()
	defer func() { stopBackground(); <-bdone }()
	if cfg.Telemetry {
		if err := r.subscribe(ctx); err != nil {
			// Without telemetry streamlens still works, with less: no platform
			// TTFB, no init metrics, and a stream's end (or the deadline) marks
			// the end of an invocation. Worth a warning, not a failed init.
			fmt.Fprintf(stderr, "streamlens: telemetry disabled: %v\n", err)
			r.table.Count(state.Counters{TelemetryUnavailable: 1})
		} else {
			r.table.SetTelemetry(true)
			r.table.SetReportWait(r.reportWait())
			defer r.tl.Close(context.Background())
		}
	}
	return r.loop(ctx)
}

type runner struct {
	cfg config.Config
	api *extapi.Client
	// mu guards table; the socket reader reads under it too (see ingest).
	mu      sync.Mutex
	table   *state.Table
	changed chan struct{} // signalled when the table changed
	in      *ingest.Socket
	events  *ingest.Events // decodes the socket's datagrams, under mu
	tl      *telemetry.Listener
	enc     *emfsink.Encoder
	spans   *otlpsink.Exporter // nil when STREAMLENS_OTLP=off
	bg      *background        // span export and per-instrument documents, off the path to next
	managed bool               // Lambda Managed Instances: SHUTDOWN only, flushed by flushLoop
	cpu     time.Duration      // process CPU time at the last boundary
	drops   uint64             // the socket's kernel drops at the last write
	// stopFlushLoop stops flushLoop and waits for it (nil when not managed).
	stopFlushLoop func()
	log           *logpipe.Writer
	stderr        io.Writer
}

// notify wakes a wait for the table to change.
func (r *runner) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// locked runs f with the table locked.
func (r *runner) locked(f func(t *state.Table)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.table)
}

// subscribe listens for Telemetry API batches and subscribes to them. The
// listener binds STREAMLENS_TELEMETRY_ADDR (sandbox.localdomain:4243 by
// default, the name Lambda requires for a destination). Outside Lambda the
// name may not resolve (sam local, a laptop, a test sandbox); it then binds
// loopback, which is what sandbox.localdomain is inside Lambda, and still
// subscribes with the name.
func (r *runner) subscribe(ctx context.Context) error {
	host, port, _ := config.SplitHostPort(r.cfg.TelemetryAddr)
	addr := r.cfg.TelemetryAddr
	if host == destinationHost && !resolves(ctx, host) {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	tl, err := telemetry.Listen(addr, func(evs []telemetry.Event, bad int) {
		r.locked(func(t *state.Table) {
			bad += telemetry.Apply(t, evs, time.Now())
			t.Count(state.Counters{BadTelemetry: int64(bad)})
		})
		r.notify()
	})
	if err != nil {
		return fmt.Errorf("STREAMLENS_TELEMETRY_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || host == "0.0.0.0" || ip != nil && ip.IsLoopback() {
		host = destinationHost
	}
	schema := "2022-12-13"
	if r.managed {
		schema = "2025-01-29" // the only schema Managed Instances accept
	}
	sub := extapi.Subscription{
		SchemaVersion: schema,
		Destination:   extapi.Destination{Protocol: "HTTP", URI: "http://" + host + ":" + strconv.Itoa(tl.Port())},
		// Platform events only: function logs would bring every log line of the
		// function through this process for nothing.
		Types: []string{"platform"},
		Buffering: extapi.Buffering{MaxItems: 1000, MaxBytes: 256 * 1024,
			TimeoutMs: int(r.cfg.TelemetryBuffer / time.Millisecond)},
	}
	if err := r.api.SubscribeTelemetry(ctx, sub); err != nil {
		tl.Close(context.Background())
		return err
	}
	r.tl = tl
	return nil
}

// resolves reports whether host resolves within a short time: an offline
// machine's resolver must not stall the extension's init.
func resolves(ctx context.Context, host string) bool {
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	return err == nil && len(addrs) > 0
}

// destinationHost is the only host Lambda accepts in a Telemetry API
// destination: the execution environment's own name.
const destinationHost = "sandbox.localdomain"

func (r *runner) loop(ctx context.Context) error {
	r.cpu = processCPU()
	if r.managed {
		// No freeze between invocations and no boundary to keep clear: the
		// background work runs whenever there is some.
		r.bg.open()
		fctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.flushLoop(fctx) }()
		defer func() { stop(); <-done }()
		// SHUTDOWN's flush must not run beside the loop's.
		r.stopFlushLoop = func() { stop(); <-done }
	}
	for {
		ev, err := r.api.Next(ctx)
		if err != nil {
			// The sandbox is gone or broken: flush what we have, then stop.
			until := time.Now().Add(r.cfg.ShutdownMargin)
			r.flushAll(state.ShutdownFailure("api-error"), until)
			r.bg.writeInstruments(time.Now())
			r.bg.finish(until)
			return err
		}
		switch ev.EventType {
		case extapi.Invoke:
			r.invocation(ctx, ev)
		case extapi.Shutdown:
			// Whatever the function sent while we were frozen is in the
			// socket now.
			r.in.Drain(time.Now().Add(maxDrain))
			r.shutdown(ev)
			return nil
		}
	}
}

// invocation holds invocation ev while that is free or cheap, then flushes
// what is final. It must return before the next /event/next, which must come
// before the deadline: on Lambda the function timeout covers extensions, and a
// late next turns a good invocation into a timeout and a reset.
func (r *runner) invocation(ctx context.Context, ev extapi.Event) {
	started, deadline := time.Now(), time.UnixMilli(ev.DeadlineMs)
	r.locked(func(t *state.Table) {
		t.BeginInvocation(state.Invoke{RequestID: ev.RequestID, Deadline: deadline, Tracing: ev.Tracing.Value, InvokedARN: ev.InvokedFunctionArn}, started)
	})
	// Whatever the function sent while we were frozen, or while this
	// process waited for a CPU, is in the socket now. It is read only once
	// the table knows this invocation: under a flood of made-up streams the
	// table evicts those of other requests than the current one first, and
	// read before, this invocation's own stream would count as another's.
	r.in.Drain(time.Now().Add(maxDrain))

	// Everything below, flush included, ends by half the margin before the
	// deadline.
	limit := deadline.Add(-r.cfg.DeadlineMargin / 2)
	failure := r.wait(ctx, ev.RequestID, started, deadline)
	r.bg.close()
	r.in.Drain(earlier(limit, time.Now().Add(maxDrain)))
	// What the extension cost this invocation in CPU: everything since the
	// last boundary (ingest, this flush's share, the background work done
	// while it ran), reported on its invocation record.
	cpu := processCPU()
	var b emfsink.Batch
	r.locked(func(t *state.Table) {
		t.SetCPU(ev.RequestID, cpu-r.cpu)
		now := time.Now()
		b = emfsink.Batch{Streams: t.Finalize(ev.RequestID, failure, now), Invocations: t.ReadyInvocations(now, false), Counters: t.TakeCounters()}
	})
	r.cpu = cpu
	r.write(b, limit)
}

// kernelDrops is how many datagrams the kernel dropped on the event socket
// since the last call: each may have been a stream's end, so they are
// counted where the dropped-events alarm looks.
func (r *runner) kernelDrops() int64 {
	d := r.in.KernelDrops()
	n := int64(d - r.drops)
	r.drops = d
	return n
}

// maxDrain bounds one drain of the socket: a flood must not hold the
// invocation (what is left is read by the reader goroutine).
const maxDrain = 20 * time.Millisecond

// write flushes one batch: the EMF documents of its streams, invocations and
// counters go to stdout before next (the environment may freeze, or never
// thaw again, right after), bounded and in pieces (emfsink's Write); the
// streams' spans and per-instrument values go to the background, which works
// while the environment is thawed anyway.
func (r *runner) write(b emfsink.Batch, until time.Time) {
	b.Counters.DroppedEMF += r.log.TakeDropped()
	b.Counters.KernelDrops += r.kernelDrops()
	r.locked(func(*state.Table) {
		malformed, oversized := r.events.TakeBad()
		b.Counters.Malformed += malformed
		b.Counters.Oversized += oversized
	})
	now := time.Now()
	if errs := r.enc.Write(b, now, until, func(p []byte) { r.log.Give(p) }); len(errs) > 0 {
		fmt.Fprintf(r.stderr, "streamlens: flush: emf: %d documents skipped, first: %v\n", len(errs), errs[0])
	}
	r.bg.add(b.Streams, r.cfg.SpanMaxEvents, now)
	// Bounded: a blocked stdout costs at most StdoutWait here; the lines stay
	// queued and are written when it moves.
	r.log.Wait(min(r.cfg.StdoutWait, time.Until(until)))
}

// wait decides when the extension lets invocation inv go, and returns why inv
// failed (none if it did not, or is not known to have). Waiting costs the
// invocation nothing while the function still runs; every millisecond after
// the runtime finished is billed. So the extension waits only for what ends
// with the function's own work:
//   - runtimeDone arrived: the platform says the runtime is done;
//   - every stream of inv has its end (the common case: the end is sent
//     before the response closes, so this costs ~0);
//   - no stream started within STREAMLENS_START_WAIT_MS (a non-streaming
//     invocation; a stream that starts later is read all the same);
//   - open streams went quiet for STREAMLENS_START_WAIT_MS × 5 (a lost end,
//     without telemetry to say the runtime finished);
//   - deadline − STREAMLENS_DEADLINE_MARGIN_MS, whatever happens.
//
// Streams still open are carried to the next boundary (or SHUTDOWN), where
// runtimeDone, a late end or the lack of both decides them.
func (r *runner) wait(ctx context.Context, requestID string, started, deadline time.Time) state.Failure {
	limit := deadline.Add(-r.cfg.DeadlineMargin)
	startBy := started.Add(r.cfg.StartWait)
	quiet := 5 * r.cfg.StartWait
	// The two rules of time: no stream started by startBy (a non-streaming
	// invocation), or its open streams went quiet (a lost end).
	timeUp := func(p state.Progress, now time.Time) bool {
		return noStreamBy(p, now, startBy) || p.Open > 0 && now.Sub(p.LastArrival) >= quiet
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var p state.Progress
		r.locked(func(t *state.Table) { p = t.Progress(requestID) })
		if timeUp(p, now) {
			// A rule of time is about to let the invocation go. The reader
			// goroutine may lag behind the socket (the extension yields the
			// CPU to the function: SCHED_IDLE, a 128 MB function's 7 % of a
			// core), so decide on what the function sent, not on what was
			// read: drain first, then look again.
			r.in.Drain(earlier(limit, now.Add(maxDrain)))
			now = time.Now()
			r.locked(func(t *state.Table) { p = t.Progress(requestID) })
		}
		if f := state.PlatformFailure(p.RuntimeStatus); f.Failed() {
			return f
		}
		if p.RuntimeStatus != "" || p.Seen > 0 && p.Open == 0 || timeUp(p, now) || !now.Before(limit) {
			return state.Failure{}
		}
		if backgroundMayRun(p, now, startBy) {
			r.bg.open()
		}
		wake := limit
		if p.Seen == 0 {
			wake = earlier(wake, startBy)
		} else {
			wake = earlier(wake, p.LastArrival.Add(quiet))
		}
		timer.Reset(time.Until(wake))
		select {
		case <-r.changed:
		case <-timer.C:
		case <-ctx.Done():
			return state.ShutdownFailure("cancelled")
		}
	}
}

// backgroundMayRun reports whether background work no longer competes with
// what the caller waits for: a chunk of the invocation is out, or no stream
// started by startBy (a non-streaming invocation). A stream that started and
// has not delivered its first chunk yet — a slow first quote — keeps it
// waiting, however long that takes.
func backgroundMayRun(p state.Progress, now, startBy time.Time) bool {
	return p.FirstChunk || noStreamBy(p, now, startBy)
}

// noStreamBy reports whether startBy passed with no stream of the
// invocation seen.
func noStreamBy(p state.Progress, now, startBy time.Time) bool {
	return p.Seen == 0 && !now.Before(startBy)
}

// shutdown flushes everything within the event's deadline and returns.
func (r *runner) shutdown(ev extapi.Event) {
	if r.stopFlushLoop != nil {
		r.stopFlushLoop()
		r.locked(func(t *state.Table) {
			t.EndReported()
			// Invocations whose report is still on its way (a busy
			// function starves this process of the CPU) are waited for
			// below, as any other.
			t.AwaitReports()
		})
	}
	budget := time.UnixMilli(ev.DeadlineMs).Add(-r.cfg.ShutdownMargin)
	if r.table.Telemetry() {
		// The last invocation's platform.report arrives after we finished it;
		// give it a moment, within the budget.
		waitUntil := earlier(budget, time.Now().Add(r.cfg.RuntimeDoneWait))
		r.waitReports(waitUntil)
	}
	r.in.Drain(earlier(budget, time.Now().Add(maxDrain)))
	f := state.ShutdownFailure(ev.ShutdownReason)
	r.locked(func(t *state.Table) { t.ShutDown(f) })
	r.flushAll(f, budget)
	// Metrics before spans: the per-instrument documents now, then the
	// last spans with what is left of the budget.
	r.bg.writeInstruments(time.Now())
	r.bg.finish(budget)
	// Counters the background produced (failed exports) and those held
	// back (routine counts).
	last := emfsink.Batch{Final: true}
	r.locked(func(t *state.Table) { last.Counters = t.TakeCounters() })
	r.write(last, budget)
	// What is queued for stdout gets the rest of the budget.
	r.log.Wait(time.Until(budget))
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (r *runner) waitReports(until time.Time) {
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		var pending bool
		r.locked(func(t *state.Table) { pending = t.PendingReports() })
		if !pending || !time.Now().Before(until) {
			return
		}
		select {
		case <-r.changed:
		case <-timer.C:
			return
		}
	}
}

func (r *runner) flushAll(f state.Failure, until time.Time) {
	var b emfsink.Batch
	r.locked(func(t *state.Table) {
		b = emfsink.Batch{Streams: t.FinalizeAll(f), Invocations: t.ReadyInvocations(time.Now(), true), Counters: t.TakeCounters()}
	})
	r.write(b, until)
}

// flushLoop flushes without invocation boundaries (Lambda Managed Instances,
// where many invocations run at once, no INVOKE arrives and no runtimeDone:
// platform.report says how each ended). A stream goes out once its
// invocation's report judged it — at once when it ended or failed, after
// state.EndGrace when it is still open after a success — or, ended, when
// its report is overdue; an invocation's record when its report arrives.
// Events are attributed by request id throughout.
func (r *runner) flushLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		case <-tick.C:
		}
		var b emfsink.Batch
		r.locked(func(t *state.Table) {
			now := time.Now()
			b.Streams = t.FinalizeEnded(now, r.reportWait())
			b.Invocations = t.ReadyInvocations(now, false)
			b.Counters = t.TakeCounters()
		})
		if len(b.Streams) > 0 || len(b.Invocations) > 0 || b.Counters != (state.Counters{}) {
			r.write(b, time.Now().Add(r.cfg.StdoutWait))
		}
	}
}

// reportWait is how long a record waits for its platform.report at least:
// the Telemetry API sends it in a batch buffered up to
// STREAMLENS_TELEMETRY_BUFFER_MS after the invocation ended, so several
// buffers' worth.
func (r *runner) reportWait() time.Duration { return 4*r.cfg.TelemetryBuffer + 100*time.Millisecond }

// unjoin lists the errors errors.Join put together.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

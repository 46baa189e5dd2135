// Package extension is the streamlens Lambda extension: it registers with the
// Extensions API, subscribes to the Telemetry API, reads stream events from the
// function, and flushes EMF metrics at every invocation boundary and at
// SHUTDOWN.
package extension

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/streamlens/streamlens/extension/extapi"
)

// Run is the extension's whole life. cfgErr is the result of ConfigFromEnv: the
// extension registers first so that a bad configuration can be reported through
// /init/error (the function's init then fails with a message naming the
// variable) instead of disappearing in a log line.
func Run(ctx context.Context, cfg Config, cfgErr error, getenv func(string) string, stdout, stderr io.Writer) error {
	if cfg.RuntimeAPI == "" {
		return cfgErr
	}
	// stderr is the same log pipe as stdout: bounded the same way, so a
	// blocked log agent cannot stall the lifecycle through a warning.
	ew := newLogWriter(stderr, 64<<10)
	defer ew.close(cfg.StdoutWait)
	stderr = ew
	api := extapi.New(cfg.RuntimeAPI)
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
	fail := func(errType string, err error) error {
		if rerr := api.InitError(ctx, errType, err.Error()); rerr != nil {
			return fmt.Errorf("%w (and reporting it failed: %v)", err, rerr)
		}
		return err
	}
	if cfgErr != nil {
		return fail("Extension.ConfigError", fmt.Errorf("streamlens configuration: %w", cfgErr))
	}

	table := newTable(cfg.MaxOpenStreams, cfg.MaxChunksPerStream)
	in, err := listenIngest(cfg.Addr, table)
	if err != nil {
		return fail("Extension.ListenError", fmt.Errorf("streamlens: STREAMLENS_ADDR: %w", err))
	}
	defer in.close()

	lw := newLogWriter(stdout, cfg.StdoutBuffer)
	defer lw.close(cfg.StdoutWait)
	r := &runner{cfg: cfg, api: api, table: table, in: in, stderr: stderr, log: lw, managed: managed,
		fl: &flusher{cfg: cfg, out: lw, now: time.Now}}
	if cfg.OTLP {
		sp, err := newSpanner(cfg, getenv)
		if err != nil {
			return fail("Extension.ConfigError", err)
		}
		r.spans = sp
		defer sp.shutdown()
	}
	if cfg.Telemetry {
		if err := r.subscribe(ctx); err != nil {
			// Without telemetry streamlens still works, with less: no platform
			// TTFB, no init metrics, and a stream's end (or the deadline) marks
			// the end of an invocation. Worth a warning, not a failed init.
			fmt.Fprintf(stderr, "streamlens: telemetry disabled: %v\n", err)
			table.counters.TelemetryUnavailable = 1
		} else {
			table.telemetry = true
			defer r.tl.Close(context.Background())
		}
	}
	return r.loop(ctx)
}

type runner struct {
	cfg     Config
	api     *extapi.Client
	table   *Table
	in      *ingest
	tl      *telemetryListener
	fl      *flusher
	spans   *spanner // nil when STREAMLENS_OTLP=off
	managed bool     // Lambda Managed Instances: SHUTDOWN only, flushed by flushLoop
	// stopFlushLoop stops flushLoop and waits for it (nil when not managed).
	stopFlushLoop func()
	log           *logWriter
	stderr        io.Writer
}

// subscribe listens for Telemetry API batches and subscribes to them. The
// listener binds STREAMLENS_TELEMETRY_ADDR (sandbox.localdomain:4243 by
// default, the name Lambda requires for a destination). Outside Lambda the
// name may not resolve (sam local, a laptop, a test sandbox); it then binds
// loopback, which is what sandbox.localdomain is inside Lambda, and still
// subscribes with the name.
func (r *runner) subscribe(ctx context.Context) error {
	host, port, _ := splitHostPort(r.cfg.TelemetryAddr)
	addr := r.cfg.TelemetryAddr
	if host == destinationHost && !resolves(ctx, host) {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	tl, err := listenTelemetry(addr, r.table)
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
	if r.managed {
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
			r.flushAll("api-error", time.Now().Add(r.cfg.ShutdownMargin))
			return err
		}
		// Whatever the function sent while we were frozen is in the socket now.
		r.in.drain(time.Now().Add(maxDrain))
		switch ev.EventType {
		case extapi.Invoke:
			r.invocation(ctx, ev)
		case extapi.Shutdown:
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
	t := r.table
	t.mu.Lock()
	inv := t.beginInvocation(ev.RequestID, time.UnixMilli(ev.DeadlineMs), ev.Tracing.Value)
	t.mu.Unlock()

	// Everything below, flush included, ends by half the margin before the
	// deadline.
	limit := inv.deadline.Add(-r.cfg.DeadlineMargin / 2)
	failure := r.wait(ctx, inv)
	r.in.drain(earlier(limit, time.Now().Add(maxDrain)))
	t.mu.Lock()
	b := batch{streams: t.finalize(inv, failure)}
	b.invocations = t.readyInvocations(false)
	b.counters = t.takeCounters()
	t.mu.Unlock()
	r.write(b, limit)
}

// maxDrain bounds one drain of the socket: a flood must not hold the
// invocation (what is left is read by the reader goroutine).
const maxDrain = 20 * time.Millisecond

// write flushes one batch by until: EMF first (it is what alarms read), then
// the spans.
func (r *runner) write(b batch, until time.Time) {
	b.counters.DroppedEMF += r.log.takeDropped()
	if err := r.fl.write(b); err != nil {
		fmt.Fprintf(r.stderr, "streamlens: flush: %v\n", err)
	}
	// Bounded: a blocked stdout costs at most StdoutWait here; the lines stay
	// queued and are written when it moves.
	r.log.wait(min(r.cfg.StdoutWait, time.Until(until)))
	if r.spans == nil || len(b.streams) == 0 {
		return
	}
	if _, err := r.spans.export(b.streams, until); err != nil {
		r.table.mu.Lock()
		r.table.counters.SpanExportErr++
		r.table.mu.Unlock()
	}
}

// wait decides when the extension lets invocation inv go, and returns why inv
// failed ("" if it did not, or is not known to have). Waiting costs the
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
func (r *runner) wait(ctx context.Context, inv *invocation) string {
	t := r.table
	limit := inv.deadline.Add(-r.cfg.DeadlineMargin)
	startBy := inv.started.Add(r.cfg.StartWait)
	quiet := 5 * r.cfg.StartWait
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		t.mu.Lock()
		rd := inv.runtimeDone
		seen, open, last := t.streamsOf(inv.requestID)
		t.mu.Unlock()
		switch {
		case rd != nil && rd.status != "success":
			return ReasonRuntime + rd.status
		case rd != nil, seen > 0 && open == 0, seen == 0 && !now.Before(startBy),
			open > 0 && now.Sub(last) >= quiet, !now.Before(limit):
			return ""
		}
		wake := limit
		if seen == 0 {
			wake = earlier(wake, startBy)
		} else {
			wake = earlier(wake, last.Add(quiet))
		}
		timer.Reset(time.Until(wake))
		select {
		case <-t.changed:
		case <-timer.C:
		case <-ctx.Done():
			return "cancelled"
		}
	}
}

// shutdown flushes everything within the event's deadline and returns.
func (r *runner) shutdown(ev extapi.Event) {
	if r.stopFlushLoop != nil {
		r.stopFlushLoop()
		r.table.mu.Lock()
		r.table.endReported()
		r.table.mu.Unlock()
	}
	budget := time.UnixMilli(ev.DeadlineMs).Add(-r.cfg.ShutdownMargin)
	if r.table.telemetry {
		// The last invocation's platform.report arrives after we finished it;
		// give it a moment, within the budget.
		waitUntil := earlier(budget, time.Now().Add(r.cfg.RuntimeDoneWait))
		r.waitReports(waitUntil)
	}
	r.in.drain(earlier(budget, time.Now().Add(maxDrain)))
	r.flushAll(ReasonShutdown+ev.ShutdownReason, budget)
	// What is queued for stdout gets the rest of the budget.
	r.log.wait(time.Until(budget))
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (r *runner) waitReports(until time.Time) {
	t := r.table
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		t.mu.Lock()
		pending := false
		for _, inv := range t.invocations {
			if inv.ended && inv.report == nil {
				pending = true
			}
		}
		t.mu.Unlock()
		if !pending || !time.Now().Before(until) {
			return
		}
		select {
		case <-t.changed:
		case <-timer.C:
			return
		}
	}
}

func (r *runner) flushAll(reason string, until time.Time) {
	t := r.table
	t.mu.Lock()
	b := batch{streams: t.finalizeAll(reason), invocations: t.readyInvocations(true), counters: t.takeCounters()}
	t.mu.Unlock()
	r.write(b, until)
	// Counters that the last write itself produced (a failed span export).
	t.mu.Lock()
	last := batch{counters: t.takeCounters()}
	t.mu.Unlock()
	if last.counters != (Counters{}) {
		r.write(last, until)
	}
}

// flushLoop flushes without invocation boundaries (Lambda Managed Instances,
// where many invocations run at once and no INVOKE arrives): a stream when its
// end arrives, or when its invocation's runtimeDone says it failed, or when it
// stayed open a grace after a successful runtimeDone; invocation records when
// their report arrives. Events are attributed by request id throughout.
func (r *runner) flushLoop(ctx context.Context) {
	t := r.table
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ticked := false
		select {
		case <-ctx.Done():
			return
		case <-t.changed:
		case <-tick.C:
			ticked = true
		}
		t.mu.Lock()
		b := batch{streams: t.finalizeEnded(t.now(), managedEndGrace)}
		if ticked {
			// Records wait on the tick: the report follows runtimeDone by a
			// batch, and a record without it is kept for a few ticks.
			b.invocations = t.readyInvocations(false)
		}
		b.counters = t.takeCounters()
		t.mu.Unlock()
		if len(b.streams) > 0 || len(b.invocations) > 0 || b.counters != (Counters{}) {
			r.write(b, time.Now().Add(r.cfg.StdoutWait+r.cfg.OTLPTimeout))
		}
	}
}

// managedEndGrace is how long a stream may stay open after its invocation's
// successful runtimeDone before it counts as truncated (no-end), where there
// is no next boundary to wait for.
const managedEndGrace = time.Second

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
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/counters"
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
	// The ring directory is made before registering: Lambda starts the
	// runtime once every extension has registered, and the function's
	// client looks for the directory when it starts.
	var rings *ingest.Rings
	var ringErr error
	if cfg.RingDir != "" {
		rings, ringErr = ingest.OpenRings(cfg.RingDir)
		if rings != nil {
			defer rings.Close()
		}
	}
	lw := logpipe.New(stdout, cfg.StdoutBuffer)
	defer lw.Close(cfg.StdoutWait)
	r := &runner{cfg: cfg, api: api, table: state.New(cfg.MaxOpenStreams, cfg.MaxChunksPerStream), changed: make(chan struct{}, 1),
		stderr: stderr, log: lw,
		enc: emfsink.New(emfsink.Config{Namespace: cfg.Namespace, FunctionName: cfg.FunctionName, TTFBThreshold: cfg.TTFBThreshold, IdleLimit: cfg.IdleLimit,
			InstrumentMetrics: cfg.InstrumentMetrics, Version: cfg.Version})}
	r.events = ingest.NewEvents(func(ev *protocol.Event, now time.Time) {
		if r.table.Apply(ev, now) {
			r.notify()
		}
	})
	if rings != nil {
		r.events.UseRings(rings)
	}
	// The event socket is bound before registering too: the runtime starts
	// once every extension has registered, and its client's first datagram
	// (its ring's announcement) must find it. Sent to an unbound UDP port,
	// it would be refused, and the refusal would cost the next one as well.
	in, listenErr := ingest.ListenFallback(cfg.Addr, &r.mu, r.events.Datagram)
	if in != nil {
		defer in.Close()
	}
	r.in = in
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
	var ringDirErrors int64
	switch {
	case ringErr != nil && cfg.Strict:
		return fail("Extension.ConfigError", fmt.Errorf("streamlens: STREAMLENS_RING_DIR: %w", ringErr))
	case ringErr != nil:
		fmt.Fprintf(stderr, "streamlens: STREAMLENS_RING_DIR: %v: functions send their events by datagram (STREAMLENS_STRICT=on fails init instead)\n", ringErr)
		ringDirErrors = 1
	}
	var listenErrors int64
	switch err := listenErr; {
	case err != nil && (cfg.Strict || !errors.Is(err, ingest.ErrAddrUnusable)):
		return fail("Extension.ListenError", fmt.Errorf("streamlens: STREAMLENS_ADDR: %w", err))
	case err != nil:
		// Degrade, never break the function: it runs as without
		// streamlens, and the platform's figures still come.
		fmt.Fprintf(stderr, "streamlens: STREAMLENS_ADDR: %v: no stream events are received (STREAMLENS_STRICT=on fails init instead)\n", err)
		listenErrors = 1
	}
	r.managed = managed
	r.table.SetManaged(managed)
	r.table.SetMemoryLimit(cfg.MemoryLimit)
	r.counts.Add(counters.Counters{ConfigErrors: configErrors, ListenErrors: listenErrors, RingDirUnusable: ringDirErrors})
	if cfg.OTLP.On {
		sp, err := otlpsink.New(otlpsink.Config{OTLP: cfg.OTLP, FunctionName: cfg.FunctionName,
			MaxEvents: cfg.SpanMaxEvents, TTFBThreshold: cfg.TTFBThreshold}, getenv)
		switch {
		case err != nil && cfg.Strict:
			return fail("Extension.ConfigError", fmt.Errorf("streamlens configuration: %w", err))
		case err != nil:
			// TLS files it cannot use: spans off, the rest goes on.
			fmt.Fprintf(stderr, "streamlens: configuration: %v: spans are not exported (STREAMLENS_STRICT=on fails init instead)\n", err)
			r.counts.Add(counters.Counters{ConfigErrors: 1})
		default:
			r.spans = sp
		}
	}
	warn := &rateLimited{period: time.Minute, say: func(msg string) { fmt.Fprintf(stderr, "streamlens: span export: %s\n", msg) }}
	r.bg = newBackground(r.enc, r.spans, lw, r.counts.Add, warn.warn,
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
			r.counts.Add(counters.Counters{TelemetryUnavailable: 1})
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
	counts  counters.Set   // self-monitoring counts from outside the table
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
			// socket and the rings now.
			r.drain(time.Now().Add(maxDrain))
			r.shutdown(ev)
			return nil
		}
	}
}

// drain applies what the function sent before now: the datagrams in the
// socket (until passes, at most), then everything committed in the rings
// (bounded by their size) — a function that died without a bell, or whose
// events wait in its ring for the stream's end.
func (r *runner) drain(until time.Time) { r.drainRings(until, false, false) }

// drainRings is drain; final: nothing more will be written (SHUTDOWN);
// scan: rings that never rang are looked for (a failed invocation).
func (r *runner) drainRings(until time.Time, final, scan bool) {
	r.in.Drain(until)
	r.locked(func(*state.Table) { r.events.DrainRings(final, scan) })
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

// write flushes one batch: the EMF documents of its streams, invocations and
// counters go to stdout before next (the environment may freeze, or never
// thaw again, right after), bounded and in pieces (emfsink's Write); the
// streams' spans and per-instrument values go to the background, which works
// while the environment is thawed anyway.
func (r *runner) write(b emfsink.Batch, until time.Time) {
	// Every count of the extension's own reaches the document here: the
	// table's (in b), the rest's (counts), the socket edge's and the log's.
	b.Counters.Add(r.counts.Take())
	b.Counters.DroppedEMF += r.log.TakeDropped()
	b.Counters.KernelDrops += r.kernelDrops()
	r.locked(func(*state.Table) {
		malformed, oversized := r.events.TakeBad()
		b.Counters.Malformed += malformed
		b.Counters.Oversized += oversized
		torn, lost, refused := r.events.TakeRingCounts()
		b.Counters.RingSlotsTorn += torn
		b.Counters.RingSlotsLost += lost
		b.Counters.RingsRefused += refused
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

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// unjoin lists the errors errors.Join put together.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

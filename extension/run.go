// Package extension is the streamlens Lambda extension: it registers with the
// Extensions API, subscribes to the Telemetry API, reads stream events from the
// function, and flushes EMF metrics at every invocation boundary and at
// SHUTDOWN.
package extension

import (
	"context"
	"fmt"
	"io"
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
	api := extapi.New(cfg.RuntimeAPI)
	if err := api.Register(ctx, cfg.Name); err != nil {
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
	r := &runner{cfg: cfg, api: api, table: table, in: in, stderr: stderr, log: lw,
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
			r.telemetry = false
		} else {
			r.telemetry = true
			defer r.tl.Close(context.Background())
		}
	}
	return r.loop(ctx)
}

type runner struct {
	cfg       Config
	api       *extapi.Client
	table     *Table
	in        *ingest
	tl        *telemetryListener
	telemetry bool
	fl        *flusher
	spans     *spanner // nil when STREAMLENS_OTLP=off
	log       *logWriter
	stderr    io.Writer
}

func (r *runner) subscribe(ctx context.Context) error {
	tl, err := listenTelemetry(r.cfg.TelemetryAddr, r.table)
	if err != nil {
		return fmt.Errorf("STREAMLENS_TELEMETRY_ADDR: %w", err)
	}
	host, _, _ := splitHostPort(r.cfg.TelemetryAddr)
	if host == "" || host == "0.0.0.0" {
		host = "sandbox.localdomain"
	}
	sub := extapi.Subscription{
		SchemaVersion: "2022-12-13",
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

func (r *runner) loop(ctx context.Context) error {
	for {
		ev, err := r.api.Next(ctx)
		if err != nil {
			// The sandbox is gone or broken: flush what we have, then stop.
			r.flushAll("api-error")
			return err
		}
		// Whatever the function sent while we were frozen is in the socket now.
		r.in.drain()
		switch ev.EventType {
		case extapi.Invoke:
			r.invocation(ctx, ev)
		case extapi.Shutdown:
			r.shutdown(ev)
			return nil
		}
	}
}

// invocation waits until invocation ev is over, then flushes. It must return
// before the next /event/next: the sandbox may freeze right after that call.
func (r *runner) invocation(ctx context.Context, ev extapi.Event) {
	t := r.table
	t.mu.Lock()
	inv := t.beginInvocation(ev.RequestID, time.UnixMilli(ev.DeadlineMs), ev.Tracing.Value)
	t.mu.Unlock()

	failure := r.wait(ctx, inv)
	r.in.drain()
	t.mu.Lock()
	b := batch{streams: t.finalize(inv, failure)}
	b.invocations = t.readyInvocations(false)
	b.counters = t.takeCounters()
	t.mu.Unlock()
	r.write(b)
}

// write flushes one batch: EMF first (it is what alarms read), then the spans,
// whose export is bounded by STREAMLENS_OTLP_TIMEOUT_MS.
func (r *runner) write(b batch) {
	b.counters.DroppedEMF += r.log.takeDropped()
	if err := r.fl.write(b); err != nil {
		fmt.Fprintf(r.stderr, "streamlens: flush: %v\n", err)
	}
	// Bounded: a blocked stdout costs at most StdoutWait here; the lines stay
	// queued and are written when it moves.
	r.log.wait(r.cfg.StdoutWait)
	if r.spans == nil || len(b.streams) == 0 {
		return
	}
	if _, err := r.spans.export(b.streams); err != nil {
		r.table.mu.Lock()
		r.table.counters.SpanExportErr++
		r.table.mu.Unlock()
	}
}

// wait blocks until inv is over and returns why it failed ("" if it did not).
// The bound is the invocation's deadline (plus RuntimeDoneWait for the
// telemetry batch to arrive): a function cannot run past it.
func (r *runner) wait(ctx context.Context, inv *invocation) string {
	t := r.table
	limit := inv.deadline
	if r.telemetry {
		limit = limit.Add(r.cfg.RuntimeDoneWait)
	}
	var doneAt time.Time
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		t.mu.Lock()
		rd := inv.runtimeDone
		if rd != nil && doneAt.IsZero() {
			doneAt = now
		}
		graceOver := rd != nil && now.Sub(doneAt) >= r.cfg.EndGrace
		done := t.invocationDone(inv, r.telemetry, graceOver)
		t.mu.Unlock()
		if done {
			if rd != nil && rd.status != "success" {
				return ReasonRuntime + rd.status
			}
			return ""
		}
		if !now.Before(limit) {
			t.mu.Lock()
			if r.telemetry {
				inv.missingDone = true
				t.counters.NoRuntimeDone++
			}
			t.mu.Unlock()
			return ReasonDeadline
		}
		wake := limit
		if rd != nil {
			wake = doneAt.Add(r.cfg.EndGrace)
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
	budget := time.UnixMilli(ev.DeadlineMs).Add(-r.cfg.ShutdownMargin)
	if r.telemetry {
		// The last invocation's platform.report arrives after we finished it;
		// give it a moment, within the budget.
		waitUntil := earlier(budget, time.Now().Add(r.cfg.RuntimeDoneWait))
		r.waitReports(waitUntil)
	}
	r.in.drain()
	r.flushAll(ReasonShutdown + ev.ShutdownReason)
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

func (r *runner) flushAll(reason string) {
	t := r.table
	t.mu.Lock()
	b := batch{streams: t.finalizeAll(reason), invocations: t.readyInvocations(true), counters: t.takeCounters()}
	t.mu.Unlock()
	r.write(b)
	// Counters that the last write itself produced (a failed span export).
	t.mu.Lock()
	last := batch{counters: t.takeCounters()}
	t.mu.Unlock()
	if last.counters != (Counters{}) {
		r.write(last)
	}
}

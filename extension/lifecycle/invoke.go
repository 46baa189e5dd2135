package lifecycle

import (
	"context"
	"time"

	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/extapi"
	"github.com/streamlens/streamlens/extension/state"
)

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
	r.drain(time.Now().Add(maxDrain))

	// Everything below, flush included, ends by half the margin before the
	// deadline.
	limit := deadline.Add(-r.cfg.DeadlineMargin / 2)
	failure := r.wait(ctx, ev.RequestID, started, deadline)
	r.bg.close()
	// A failed invocation's process may have died before its ring rang
	// even once: look for its ring then.
	r.drainRings(earlier(limit, time.Now().Add(maxDrain)), false, failure.Failed())
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

// maxDrain bounds one drain of the socket: a flood must not hold the
// invocation (what is left is read by the reader goroutine).
const maxDrain = 20 * time.Millisecond

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
//   - open streams went quiet (quiet: a lost end, and no runtimeDone to say
//     the runtime finished);
//   - deadline − STREAMLENS_DEADLINE_MARGIN_MS, whatever happens.
//
// Streams still open are carried to the next boundary (or SHUTDOWN), where
// runtimeDone, a late end or the lack of both decides them.
func (r *runner) wait(ctx context.Context, requestID string, started, deadline time.Time) state.Failure {
	limit := deadline.Add(-r.cfg.DeadlineMargin)
	startBy := started.Add(r.cfg.StartWait)
	var quiet time.Duration
	r.locked(func(t *state.Table) { quiet = r.quiet(t.Telemetry(), deadline.Sub(started)) })
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
		if timeUp(p, now) || p.RuntimeStatus != "" && p.Open > 0 {
			// A rule of time, or runtimeDone with a stream still open, is
			// about to let the invocation go. The reader goroutine may lag
			// behind the socket (the extension yields the CPU to the
			// function: SCHED_IDLE, a 128 MB function's 7 % of a core), and
			// runtimeDone comes at least a telemetry buffer (25 ms) after
			// the function's last datagram: decide on what the function
			// sent, not on what was read. Drain first, then look again.
			r.drain(earlier(limit, now.Add(maxDrain)))
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

// telemetryQuiet is how long open streams may go without an event, while
// runtimeDone is expected, before the extension lets their invocation go: a
// tenth of the invocation's time, up to telemetryQuietMax. Waiting costs
// nothing while the function runs, and a stream is often silent for a while:
// a slow instrument, a model thinking, a bundle the platform paces past 6 MB.
// Let go after 5 × the start wait (100 ms), as without telemetry, such a
// stream was left open at its own boundary: the extension was back in
// event/next while the function still streamed, and the stream's document
// waited for the next thaw (minutes later, or the spin-down) instead of
// being written before the freeze. Only runtimeDone and the end both lost
// make this wait count, and then it holds the invocation a tenth of its
// time at most, never toward its deadline.
func telemetryQuiet(budget time.Duration) time.Duration {
	return min(budget/10, telemetryQuietMax)
}

// telemetryQuietMax: API Gateway cuts a stream idle for 30 s.
const telemetryQuietMax = 30 * time.Second

// quiet is how long open streams may go without an event before their
// invocation (budget: INVOKE to its deadline) is let go without
// runtimeDone: STREAMLENS_QUIET_MS, else telemetryQuiet when the Telemetry
// API is subscribed, else 5 × the start wait (no runtimeDone will come: a
// lost end must not hold the invocation long).
func (r *runner) quiet(telemetry bool, budget time.Duration) time.Duration {
	short := 5 * r.cfg.StartWait
	switch {
	case r.cfg.Quiet > 0:
		return r.cfg.Quiet
	case telemetry:
		return max(short, telemetryQuiet(budget))
	}
	return short
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

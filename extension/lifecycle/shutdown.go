package lifecycle

import (
	"time"

	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/extapi"
	"github.com/streamlens/streamlens/extension/state"
)

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
	// Final: the function is done writing (or being killed), so a ring
	// slot reserved and never committed is torn.
	r.drainRings(earlier(budget, time.Now().Add(maxDrain)), true, true)
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

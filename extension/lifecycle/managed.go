package lifecycle

import (
	"context"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/state"
)

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
			// A worker that died without a bell left its events in its
			// ring: read them before its report judges the stream.
			r.events.DrainRings(false, false)
			now := time.Now()
			b.Streams = t.FinalizeEnded(now, r.reportWait())
			b.Invocations = t.ReadyInvocations(now, false)
			b.Counters = t.TakeCounters()
		})
		if len(b.Streams) > 0 || len(b.Invocations) > 0 || b.Counters != (counters.Counters{}) || r.counts.Pending() {
			r.write(b, time.Now().Add(r.cfg.StdoutWait))
		}
	}
}

// reportWait is how long a record waits for its platform.report at least:
// the Telemetry API sends it in a batch buffered up to
// STREAMLENS_TELEMETRY_BUFFER_MS after the invocation ended, so several
// buffers' worth.
func (r *runner) reportWait() time.Duration { return 4*r.cfg.TelemetryBuffer + 100*time.Millisecond }

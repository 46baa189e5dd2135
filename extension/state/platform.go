package state

import "time"

// InitReport is platform.initReport: how the execution environment was
// initialised.
type InitReport struct {
	InitType   string // on-demand, provisioned-concurrency, snap-start, lambda-managed-instances
	DurationMs float64
}

// RuntimeDone is platform.runtimeDone: the runtime finished an invocation.
type RuntimeDone struct {
	RequestID          string
	Status             string    // success, error, failure, timeout, …
	Time               time.Time // the event's time: when the platform saw the runtime finish; zero unknown
	DurationMs         float64
	ProducedBytes      float64
	ResponseLatencyMs  float64
	ResponseDurationMs float64
	HasLatency         bool
	HasDuration        bool
}

// Report is platform.report: the invocation's billed figures, including what
// extensions cost it after the runtime finished.
type Report struct {
	RequestID        string
	DurationMs       float64
	BilledDurationMs float64
	MaxMemoryUsedMB  float64
	MemorySizeMB     float64
}

// ApplyInit records the environment's init. An invoke-phase init (the
// suppressed init after a reset) is not an init of this process and is
// ignored by the caller.
func (t *Table) ApplyInit(r InitReport) {
	t.init, t.initKnown = r, true
}

// ApplyRuntimeDone joins runtimeDone with its invocation. It reports false
// for one it cannot use (no request id, or a second one for the same
// request, which is not from the platform).
func (t *Table) ApplyRuntimeDone(r RuntimeDone, now time.Time) bool {
	if r.RequestID == "" {
		return false
	}
	inv := t.invocationFor(r.RequestID)
	if inv.runtimeDone != nil {
		return false
	}
	inv.runtimeDone, inv.doneAt = &r, now
	return true
}

// ApplyReport joins platform.report with its invocation.
func (t *Table) ApplyReport(r Report) bool {
	if r.RequestID == "" {
		return false
	}
	t.invocationFor(r.RequestID).report = &r
	return true
}

// maxTelemetryOnly bounds invocations known only from telemetry (no INVOKE
// yet): anything in the sandbox can POST to the listener, and a flood of
// made-up request ids must not grow memory.
const maxTelemetryOnly = 64

func (t *Table) invocationFor(requestID string) *invocation {
	inv := t.invocations[requestID]
	if inv == nil {
		if len(t.invocations) >= maxTelemetryOnly+8 {
			return &invocation{requestID: requestID} // recorded nowhere
		}
		inv = &invocation{requestID: requestID}
		t.invocations[requestID] = inv
		t.invOrder = append(t.invOrder, requestID)
	}
	return inv
}

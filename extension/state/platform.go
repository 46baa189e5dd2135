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
	ErrorType          string    // the platform's error type of a failed invocation
	Time               time.Time // the event's time: when the platform saw the runtime finish; zero unknown
	DurationMs         float64
	ProducedBytes      float64
	ResponseLatencyMs  float64
	ResponseDurationMs float64
	HasLatency         bool
	HasDuration        bool
	// FromReport: no runtimeDone came; this stands for it, made from the
	// invocation's platform.report (Lambda Managed Instances send none).
	// It has no ProducedBytes.
	FromReport bool
}

// ThroughputMinBytes is the response size from which its rate is worth a
// figure (Throughput): a response of a few kilobytes goes at the pace of its
// computation, which says nothing of its delivery.
const ThroughputMinBytes = 1000 * 1000

// Throughput is the rate at which the platform took the response in, in
// bytes per second: ProducedBytes over ResponseDuration, the runtime's time
// to send it, which past 6 MB Lambda paces at 2 MiB/s. It is the caller's
// rate, not the function's: the function's writes return as soon as
// buffers take them, megabytes ahead of the platform. ok is false for a
// response under ThroughputMinBytes or without both figures.
func (rd *RuntimeDone) Throughput() (bytesPerSecond float64, ok bool) {
	if rd.FromReport || !rd.HasDuration || rd.ResponseDurationMs <= 0 || rd.ProducedBytes < ThroughputMinBytes {
		return 0, false
	}
	return rd.ProducedBytes / (rd.ResponseDurationMs / 1000), true
}

// Report is platform.report: the invocation's billed figures, including what
// extensions cost it after the runtime finished.
type Report struct {
	RequestID        string
	Time             time.Time // the event's time; zero unknown
	Status           string    // "" when the report does not say
	ErrorType        string
	DurationMs       float64
	BilledDurationMs float64
	MaxMemoryUsedMB  float64
	MemorySizeMB     float64
	// The response spans, which Lambda Managed Instances put in the report
	// (they send no runtimeDone).
	ResponseLatencyMs  float64
	ResponseDurationMs float64
	HasLatency         bool
	HasDuration        bool
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

// ApplyReport joins platform.report, which arrived at now, with its
// invocation. Where no runtimeDone came (Lambda Managed Instances send none;
// elsewhere it was lost), the report's status and spans stand for it: an
// invocation is judged by what the platform said, whichever event said it.
func (t *Table) ApplyReport(r Report, now time.Time) bool {
	if r.RequestID == "" {
		return false
	}
	inv := t.invocationFor(r.RequestID)
	if inv.report != nil {
		return false
	}
	inv.report = &r
	if inv.runtimeDone == nil && r.Status != "" {
		inv.runtimeDone = &RuntimeDone{RequestID: r.RequestID, Status: r.Status, ErrorType: r.ErrorType, Time: r.Time,
			DurationMs: r.DurationMs, ResponseLatencyMs: r.ResponseLatencyMs, ResponseDurationMs: r.ResponseDurationMs,
			HasLatency: r.HasLatency, HasDuration: r.HasDuration, FromReport: true}
		inv.doneAt = now
	}
	return true
}

// maxTelemetryOnly bounds invocations known only from telemetry (no INVOKE
// yet): anything in the sandbox can POST to the listener, and a flood of
// made-up request ids must not grow memory. On Lambda Managed Instances
// every invocation is known only from telemetry, many at once: their bound
// is maxManagedInvocations (about 200 bytes each).
const (
	maxTelemetryOnly      = 64
	maxManagedInvocations = 8192
)

func (t *Table) invocationFor(requestID string) *invocation {
	inv := t.invocations[requestID]
	if inv == nil {
		limit := maxTelemetryOnly + 8
		if t.managed {
			limit = maxManagedInvocations
		}
		if len(t.invocations) >= limit {
			t.counters.InvocationsDropped++
			return &invocation{requestID: requestID} // recorded nowhere
		}
		inv = &invocation{requestID: requestID}
		t.invocations[requestID] = inv
		t.invOrder = append(t.invOrder, requestID)
	}
	return inv
}

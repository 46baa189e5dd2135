// Package telemetry receives Telemetry API batches: a bounded HTTP listener and
// a total decoder that turns the platform events streamlens uses into the
// state machine's types.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/streamlens/streamlens/extension/state"
)

// maxTelemetryBatch bounds one POST from the Telemetry API. The subscription asks
// for batches of at most 256 KiB; anything much larger is not from the platform.
const maxTelemetryBatch = 1 << 20

// telemetryEvent is one item of a Telemetry API batch (schema 2022-12-13).
type telemetryEvent struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

type initReportRecord struct {
	InitializationType string `json:"initializationType"`
	Phase              string `json:"phase"`
	Status             string `json:"status"`
	Metrics            struct {
		DurationMs float64 `json:"durationMs"`
	} `json:"metrics"`
}

type runtimeDoneRecord struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Metrics   struct {
		DurationMs    float64 `json:"durationMs"`
		ProducedBytes float64 `json:"producedBytes"`
	} `json:"metrics"`
	Spans responseSpans `json:"spans"`
}

// responseSpans are the response's spans: in runtimeDone, and on Lambda
// Managed Instances (which send no runtimeDone) in platform.report.
type responseSpans []struct {
	Name       string  `json:"name"`
	DurationMs float64 `json:"durationMs"`
}

// read returns responseLatency and responseDuration, each with whether it
// was there.
func (sp responseSpans) read() (latency, duration float64, hasLatency, hasDuration bool) {
	for _, s := range sp {
		switch s.Name {
		case "responseLatency":
			latency, hasLatency = s.DurationMs, true
		case "responseDuration":
			duration, hasDuration = s.DurationMs, true
		}
	}
	return
}

type reportRecord struct {
	RequestID string        `json:"requestId"`
	Status    string        `json:"status"`
	ErrorType string        `json:"errorType"`
	Spans     responseSpans `json:"spans"`
	Metrics   struct {
		DurationMs       float64 `json:"durationMs"`
		BilledDurationMs float64 `json:"billedDurationMs"`
		MemorySizeMB     float64 `json:"memorySizeMB"`
		MaxMemoryUsedMB  float64 `json:"maxMemoryUsedMB"`
	} `json:"metrics"`
}

// decodeTelemetryBatch splits a batch into its items.
func decodeTelemetryBatch(b []byte) ([]telemetryEvent, error) {
	var evs []telemetryEvent
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("telemetry batch: %w", err)
	}
	return evs, nil
}

// Event is one platform event streamlens uses; exactly one field is set.
type Event struct {
	Init        *state.InitReport
	RuntimeDone *state.RuntimeDone
	Report      *state.Report
}

// Decode decodes one POSTed batch. It is total: a batch that is not a JSON
// array is an error; an item it cannot use is counted in bad and skipped.
// Event types it does not use are skipped without counting.
func Decode(b []byte) (evs []Event, bad int, err error) {
	raw, err := decodeTelemetryBatch(b)
	if err != nil {
		return nil, 0, err
	}
	for _, ev := range raw {
		switch ev.Type {
		case "platform.initReport":
			var r initReportRecord
			if json.Unmarshal(ev.Record, &r) != nil {
				bad++
				continue
			}
			if r.Phase != "" && r.Phase != "init" && r.Phase != "invoke" {
				continue
			}
			// phase "invoke" is the suppressed init after a reset: this
			// process's own init, inside the invocation that needed it (a
			// cold start its caller waited for), reported like the first.
			evs = append(evs, Event{Init: &state.InitReport{InitType: r.InitializationType, DurationMs: r.Metrics.DurationMs}})
		case "platform.runtimeDone":
			var r runtimeDoneRecord
			if json.Unmarshal(ev.Record, &r) != nil || r.RequestID == "" {
				bad++
				continue
			}
			d := &state.RuntimeDone{RequestID: r.RequestID, Status: r.Status, ErrorType: r.ErrorType,
				DurationMs: r.Metrics.DurationMs, ProducedBytes: r.Metrics.ProducedBytes}
			// An unreadable time is no reason to drop the event: the
			// invocation's start plus its duration stands in.
			d.Time, _ = time.Parse(time.RFC3339Nano, ev.Time)
			d.ResponseLatencyMs, d.ResponseDurationMs, d.HasLatency, d.HasDuration = r.Spans.read()
			evs = append(evs, Event{RuntimeDone: d})
		case "platform.report":
			var r reportRecord
			if json.Unmarshal(ev.Record, &r) != nil || r.RequestID == "" {
				bad++
				continue
			}
			rp := &state.Report{RequestID: r.RequestID, Status: r.Status, ErrorType: r.ErrorType, DurationMs: r.Metrics.DurationMs,
				BilledDurationMs: r.Metrics.BilledDurationMs, MaxMemoryUsedMB: r.Metrics.MaxMemoryUsedMB, MemorySizeMB: r.Metrics.MemorySizeMB}
			rp.Time, _ = time.Parse(time.RFC3339Nano, ev.Time)
			rp.ResponseLatencyMs, rp.ResponseDurationMs, rp.HasLatency, rp.HasDuration = r.Spans.read()
			evs = append(evs, Event{Report: rp})
		}
	}
	return evs, bad, nil
}

// Apply joins decoded events with the table; it returns how many it could
// not use (a second runtimeDone for one request is not from the platform).
func Apply(t *state.Table, evs []Event, now time.Time) (bad int) {
	for _, ev := range evs {
		ok := true
		switch {
		case ev.Init != nil:
			t.ApplyInit(*ev.Init)
		case ev.RuntimeDone != nil:
			ok = t.ApplyRuntimeDone(*ev.RuntimeDone, now)
		case ev.Report != nil:
			ok = t.ApplyReport(*ev.Report, now)
		}
		if !ok {
			bad++
		}
	}
	return bad
}

// maxTelemetryConns bounds the listener's open connections; the platform
// uses one or two.
const maxTelemetryConns = 32

// Listener receives Telemetry API batches over HTTP and hands each decoded
// batch to its handler, with the count of items (or whole batches) it could
// not read.
type Listener struct {
	ln     net.Listener
	conns  *evictingListener
	srv    *http.Server
	handle func(evs []Event, bad int)
}

// Listen binds addr and serves batches to handle, which may be called from
// several goroutines at once.
func Listen(addr string, handle func(evs []Event, bad int)) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry listener on %s: %w", addr, err)
	}
	// Anything in the sandbox can connect: cap the connections and bound how
	// long each may hold one, so slow or idle clients cannot exhaust the fds,
	// and past the cap close the oldest that never delivered a request, so
	// they cannot hold the platform's POST back either (evictingListener).
	el := newEvictingListener(ln, maxTelemetryConns)
	l := &Listener{ln: el, conns: el, handle: handle}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, ConnContext: withConn}
	go func() { _ = l.srv.Serve(el) }()
	return l, nil
}

// Port is the port the listener is bound to.
func (l *Listener) Port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// Evicted is how many connections were closed to make room for a new one.
func (l *Listener) Evicted() int64 { return l.conns.evicted.Load() }

func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer handling(r.Context())()
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTelemetryBatch))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			l.handle(nil, 1)
			http.Error(w, "batch too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	evs, bad, err := Decode(b)
	if err != nil {
		bad = 1
	}
	l.handle(evs, bad)
	// 200 even for a batch it could not read: the platform would only resend
	// the same bytes.
	w.WriteHeader(http.StatusOK)
}

// Close stops the listener, waiting for batches in progress until ctx ends.
func (l *Listener) Close(ctx context.Context) error {
	return l.srv.Shutdown(ctx)
}

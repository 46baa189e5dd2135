package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
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
	Metrics   struct {
		DurationMs    float64 `json:"durationMs"`
		ProducedBytes float64 `json:"producedBytes"`
	} `json:"metrics"`
	Spans []struct {
		Name       string  `json:"name"`
		DurationMs float64 `json:"durationMs"`
	} `json:"spans"`
}

type reportRecord struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
	Metrics   struct {
		DurationMs       float64 `json:"durationMs"`
		BilledDurationMs float64 `json:"billedDurationMs"`
		MemorySizeMB     float64 `json:"memorySizeMB"`
		MaxMemoryUsedMB  float64 `json:"maxMemoryUsedMB"`
	} `json:"metrics"`
}

// decodeTelemetryBatch decodes one POSTed batch. It is total: a batch that is
// not a JSON array is an error; an item it cannot use is counted and skipped.
func decodeTelemetryBatch(b []byte) ([]telemetryEvent, error) {
	var evs []telemetryEvent
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("telemetry batch: %w", err)
	}
	return evs, nil
}

// applyTelemetry joins one telemetry event with the state; t.mu must be held.
// It returns false for an item it could not use.
func (t *Table) applyTelemetry(ev telemetryEvent) bool {
	switch ev.Type {
	case "platform.initReport":
		var r initReportRecord
		if json.Unmarshal(ev.Record, &r) != nil {
			return false
		}
		if r.Phase != "" && r.Phase != "init" {
			return true // an invoke-phase re-init report (after a reset) is not an init of this process
		}
		t.init = initInfo{initType: r.InitializationType, durationMs: r.Metrics.DurationMs, known: true}
	case "platform.runtimeDone":
		var r runtimeDoneRecord
		if json.Unmarshal(ev.Record, &r) != nil || r.RequestID == "" {
			return false
		}
		d := &runtimeDone{status: r.Status, durationMs: r.Metrics.DurationMs, producedBytes: r.Metrics.ProducedBytes}
		for _, sp := range r.Spans {
			switch sp.Name {
			case "responseLatency":
				d.responseLatencyMs, d.hasLatency = sp.DurationMs, true
			case "responseDuration":
				d.responseDurationMs, d.hasDuration = sp.DurationMs, true
			}
		}
		inv := t.invocationFor(r.RequestID)
		if inv.runtimeDone != nil {
			return false // a second runtimeDone for one request is not from the platform
		}
		inv.runtimeDone, inv.doneAt = d, t.now()
	case "platform.report":
		var r reportRecord
		if json.Unmarshal(ev.Record, &r) != nil || r.RequestID == "" {
			return false
		}
		t.invocationFor(r.RequestID).report = &report{durationMs: r.Metrics.DurationMs, billedDurationMs: r.Metrics.BilledDurationMs,
			maxMemoryUsedMB: r.Metrics.MaxMemoryUsedMB, memorySizeMB: r.Metrics.MemorySizeMB}
	}
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

// maxTelemetryConns bounds the listener's open connections; the platform
// uses one or two.
const maxTelemetryConns = 32

// telemetryListener receives Telemetry API batches over HTTP.
type telemetryListener struct {
	ln    net.Listener
	srv   *http.Server
	table *Table
}

func listenTelemetry(addr string, t *Table) (*telemetryListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry listener on %s: %w", addr, err)
	}
	// Anything in the sandbox can connect: cap the connections and bound how
	// long each may hold one, so slow or idle clients cannot exhaust the fds.
	ln = netutil.LimitListener(ln, maxTelemetryConns)
	l := &telemetryListener{ln: ln, table: t}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// Port is the port the listener is bound to.
func (l *telemetryListener) Port() int { return l.ln.Addr().(*net.TCPAddr).Port }

func (l *telemetryListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTelemetryBatch))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			l.count(1)
			http.Error(w, "batch too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	evs, err := decodeTelemetryBatch(b)
	if err != nil {
		l.count(1)
		// 200 anyway: the platform would only resend the same bytes.
		w.WriteHeader(http.StatusOK)
		return
	}
	t := l.table
	t.mu.Lock()
	for _, ev := range evs {
		if !t.applyTelemetry(ev) {
			t.counters.BadTelemetry++
		}
	}
	t.mu.Unlock()
	t.notify()
	w.WriteHeader(http.StatusOK)
}

func (l *telemetryListener) count(n int64) {
	l.table.mu.Lock()
	l.table.counters.BadTelemetry += n
	l.table.mu.Unlock()
}

func (l *telemetryListener) Close(ctx context.Context) error {
	return l.srv.Shutdown(ctx)
}

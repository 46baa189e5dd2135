// Package emfsink writes finished streams, invocations and counters as
// CloudWatch Embedded Metric Format lines.
package emfsink

import (
	"math"
	"sort"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/extension/state"
	m "github.com/streamlens/streamlens/metrics"
)

// Config is what the documents need to know of the extension's
// configuration.
type Config struct {
	Namespace         string
	FunctionName      string
	TTFBThreshold     time.Duration
	InstrumentMetrics bool // also per-instrument documents (Instrument dimension)
}

// Batch is everything one flush writes.
type Batch struct {
	Streams     []state.Result
	Invocations []state.InvocationResult
	Counters    state.Counters
}

// Encoder turns batches into EMF lines.
type Encoder struct {
	cfg Config
}

// New returns an encoder for cfg.
func New(cfg Config) *Encoder { return &Encoder{cfg: cfg} }

// Encode builds the EMF lines of b at now. Documents that break the spec are
// skipped and reported; they never take the other documents down with them.
// Each flush gets a new buffer: it is handed to the log writer, not reused.
func (f *Encoder) Encode(b Batch, now time.Time) ([]byte, []error) {
	var buf []byte
	var errs []error
	add := func(d *emf.Document) {
		var err error
		if buf, err = emf.Append(buf, d); err != nil {
			errs = append(errs, err)
		}
	}
	fn := emf.Property{Key: m.DimFunctionName, Value: f.cfg.FunctionName}
	dims := [][]string{{m.DimFunctionName}}

	type instVals struct{ lat, intv []float64 }
	perInst := map[string]*instVals{}
	for _, r := range b.Streams {
		d := &emf.Document{Namespace: f.cfg.Namespace, Timestamp: f.clamp(r.Time, now), Dimensions: dims}
		d.Properties = append(d.Properties, fn,
			emf.Property{Key: m.PropQuoteID, Value: r.QuoteID},
			emf.Property{Key: m.PropRequestID, Value: r.RequestID},
			emf.Property{Key: m.PropStatus, Value: r.Status})
		for _, p := range []struct{ k, v string }{
			{m.PropBundleID, r.BundleID}, {m.PropClientID, r.ClientID}, {m.PropTraceParent, r.TraceParent},
			{m.PropTruncateReason, r.Reason}, {"InvocationStatus", r.InvocationStatus},
		} {
			if p.v != "" {
				d.Properties = append(d.Properties, emf.Property{Key: p.k, Value: p.v})
			}
		}
		if r.HasTTFB {
			breach := 0.0
			if r.TTFBMs > float64(f.cfg.TTFBThreshold)/float64(time.Millisecond) {
				breach = 1
			}
			d.Metrics = append(d.Metrics,
				emf.Metric{Name: m.TimeToFirstByte, Unit: emf.Milliseconds, Values: []float64{r.TTFBMs}},
				emf.Metric{Name: m.TTFBBudgetBreach, Unit: emf.Count, Values: []float64{breach}})
		}
		var lat, intv []float64
		for _, c := range r.Chunks {
			if c.LatencyMs >= 0 {
				lat = append(lat, Ms(c.LatencyMs))
			}
			if c.IntervalMs >= 0 {
				intv = append(intv, Ms(c.IntervalMs))
			}
			if f.cfg.InstrumentMetrics && c.Inst != "" {
				iv := perInst[c.Inst]
				if iv == nil {
					iv = &instVals{}
					perInst[c.Inst] = iv
				}
				if c.LatencyMs >= 0 {
					iv.lat = append(iv.lat, Ms(c.LatencyMs))
				}
				if c.IntervalMs >= 0 {
					iv.intv = append(iv.intv, Ms(c.IntervalMs))
				}
			}
		}
		d.Metrics = append(d.Metrics,
			emf.Metric{Name: m.ChunkLatency, Unit: emf.Milliseconds, Values: lat},
			emf.Metric{Name: m.ChunkInterval, Unit: emf.Milliseconds, Values: intv},
			emf.Metric{Name: m.ChunksDelivered, Unit: emf.Count, Values: []float64{float64(r.Delivered)}},
			emf.Metric{Name: m.StreamTruncated, Unit: emf.Count, Values: []float64{boolf(r.Truncated)}},
			emf.Metric{Name: m.StreamBytes, Unit: emf.Bytes, Values: []float64{float64(r.Bytes)}},
			emf.Metric{Name: m.DroppedEvents, Unit: emf.Count, Values: []float64{float64(r.Dropped)}})
		if r.Expected >= 0 {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ChunksExpected, Unit: emf.Count, Values: []float64{float64(r.Expected)}})
		}
		if r.Integrity >= 0 {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.IntegrityMismatch, Unit: emf.Count, Values: []float64{float64(r.Integrity)}})
		}
		add(d)
	}

	// Per-instrument documents: one per instrument per flush, with every value
	// of every stream in this flush, because an EMF document can carry only
	// one value of the Instrument dimension.
	insts := make([]string, 0, len(perInst))
	for k := range perInst {
		insts = append(insts, k)
	}
	sort.Strings(insts)
	for _, inst := range insts {
		iv := perInst[inst]
		add(&emf.Document{Namespace: f.cfg.Namespace, Timestamp: now, Dimensions: [][]string{{m.DimFunctionName, m.DimInstrument}},
			Properties: []emf.Property{fn, {Key: m.DimInstrument, Value: inst}},
			Metrics: []emf.Metric{
				{Name: m.ChunkLatency, Unit: emf.Milliseconds, Values: iv.lat},
				{Name: m.ChunkInterval, Unit: emf.Milliseconds, Values: iv.intv},
			}})
	}

	for _, inv := range b.Invocations {
		d := &emf.Document{Namespace: f.cfg.Namespace, Timestamp: f.clamp(inv.Time, now), Dimensions: dims,
			Properties: []emf.Property{fn, {Key: m.PropRequestID, Value: inv.RequestID}}}
		if inv.InitKnown && inv.Init.InitType != "" {
			// InitType (on-demand, provisioned-concurrency, snap-start) is also a
			// dimension here: three values, and the only way to alarm on an
			// on-demand init where provisioned concurrency should serve.
			d.Dimensions = [][]string{{m.DimFunctionName}, {m.DimFunctionName, m.DimInitType}}
			d.Properties = append(d.Properties, emf.Property{Key: m.DimInitType, Value: inv.Init.InitType})
		}
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ColdStart, Unit: emf.Count, Values: []float64{boolf(inv.ColdStart)}})
		if inv.ColdStart && inv.InitKnown {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.InitDuration, Unit: emf.Milliseconds, Values: []float64{inv.Init.DurationMs}})
		}
		if rd := inv.Done; rd != nil {
			d.Properties = append(d.Properties, emf.Property{Key: "InvocationStatus", Value: rd.Status})
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ProducedBytes, Unit: emf.Bytes, Values: []float64{rd.ProducedBytes}})
			if rd.HasLatency {
				d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseLatency, Unit: emf.Milliseconds, Values: []float64{rd.ResponseLatencyMs}})
			}
			if rd.HasDuration {
				d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseDuration, Unit: emf.Milliseconds, Values: []float64{rd.ResponseDurationMs}})
			}
		}
		if inv.MissingDone {
			d.Properties = append(d.Properties, emf.Property{Key: "RuntimeDoneMissing", Value: true})
		}
		if rd, rp := inv.Done, inv.Report; rd != nil && rp != nil {
			// What this extension (and any other) cost the invocation after
			// the runtime finished: billed to the user, so measured.
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ExtensionOverhead, Unit: emf.Milliseconds,
				Values: []float64{max(0, math.Round((rp.DurationMs-rd.DurationMs)*1000)/1000)}})
		}
		if rp := inv.Report; rp != nil {
			d.Properties = append(d.Properties,
				emf.Property{Key: "DurationMs", Value: rp.DurationMs},
				emf.Property{Key: "BilledDurationMs", Value: rp.BilledDurationMs},
				emf.Property{Key: "MaxMemoryUsedMB", Value: rp.MaxMemoryUsedMB},
				emf.Property{Key: "MemorySizeMB", Value: rp.MemorySizeMB})
		}
		add(d)
	}

	c := b.Counters
	c.Events = 0 // not a problem worth a document of its own
	if c != (state.Counters{}) {
		c = b.Counters
		add(&emf.Document{Namespace: f.cfg.Namespace, Timestamp: now, Dimensions: dims,
			Properties: []emf.Property{fn,
				{Key: m.PropLateEvents, Value: c.LateEvents}, {Key: "DuplicateEnds", Value: c.DuplicateEnd},
				{Key: "EvictedStreams", Value: c.Evicted}, {Key: "OversizedDatagrams", Value: c.Oversized},
				{Key: "BadTelemetry", Value: c.BadTelemetry}, {Key: "RuntimeDoneMissingCount", Value: c.NoRuntimeDone},
				{Key: "EventsReceived", Value: c.Events}, {Key: "SpanExportFailures", Value: c.SpanExportErr},
				{Key: "DroppedEMFLines", Value: c.DroppedEMF}, {Key: "DuplicateEvents", Value: c.DuplicateEvents},
				{Key: "MissingStart", Value: c.MissingStart}, {Key: "ImplausibleEvents", Value: c.Implausible}},
			Metrics: []emf.Metric{{Name: m.MalformedEvents, Unit: emf.Count, Values: []float64{float64(c.Malformed)}},
				{Name: m.TelemetryUnavailable, Unit: emf.Count, Values: []float64{float64(c.TelemetryUnavailable)}}}})
	}
	return buf, errs
}

// clamp keeps a client timestamp CloudWatch will accept: EMF drops metrics more
// than two weeks old or two hours ahead, so a skewed or forged clock must not
// cost the metrics.
func (f *Encoder) clamp(t, now time.Time) time.Time {
	if t.Before(now.Add(-14*24*time.Hour+time.Hour)) || t.After(now.Add(time.Hour)) {
		return now
	}
	return t
}

// Ms widens a kept chunk time for output, rounded to the microsecond so
// float32 noise (1.4114969968795776) does not reach the log.
func Ms(v float32) float64 { return math.Round(float64(v)*1000) / 1000 }

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

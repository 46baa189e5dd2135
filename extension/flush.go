package extension

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/streamlens/streamlens/emf"
	m "github.com/streamlens/streamlens/metrics"
)

// flusher turns finished streams and invocations into EMF lines.
type flusher struct {
	cfg Config
	out *logWriter
	now func() time.Time
}

// batch is everything one flush writes.
type batch struct {
	streams     []Result
	invocations []InvocationResult
	counters    Counters
}

// encode builds the EMF lines of b. Documents that break the spec are skipped
// and reported; they never take the other documents down with them.
// Each flush gets a new buffer: it is handed to the log writer, not reused.
func (f *flusher) encode(b batch) ([]byte, []error) {
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
	now := f.now()

	type instVals struct{ lat, intv []float64 }
	perInst := map[string]*instVals{}
	for _, r := range b.streams {
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
			if c.latencyMs >= 0 {
				lat = append(lat, ms64(c.latencyMs))
			}
			if c.intervalMs >= 0 {
				intv = append(intv, ms64(c.intervalMs))
			}
			if f.cfg.InstrumentMetrics && c.inst != "" {
				iv := perInst[c.inst]
				if iv == nil {
					iv = &instVals{}
					perInst[c.inst] = iv
				}
				if c.latencyMs >= 0 {
					iv.lat = append(iv.lat, ms64(c.latencyMs))
				}
				if c.intervalMs >= 0 {
					iv.intv = append(iv.intv, ms64(c.intervalMs))
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

	for _, inv := range b.invocations {
		d := &emf.Document{Namespace: f.cfg.Namespace, Timestamp: f.clamp(inv.Time, now), Dimensions: dims,
			Properties: []emf.Property{fn, {Key: m.PropRequestID, Value: inv.RequestID}}}
		if inv.Init.known && inv.Init.initType != "" {
			// InitType (on-demand, provisioned-concurrency, snap-start) is also a
			// dimension here: three values, and the only way to alarm on an
			// on-demand init where provisioned concurrency should serve.
			d.Dimensions = [][]string{{m.DimFunctionName}, {m.DimFunctionName, m.DimInitType}}
			d.Properties = append(d.Properties, emf.Property{Key: m.DimInitType, Value: inv.Init.initType})
		}
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ColdStart, Unit: emf.Count, Values: []float64{boolf(inv.ColdStart)}})
		if inv.ColdStart && inv.Init.known {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.InitDuration, Unit: emf.Milliseconds, Values: []float64{inv.Init.durationMs}})
		}
		if rd := inv.Done; rd != nil {
			d.Properties = append(d.Properties, emf.Property{Key: "InvocationStatus", Value: rd.status})
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ProducedBytes, Unit: emf.Bytes, Values: []float64{rd.producedBytes}})
			if rd.hasLatency {
				d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseLatency, Unit: emf.Milliseconds, Values: []float64{rd.responseLatencyMs}})
			}
			if rd.hasDuration {
				d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseDuration, Unit: emf.Milliseconds, Values: []float64{rd.responseDurationMs}})
			}
		}
		if inv.MissingDone {
			d.Properties = append(d.Properties, emf.Property{Key: "RuntimeDoneMissing", Value: true})
		}
		if rd, rp := inv.Done, inv.Report; rd != nil && rp != nil {
			// What this extension (and any other) cost the invocation after
			// the runtime finished: billed to the user, so measured.
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ExtensionOverhead, Unit: emf.Milliseconds,
				Values: []float64{max(0, math.Round((rp.durationMs-rd.durationMs)*1000)/1000)}})
		}
		if rp := inv.Report; rp != nil {
			d.Properties = append(d.Properties,
				emf.Property{Key: "DurationMs", Value: rp.durationMs},
				emf.Property{Key: "BilledDurationMs", Value: rp.billedDurationMs},
				emf.Property{Key: "MaxMemoryUsedMB", Value: rp.maxMemoryUsedMB},
				emf.Property{Key: "MemorySizeMB", Value: rp.memorySizeMB})
		}
		add(d)
	}

	c := b.counters
	c.Events = 0 // not a problem worth a document of its own
	if c != (Counters{}) {
		c = b.counters
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

// write encodes b and hands it to stdout in one piece, so the lines of one
// flush are not interleaved with the function's own output.
func (f *flusher) write(b batch) error {
	out, errs := f.encode(b)
	if len(out) > 0 {
		f.out.give(out)
	}
	if len(errs) > 0 {
		return fmt.Errorf("emf: %d documents skipped, first: %w", len(errs), errs[0])
	}
	return nil
}

// clamp keeps a client timestamp CloudWatch will accept: EMF drops metrics more
// than two weeks old or two hours ahead, so a skewed or forged clock must not
// cost the metrics.
func (f *flusher) clamp(t, now time.Time) time.Time {
	if t.Before(now.Add(-14*24*time.Hour+time.Hour)) || t.After(now.Add(time.Hour)) {
		return now
	}
	return t
}

// ms64 widens a kept chunk time for output, rounded to the microsecond so
// float32 noise (1.4114969968795776) does not reach the log.
func ms64(v float32) float64 { return math.Round(float64(v)*1000) / 1000 }

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

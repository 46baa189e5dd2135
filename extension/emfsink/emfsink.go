// Package emfsink writes finished streams, invocations and counters as
// CloudWatch Embedded Metric Format lines.
package emfsink

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/state"
	m "github.com/streamlens/streamlens/metrics"
)

// Config is what the documents need to know of the extension's
// configuration.
type Config struct {
	Namespace     string
	FunctionName  string
	TTFBThreshold time.Duration
	// InstrumentMetrics: the per-chunk values go to the per-instrument
	// documents, which publish them with and without the Instrument
	// dimension, and not into each stream's document as well (half of a
	// 50-chunk stream's EMF bytes).
	InstrumentMetrics bool
	// IdleLimit is the idle time after which a proxy in front of the
	// function cuts a stream (STREAMLENS_IDLE_LIMIT_MS); 0: not judged.
	IdleLimit time.Duration
	// Version, if set, is the function version (AWS_LAMBDA_FUNCTION_VERSION)
	// the stream metrics are also published under (STREAMLENS_VERSION_DIMENSION):
	// releases side by side, at a custom metric per stream metric and version.
	Version string
}

// Batch is everything one flush writes.
type Batch struct {
	Streams     []state.Result
	Invocations []state.InvocationResult
	Counters    counters.Counters
	Final       bool // the last write (SHUTDOWN): nothing may be held back
}

// Encoder turns batches into EMF lines.
type Encoder struct {
	cfg Config

	mu           sync.Mutex
	carry        counters.Counters // routine counts not written yet
	lastCounters time.Time         // when the counters document was last written
	platform     platformFigures   // of invocations whose outcome went with their stream
}

// New returns an encoder for cfg.
func New(cfg Config) *Encoder { return &Encoder{cfg: cfg} }

// Write encodes b at now — its streams, invocations and counters — and hands
// the lines to give in pieces of about pieceBytes, never as one buffer the
// size of the flush. It is bounded: every stream's own document is written
// (their number is capped by the state's stream caps), but past detailBytes
// of documents, or past until, streams are written without their per-chunk
// values, which are shed first and counted (ShedChunkDetail). Documents that
// break the spec are skipped and returned; they never take the other
// documents down with them.
func (e *Encoder) Write(b Batch, now, until time.Time, give func([]byte)) []error {
	var out []byte
	var errs []error
	written := 0
	keep := func(dst []byte, err error) {
		out = dst
		var vre *emf.ValueRangeError
		switch {
		case errors.As(err, &vre):
			// Written without the values CloudWatch would refuse: counted,
			// in this write's own counters document.
			b.Counters.ValuesRefused += int64(vre.Dropped)
		case err != nil:
			errs = append(errs, err)
		}
		if len(out) >= pieceBytes {
			written += len(out)
			give(out)
			out = nil
		}
	}
	for i := range b.Streams {
		detail := !e.cfg.InstrumentMetrics && written+len(out) < detailBytes && (i%16 != 15 || time.Now().Before(until))
		if !detail && !e.cfg.InstrumentMetrics && len(b.Streams[i].Chunks) > 0 {
			b.Counters.ShedDetail++
		}
		keep(e.AppendStream(out, &b.Streams[i], now, detail))
	}
	for i := range b.Invocations {
		keep(e.AppendInvocation(out, &b.Invocations[i], now))
	}
	keep(e.AppendPlatform(out, now, b.Final))
	keep(e.AppendCounters(out, b.Counters, now, b.Final))
	if len(out) > 0 {
		give(out)
	}
	return errs
}

// A write carries per-chunk values for at most detailBytes of documents, and
// hands over pieces of about pieceBytes.
const (
	detailBytes = 256 << 10
	pieceBytes  = 64 << 10
)

// AppendStream appends the document of one finished stream. detail adds its
// per-chunk latencies and intervals (one value per chunk), which are what a
// flush sheds first when it is over its budget; Write asks for them only
// when the per-instrument documents do not carry them.
func (e *Encoder) AppendStream(dst []byte, r *state.Result, now time.Time, detail bool) ([]byte, error) {
	fn := emf.Property{Key: m.DimFunctionName, Value: e.cfg.FunctionName}
	end := r.EndTime
	if !r.InvocationEnd.IsZero() {
		end = r.InvocationEnd
	}
	d := &emf.Document{Namespace: e.cfg.Namespace, Timestamp: stamp(end, now), Dimensions: [][]string{{m.DimFunctionName}}}
	if e.cfg.Version != "" {
		d.Dimensions = [][]string{{m.DimFunctionName}, {m.DimFunctionName, m.DimVersion}}
	}
	d.Properties = append(make([]emf.Property, 0, 10), fn,
		emf.Property{Key: m.PropQuoteID, Value: r.QuoteID},
		emf.Property{Key: m.PropRequestID, Value: r.RequestID},
		emf.Property{Key: m.PropStatus, Value: r.Status})
	if e.cfg.Version != "" {
		d.Properties = append(d.Properties, emf.Property{Key: m.DimVersion, Value: e.cfg.Version})
	}
	for _, p := range [...]struct{ k, v string }{
		{m.PropBundleID, r.BundleID}, {m.PropClientID, r.ClientID}, {m.PropTraceParent, r.TraceParent},
		{m.PropTruncateReason, r.Verdict.Reason()}, {m.PropInvocationStatus, r.InvocationStatus}, {m.PropErrorType, r.ErrorType},
	} {
		if p.v != "" {
			d.Properties = append(d.Properties, emf.Property{Key: p.k, Value: p.v})
		}
	}
	d.Metrics = make([]emf.Metric, 0, 10)
	if r.HasTTFB {
		breach := 0.0
		if r.TTFBMs > float64(e.cfg.TTFBThreshold)/float64(time.Millisecond) {
			breach = 1
		}
		d.Metrics = append(d.Metrics,
			emf.Metric{Name: m.TimeToFirstByte, Unit: emf.Milliseconds, Values: []float64{math.Round(r.TTFBMs*1000) / 1000}},
			emf.Metric{Name: m.TTFBBudgetBreach, Unit: emf.Count, Values: []float64{breach}})
	} else if r.Verdict.Class == state.BeforeFirstByte {
		// The service failed before the caller got a first byte: the worst
		// TTFB there is, and a stream the TTFB SLO must count (its total is
		// TTFBBudgetBreach's sample count). No TimeToFirstByte value: there
		// is no time to give.
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.TTFBBudgetBreach, Unit: emf.Count, Values: []float64{1}})
	}
	if detail && len(r.Chunks) > 0 {
		vals := make([]float64, 0, 2*len(r.Chunks))
		for _, c := range r.Chunks {
			if c.LatencyMs >= 0 {
				vals = append(vals, state.Ms(c.LatencyMs))
			}
		}
		nl := len(vals)
		for _, c := range r.Chunks {
			if c.IntervalMs >= 0 {
				vals = append(vals, state.Ms(c.IntervalMs))
			}
		}
		d.Metrics = append(d.Metrics,
			emf.Metric{Name: m.ChunkLatency, Unit: emf.Milliseconds, Values: vals[:nl:nl]},
			emf.Metric{Name: m.ChunkInterval, Unit: emf.Milliseconds, Values: vals[nl:]})
	}
	d.Metrics = append(d.Metrics,
		emf.Metric{Name: m.ChunksDelivered, Unit: emf.Count, Values: []float64{float64(r.Delivered)}},
		emf.Metric{Name: m.StreamTruncated, Unit: emf.Count, Values: []float64{boolf(r.Verdict.Truncated())}},
		emf.Metric{Name: m.StreamBytes, Unit: emf.Bytes, Values: []float64{float64(r.Bytes)}},
		emf.Metric{Name: m.DroppedEvents, Unit: emf.Count, Values: []float64{float64(r.Dropped)}})
	// Truncations that are not the service's, told apart so that the
	// completeness SLO and the truncation alarm can take them out; written
	// only when they apply (the Sum is the same, the bytes are not).
	switch r.Verdict.Class {
	case state.Service, state.BeforeFirstByte:
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.TruncatedByService, Unit: emf.Count, Values: []float64{1}})
	case state.Caller:
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.TruncationByCaller, Unit: emf.Count, Values: []float64{1}})
	case state.Unobserved:
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.TruncationUnobserved, Unit: emf.Count, Values: []float64{1}})
	}
	if r.Expected >= 0 {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ChunksExpected, Unit: emf.Count, Values: []float64{float64(r.Expected)}})
		if r.Delivered < r.Expected {
			// What a caller missed, counted on the stream that announced
			// its count: Sum(ChunksExpected) − Sum(ChunksDelivered) mixes
			// streams that announced nothing. Written only when some are
			// missing (the Sum is the same, the bytes are not).
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ChunksMissing, Unit: emf.Count, Values: []float64{float64(r.Expected - r.Delivered)}})
		}
	}
	// Stream health, each written only when it applies (the bytes of every
	// document are billed): a long silence, one near an idle cut, Lambda's
	// bandwidth cap and its response limit.
	if r.LongestGapMs >= 1000 {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.LongestChunkGap, Unit: emf.Milliseconds, Values: []float64{math.Round(r.LongestGapMs)}})
	}
	if e.cfg.IdleLimit > 0 && r.LongestGapMs >= 0.8*float64(e.cfg.IdleLimit.Milliseconds()) {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.IdleNearLimit, Unit: emf.Count, Values: []float64{1}})
	}
	if r.Bytes > bandwidthCapBytes {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.BandwidthCapped, Unit: emf.Count, Values: []float64{1}})
	}
	if r.Bytes >= responseLimitBytes {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseLimitReached, Unit: emf.Count, Values: []float64{1}})
	}
	if r.HasBlocked && r.BlockedMs >= 1 {
		// Backpressure, apart from the chunks' intervals: blocked time read
		// there as a slow instrument. Written only when it happened.
		d.Metrics = append(d.Metrics,
			emf.Metric{Name: m.WriteBlockedTime, Unit: emf.Milliseconds, Values: []float64{r.BlockedMs}},
			emf.Metric{Name: m.WriteBlockedLongest, Unit: emf.Milliseconds, Values: []float64{r.BlockedMaxMs}})
	}
	if r.Integrity >= 0 {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.IntegrityMismatch, Unit: emf.Count, Values: []float64{float64(r.Integrity)}})
	}
	if r.Folded {
		// The invocation's outcome, with its only stream: what its own
		// record carried and is known now. ColdStart is what counts
		// records (the heartbeat's SampleCount): one an invocation, here.
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ColdStart, Unit: emf.Count, Values: []float64{boolf(r.ColdStart)}})
		if r.CPU > 0 {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ExtensionCPU, Unit: emf.Milliseconds,
				Values: []float64{math.Round(float64(r.CPU.Microseconds())) / 1000}})
		}
	}
	return appendOrKeep(dst, d)
}

// appendOrKeep appends d, or returns dst unchanged with the error. A
// document written without values CloudWatch would refuse is kept, with
// the *emf.ValueRangeError that says how many.
func appendOrKeep(dst []byte, d *emf.Document) ([]byte, error) {
	out, err := emf.Append(dst, d)
	if err != nil && !errors.Is(err, emf.ErrValueRange) {
		return dst, err
	}
	return out, err
}

// AppendInvocation appends the document of one finished invocation: its
// outcome. An invocation that failed before any stream started is one bad
// event for both SLOs (StreamTruncated and TTFBBudgetBreach, as a stream
// that never sent a byte would be); one that succeeded without a stream is
// counted apart (NonStreamingInvocations).
//
// The record of an invocation whose outcome went with its only stream's
// document (Folded) brings only what the platform said since: its figures
// join the platform document (AppendPlatform), shared by many invocations;
// a failure the platform reported after the stream's document, which that
// document could not say, is written as a record of its own, without the
// outcome (no ColdStart: the invocation is counted once).
func (e *Encoder) AppendInvocation(dst []byte, inv *state.InvocationResult, now time.Time) ([]byte, error) {
	if inv.Folded && !lateFailure(inv) {
		e.mu.Lock()
		e.platform.add(inv, now)
		e.mu.Unlock()
		return dst, nil
	}
	fn := emf.Property{Key: m.DimFunctionName, Value: e.cfg.FunctionName}
	d := &emf.Document{Namespace: e.cfg.Namespace, Timestamp: stamp(inv.End, now), Dimensions: [][]string{{m.DimFunctionName}},
		Properties: []emf.Property{fn, {Key: m.PropRequestID, Value: inv.RequestID}}}
	if !inv.Folded && inv.FirstRecord && inv.InitKnown && inv.Init.InitType != "" {
		// InitType (on-demand, provisioned-concurrency, snap-start,
		// lambda-managed-instances) is also a dimension of the record that
		// carries the init: a few values, and the only way to alarm on an
		// on-demand init where provisioned concurrency should serve. Other
		// records leave it out: nothing reads them by init type, and it is
		// 50 bytes of every invocation.
		d.Dimensions = [][]string{{m.DimFunctionName}, {m.DimFunctionName, m.DimInitType}}
		d.Properties = append(d.Properties, emf.Property{Key: m.DimInitType, Value: inv.Init.InitType})
	}
	if !inv.Folded {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ColdStart, Unit: emf.Count, Values: []float64{boolf(inv.ColdStart)}})
	}
	if !inv.Folded && inv.FirstRecord && inv.InitKnown {
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.InitDuration, Unit: emf.Milliseconds, Values: []float64{inv.Init.DurationMs}})
	}
	if rd := inv.Done; rd != nil {
		if status := state.NormalStatus(rd.Status); status != "success" {
			// Only a failure says something: absent means success.
			d.Properties = append(d.Properties, emf.Property{Key: m.PropInvocationStatus, Value: status})
			if rd.ErrorType != "" {
				d.Properties = append(d.Properties, emf.Property{Key: m.PropErrorType, Value: rd.ErrorType})
			}
		}
		if !rd.FromReport {
			// Managed Instances' report has no producedBytes.
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ProducedBytes, Unit: emf.Bytes, Values: []float64{rd.ProducedBytes}})
		}
		if rd.HasLatency {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseLatency, Unit: emf.Milliseconds, Values: []float64{rd.ResponseLatencyMs}})
		}
		if rd.HasDuration {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseDuration, Unit: emf.Milliseconds, Values: []float64{rd.ResponseDurationMs}})
		}
		if v, ok := rd.Throughput(); ok {
			d.Metrics = append(d.Metrics, emf.Metric{Name: m.ResponseThroughput, Unit: emf.BytesPerSecond, Values: []float64{math.Round(v)}})
		}
	}
	if inv.MissingDone {
		d.Properties = append(d.Properties, emf.Property{Key: m.PropRuntimeDoneMissing, Value: true})
	}
	if rd, rp := inv.Done, inv.Report; rd != nil && !rd.FromReport && rp != nil {
		// What this extension (and any other) cost the invocation after
		// the runtime finished: billed to the user, so measured.
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ExtensionOverhead, Unit: emf.Milliseconds,
			Values: []float64{max(0, math.Round((rp.DurationMs-rd.DurationMs)*1000)/1000)}})
	}
	if inv.CPU > 0 && !inv.Folded {
		// The extension's own CPU for this invocation: on a small function it
		// shares ~7 % of a core with the function, so it is a cost to watch.
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.ExtensionCPU, Unit: emf.Milliseconds,
			Values: []float64{math.Round(float64(inv.CPU.Microseconds())) / 1000}})
	}
	switch {
	case inv.Verdict.Truncated():
		d.Properties = append(d.Properties, emf.Property{Key: m.PropTruncateReason, Value: inv.Verdict.Reason()})
		d.Metrics = append(d.Metrics,
			emf.Metric{Name: m.StreamTruncated, Unit: emf.Count, Values: []float64{1}},
			emf.Metric{Name: m.TTFBBudgetBreach, Unit: emf.Count, Values: []float64{1}},
			emf.Metric{Name: m.FailedBeforeFirstByte, Unit: emf.Count, Values: []float64{1}},
			emf.Metric{Name: m.TruncatedByService, Unit: emf.Count, Values: []float64{1}})
	case inv.NonStreaming:
		d.Metrics = append(d.Metrics, emf.Metric{Name: m.NonStreamingInvocations, Unit: emf.Count, Values: []float64{1}})
	}
	// The report's billed duration and memory are not repeated: Lambda's own
	// REPORT line, in the same log stream, has them (@billedDuration,
	// @maxMemoryUsed in Logs Insights), and every byte here is billed.
	return appendOrKeep(dst, d)
}

// lateFailure reports whether the platform said the invocation of a folded
// record failed after its stream's document was written, which therefore
// could not say so.
func lateFailure(inv *state.InvocationResult) bool {
	return inv.Done != nil && !inv.FoldedDone && state.NormalStatus(inv.Done.Status) != "success"
}

// platformFigures holds the platform's figures of invocations whose outcome
// went out with their only stream's document (state.Result.Folded): they
// come after it (runtimeDone and report arrive once the extension let the
// invocation go), and one document for many invocations costs a few bytes
// a value where a record of their own cost ~600.
type platformFigures struct {
	produced, latency, duration, overhead, throughput []float64
	oldest                                            time.Time // when the oldest value was measured
}

func (p *platformFigures) empty() bool {
	return len(p.produced)+len(p.latency)+len(p.duration)+len(p.overhead)+len(p.throughput) == 0
}

// add takes the figures of folded record inv, written at now.
func (p *platformFigures) add(inv *state.InvocationResult, now time.Time) {
	rd := inv.Done
	if rd == nil {
		return
	}
	if p.empty() {
		p.oldest = stamp(inv.End, now)
	}
	if !rd.FromReport {
		p.produced = append(p.produced, rd.ProducedBytes)
	}
	if rd.HasLatency {
		p.latency = append(p.latency, rd.ResponseLatencyMs)
	}
	if rd.HasDuration {
		p.duration = append(p.duration, rd.ResponseDurationMs)
	}
	if v, ok := rd.Throughput(); ok {
		p.throughput = append(p.throughput, math.Round(v))
	}
	if rp := inv.Report; !rd.FromReport && rp != nil {
		p.overhead = append(p.overhead, max(0, math.Round((rp.DurationMs-rd.DurationMs)*1000)/1000))
	}
}

// due reports whether the figures make a document now: a metric has a
// document's worth (100 values), or the oldest waited maxInstrumentAge.
func (p *platformFigures) due(now time.Time) bool {
	n := max(len(p.produced), len(p.latency), len(p.duration), len(p.overhead), len(p.throughput))
	return n >= maxInstrumentValues || (n > 0 && now.Sub(p.oldest) >= maxInstrumentAge)
}

// AppendPlatform appends the platform document, when due (final: whatever
// is held, at SHUTDOWN): the figures of the invocations whose outcome went
// with their stream's document — ProducedBytes, ResponseLatency,
// ResponseDuration, ExtensionOverhead, ResponseThroughput — as the same
// metrics their records carried, many values a metric, stamped when the
// oldest was measured.
func (e *Encoder) AppendPlatform(dst []byte, now time.Time, final bool) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := &e.platform
	if p.empty() || !final && !p.due(now) {
		return dst, nil
	}
	d := &emf.Document{Namespace: e.cfg.Namespace, Timestamp: clamp(p.oldest, now), Dimensions: [][]string{{m.DimFunctionName}},
		Properties: []emf.Property{{Key: m.DimFunctionName, Value: e.cfg.FunctionName}},
		Metrics: []emf.Metric{
			{Name: m.ProducedBytes, Unit: emf.Bytes, Values: p.produced},
			{Name: m.ResponseLatency, Unit: emf.Milliseconds, Values: p.latency},
			{Name: m.ResponseDuration, Unit: emf.Milliseconds, Values: p.duration},
			{Name: m.ExtensionOverhead, Unit: emf.Milliseconds, Values: p.overhead},
			{Name: m.ResponseThroughput, Unit: emf.BytesPerSecond, Values: p.throughput},
		}}
	out, err := appendOrKeep(dst, d)
	p.produced, p.latency, p.duration, p.overhead, p.throughput = p.produced[:0], p.latency[:0], p.duration[:0], p.overhead[:0], p.throughput[:0]
	return out, err
}

// countersEvery is how often routine counts alone make a counters
// document.
const countersEvery = time.Minute

// routine returns the counts of c that every invocation has (events
// applied, span sampling decisions): they ride with a counters document
// written for something else, or make one of their own once per
// countersEvery, not one per invocation.
func routine(c counters.Counters) counters.Counters {
	return counters.Counters{Events: c.Events, SpansKeptFailed: c.SpansKeptFailed, SpansSampled: c.SpansSampled, SpansSampledOut: c.SpansSampledOut}
}

// AppendCounters appends the document of the extension's own counters: at
// once when a problem was counted, else once per countersEvery for the
// routine counts, which are carried until then (final: now, the last write).
func (e *Encoder) AppendCounters(dst []byte, c counters.Counters, now time.Time, final bool) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.Add(e.carry)
	if c == (counters.Counters{}) {
		return dst, nil
	}
	if c == routine(c) && !final && now.Sub(e.lastCounters) < countersEvery {
		e.carry = c
		return dst, nil
	}
	e.carry, e.lastCounters = counters.Counters{}, now
	fn := emf.Property{Key: m.DimFunctionName, Value: e.cfg.FunctionName}
	count := func(name string, v int64) emf.Metric {
		return emf.Metric{Name: name, Unit: emf.Count, Values: []float64{float64(v)}}
	}
	return appendOrKeep(dst, &emf.Document{Namespace: e.cfg.Namespace, Timestamp: now, Dimensions: [][]string{{m.DimFunctionName}},
		Properties: []emf.Property{fn,
			{Key: m.PropLateEvents, Value: c.LateEvents}, {Key: m.PropDuplicateEnds, Value: c.DuplicateEnd},
			{Key: m.PropEvictedStreams, Value: c.Evicted}, {Key: m.PropOversizedDatagrams, Value: c.Oversized},
			{Key: m.PropBadTelemetry, Value: c.BadTelemetry}, {Key: m.PropRuntimeDoneMissingCnt, Value: c.NoRuntimeDone},
			{Key: m.PropEventsReceived, Value: c.Events},
			{Key: m.PropDroppedEMFLines, Value: c.DroppedEMF}, {Key: m.PropDuplicateEvents, Value: c.DuplicateEvents},
			{Key: m.PropMissingStart, Value: c.MissingStart}, {Key: m.PropImplausibleEvents, Value: c.Implausible},
			{Key: m.PropShedChunkDetail, Value: c.ShedDetail}, {Key: m.PropSpansDropped, Value: c.SpansDropped},
			{Key: m.PropInvocationRecordsLost, Value: c.InvocationsDropped},
			{Key: m.PropValuesRefused, Value: c.ValuesRefused}, {Key: m.PropChunkDetailShed, Value: c.ChunkDetailShed},
			{Key: m.PropRingSlotsTorn, Value: c.RingSlotsTorn}, {Key: m.PropRingSlotsLost, Value: c.RingSlotsLost},
			{Key: m.PropRingsRefused, Value: c.RingsRefused}},
		Metrics: []emf.Metric{count(m.MalformedEvents, c.Malformed), count(m.TelemetryUnavailable, c.TelemetryUnavailable),
			count(m.ConfigErrors, c.ConfigErrors), count(m.SpanExportFailures, c.SpanExportErr),
			count(m.SpansKeptFailed, c.SpansKeptFailed), count(m.SpansSampled, c.SpansSampled),
			count(m.SpansSampledOut, c.SpansSampledOut), count(m.EventAddressUnusable, c.ListenErrors),
			count(m.KernelDrops, c.KernelDrops), count(m.SpanExportUnknown, c.SpanExportUnknown),
			count(m.RingDirUnusable, c.RingDirUnusable)}})
}

// Lambda's streamed-response limits: bandwidth is capped at 2 MiB/s past
// the first 6 MB, and a response ends at 200 MiB.
const (
	bandwidthCapBytes  = 6 * 1000 * 1000
	responseLimitBytes = 200 << 20
)

// maxRecordAge is how far before it is written a record may be stamped.
const maxRecordAge = time.Minute

// stamp is the timestamp of an outcome that ended at end, written at now: its
// end, when that is recent. A record stamped at its stream's start lands as
// far in the past as the stream lasted (a 10-minute hang: after the 5-minute
// burn windows were evaluated), and one written late (a stream carried to
// the next thaw, a forged or skewed clock) would land where no alarm looks:
// those are stamped now.
func stamp(end, now time.Time) time.Time {
	if end.IsZero() || end.After(now) || now.Sub(end) > maxRecordAge {
		return now
	}
	return end
}

// clamp keeps a client timestamp CloudWatch will accept: EMF drops metrics more
// than two weeks old or two hours ahead, so a skewed or forged clock must not
// cost the metrics.
func clamp(t, now time.Time) time.Time {
	if t.Before(now.Add(-14*24*time.Hour+time.Hour)) || t.After(now.Add(time.Hour)) {
		return now
	}
	return t
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Package counters is the extension's self-monitoring: counts of what went
// wrong or was shed (malformed events, evicted streams, failed exports, …),
// kept apart from the stream table. The table counts what it sees itself and
// hands its counts over at each flush; everything else — the telemetry
// listener, the background exporter, configuration, the event socket's edge
// — adds to a Set from any goroutine, which each write takes.
package counters

import "sync"

// Counters are the extension's counts of itself, as deltas: what one flush
// writes in the counters document (emfsink), each field under the name
// metrics defines for it.
type Counters struct {
	Malformed     int64
	Oversized     int64
	LateEvents    int64 // events for a stream already flushed
	DuplicateEnd  int64
	Evicted       int64
	BadTelemetry  int64 // telemetry batches or items that could not be decoded
	NoRuntimeDone int64 // invocations flushed without their platform.runtimeDone
	SpanExportErr int64 // spans whose OTLP export failed or hit its budget
	Events        int64 // events applied
	DroppedEMF    int64 // EMF lines dropped because stdout was blocked and the buffer full
	// TelemetryUnavailable is 1 in the first flush after the Telemetry API
	// subscription failed or was not a subscription (202 NotSupported).
	TelemetryUnavailable int64
	DuplicateEvents      int64 // a start or chunk seen twice: ignored, so it cannot hide a lost one
	MissingStart         int64 // streams flushed without their start (no TTFB, no latencies)
	Implausible          int64 // times or sequence numbers no real stream has (skewed clock, forged seq): ignored
	ShedDetail           int64 // streams written without their per-chunk values: the flush was over its budget
	SpansDropped         int64 // finished streams that got no span: the export queue was full
	SpansKeptFailed      int64 // streams that failed and got a span whatever the sampler says
	SpansSampled         int64 // healthy streams the sampler kept
	SpansSampledOut      int64 // healthy streams the sampler did not keep
	ConfigErrors         int64 // bad STREAMLENS_* values that fell back to their defaults
	InvocationsDropped   int64 // platform events for invocations past the table's bound: their records are lost
	ListenErrors         int64 // the event address was unusable: no stream events are received
	KernelDrops          int64 // datagrams the kernel dropped on the event socket (its buffer was full)
	SpanExportUnknown    int64 // spans whose export the budget ended before the collector answered
	ValuesRefused        int64 // metric values outside CloudWatch's range, left out of their document
	ChunkDetailShed      int64 // chunks whose latency and interval were not kept: the memory ceiling
	RingSlotsTorn        int64 // ring slots a writer reserved and died before committing: events lost in a crash
	RingSlotsLost        int64 // ring slots that held something else than they should: a writer broke the protocol
	RingsRefused         int64 // rings not attached: not a valid ring file, or too many
	RingDirUnusable      int64 // STREAMLENS_RING_DIR was not the extension's to use: functions send datagrams
}

// Add adds d to c.
func (c *Counters) Add(d Counters) {
	c.Malformed += d.Malformed
	c.Oversized += d.Oversized
	c.LateEvents += d.LateEvents
	c.DuplicateEnd += d.DuplicateEnd
	c.Evicted += d.Evicted
	c.BadTelemetry += d.BadTelemetry
	c.NoRuntimeDone += d.NoRuntimeDone
	c.SpanExportErr += d.SpanExportErr
	c.Events += d.Events
	c.DroppedEMF += d.DroppedEMF
	c.TelemetryUnavailable += d.TelemetryUnavailable
	c.DuplicateEvents += d.DuplicateEvents
	c.MissingStart += d.MissingStart
	c.Implausible += d.Implausible
	c.ShedDetail += d.ShedDetail
	c.SpansDropped += d.SpansDropped
	c.SpansKeptFailed += d.SpansKeptFailed
	c.SpansSampled += d.SpansSampled
	c.SpansSampledOut += d.SpansSampledOut
	c.ConfigErrors += d.ConfigErrors
	c.InvocationsDropped += d.InvocationsDropped
	c.ListenErrors += d.ListenErrors
	c.KernelDrops += d.KernelDrops
	c.SpanExportUnknown += d.SpanExportUnknown
	c.ValuesRefused += d.ValuesRefused
	c.ChunkDetailShed += d.ChunkDetailShed
	c.RingSlotsTorn += d.RingSlotsTorn
	c.RingSlotsLost += d.RingSlotsLost
	c.RingsRefused += d.RingsRefused
	c.RingDirUnusable += d.RingDirUnusable
}

// Set accumulates counts from any goroutine until a flush takes them.
type Set struct {
	mu sync.Mutex
	c  Counters
}

// Add adds d to the counts.
func (s *Set) Add(d Counters) {
	s.mu.Lock()
	s.c.Add(d)
	s.mu.Unlock()
}

// Take returns the counts since the last Take and starts again from zero.
func (s *Set) Take() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	s.c = Counters{}
	return c
}

// Pending reports whether anything was counted since the last Take.
func (s *Set) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c != Counters{}
}

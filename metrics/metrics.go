// Package metrics is the one definition of streamlens metric names, units and
// dimensions. The extension emits from it; dashboards, alarms and SLOs are
// generated from it, so a renamed metric cannot leave a dashboard behind.
package metrics

import "github.com/streamlens/streamlens/emf"

// DefaultNamespace is the CloudWatch namespace unless STREAMLENS_NAMESPACE says
// otherwise.
const DefaultNamespace = "Streamlens"

// Dimension keys. Only these are ever dimensions: bundle, quote, request and
// trace ids are properties, because a per-id dimension makes a metric per id.
const (
	DimFunctionName = "FunctionName"
	DimInstrument   = "Instrument"
	// DimInitType (on-demand | provisioned-concurrency | snap-start) is a
	// dimension of the per-invocation metrics only.
	DimInitType = "InitType"
	// DimVersion (the function version) is a dimension of the per-stream
	// metrics only with STREAMLENS_VERSION_DIMENSION=on.
	DimVersion = "Version"
)

// Metric names (DESIGN.md §4).
const (
	TimeToFirstByte  = "TimeToFirstByte"
	ResponseLatency  = "ResponseLatency"
	ResponseDuration = "ResponseDuration"
	ChunkLatency     = "ChunkLatency"
	ChunkInterval    = "ChunkInterval"
	ChunksDelivered  = "ChunksDelivered"
	ChunksExpected   = "ChunksExpected"
	// TruncationByCaller is 1 for a stream truncated because its caller went
	// away (status-aborted), TruncationUnobserved for one streamlens could
	// not judge (evicted from its state, or still open at a spin-down, its
	// end never sent); absent otherwise. The completeness SLO takes both out:
	// they are not the service's truncations.
	TruncationByCaller   = "TruncationByCaller"
	TruncationUnobserved = "TruncationUnobserved"
	// TruncatedByService is 1 for an outcome the service truncated (class
	// service or before-first-byte: what the completeness SLO counts as bad,
	// callers gone and unjudged streams left out), written only then: one
	// metric a query over many functions can rank by (a Metrics Insights
	// query reads one metric, and cannot subtract the exclusions).
	TruncatedByService = "TruncatedByService"
	// ChunksMissing is expected − delivered for a stream that announced its
	// count and fell short; absent otherwise.
	ChunksMissing     = "ChunksMissing"
	StreamTruncated   = "StreamTruncated"
	IntegrityMismatch = "IntegrityMismatch"
	TTFBBudgetBreach  = "TTFBBudgetBreach"
	StreamBytes       = "StreamBytes"
	ProducedBytes     = "ProducedBytes"
	InitDuration      = "InitDuration"
	ColdStart         = "ColdStart"
	DroppedEvents     = "DroppedEvents"
	MalformedEvents   = "MalformedEvents"
	// ExtensionOverhead is what the extension added to an invocation after
	// the runtime finished (platform.report − platform.runtimeDone), in ms.
	ExtensionOverhead = "ExtensionOverhead"
	// TelemetryUnavailable is 1 when the Telemetry API could not be
	// subscribed to (for instance 202 Telemetry.NotSupported under sam local).
	TelemetryUnavailable = "TelemetryUnavailable"
	// InstrumentOverflow counts chunks whose instrument name was past the cap
	// of distinct names (STREAMLENS_MAX_INSTRUMENTS) and went under "other".
	InstrumentOverflow = "InstrumentOverflow"
	// InstrumentValuesDropped counts per-instrument values dropped because
	// the background had no time to write them (1,000 held per instrument).
	InstrumentValuesDropped = "InstrumentValuesDropped"
	// InvalidDimensionValues counts instrument names CloudWatch would refuse
	// as dimension values (non-ASCII, control characters, whitespace only,
	// over 1,024 characters), written made valid (emf.DimensionValue).
	InvalidDimensionValues = "InvalidDimensionValues"
	// ConfigErrors counts bad STREAMLENS_* values that fell back to their
	// defaults (reported once, at the first flush).
	ConfigErrors = "ConfigErrors"
	// ExtensionCPU is the CPU time the extension used per invocation, in ms.
	ExtensionCPU = "ExtensionCPU"
	// SpanExportFailures counts spans the collector did not take: the
	// export failed, ran out of its budget, or was partly rejected.
	SpanExportFailures = "SpanExportFailures"
	// SpansKeptFailed counts failed streams (truncated, bad hash, failed
	// invocation, TTFB over the threshold) given a span whatever the sampler
	// says; SpansSampled the healthy ones the sampler kept, SpansSampledOut
	// those it did not.
	SpansKeptFailed = "SpansKeptFailed"
	SpansSampled    = "SpansSampled"
	SpansSampledOut = "SpansSampledOut"
	// FailedBeforeFirstByte is 1 on the record of an invocation that the
	// platform reports failed (error, timeout, crash) before any stream
	// started: the record also counts as one truncated outcome with no first
	// byte (StreamTruncated, TTFBBudgetBreach), so that an outage before the
	// first byte burns both SLOs. Written only then.
	FailedBeforeFirstByte = "FailedBeforeFirstByte"
	// NonStreamingInvocations is 1 on the record of an invocation that
	// succeeded without starting a stream: counted apart, in no SLO.
	NonStreamingInvocations = "NonStreamingInvocations"
	// EventAddressUnusable is 1 when STREAMLENS_ADDR could not be bound
	// (taken, a file in the way): the extension runs without stream events.
	EventAddressUnusable = "EventAddressUnusable"
	// WriteBlockedTime is the time a stream's writer spent blocked writing
	// (backpressure: a slow caller lets the response's buffers fill), and
	// WriteBlockedLongest its longest single block; written for a stream
	// that was blocked at least 1 ms, as its client measured it.
	WriteBlockedTime    = "WriteBlockedTime"
	WriteBlockedLongest = "WriteBlockedLongest"
	// SpanExportUnknown counts spans whose export the budget ended before
	// the collector answered: it may have taken them. Apart from
	// SpanExportFailures, so that a budget a little short for the collector
	// does not read as the collector failing; a hanging collector shows here.
	SpanExportUnknown = "SpanExportUnknown"
	// LongestChunkGap is the longest time a stream's caller got nothing
	// (start to a chunk, or between chunks), written when at least 1 s;
	// IdleNearLimit is 1 when that gap reached 80 % of the idle limit a
	// proxy cuts streams at (STREAMLENS_IDLE_LIMIT_MS: API Gateway's 30 s
	// edge-optimized, 5 min regional). Written only then.
	LongestChunkGap = "LongestChunkGap"
	IdleNearLimit   = "IdleNearLimit"
	// BandwidthCapped is 1 for a stream past 6 MB (Lambda caps a streamed
	// response's bandwidth at 2 MiB/s beyond it) and ResponseLimitReached for
	// one at Lambda's 200 MiB limit; written only then.
	BandwidthCapped      = "BandwidthCapped"
	ResponseLimitReached = "ResponseLimitReached"
	// ResponseThroughput is the rate at which the platform took an
	// invocation's response in (producedBytes over responseDuration, from
	// runtimeDone), written for a response of at least 1 MB: past 6 MB
	// Lambda paces a streamed response at 2 MiB/s.
	ResponseThroughput = "ResponseThroughput"
	// KernelDrops counts datagrams the kernel dropped on the event socket
	// (its receive buffer was full): lost events, maybe a stream's end.
	KernelDrops = "KernelDrops"
	// RingDirUnusable is 1 when STREAMLENS_RING_DIR could not be made the
	// extension's (something else is there): clients send datagrams.
	RingDirUnusable = "RingDirUnusable"
)

// Property keys written next to the metrics (searchable in Logs Insights).
const (
	PropQuoteID        = "QuoteId"
	PropBundleID       = "BundleId"
	PropClientID       = "ClientId"
	PropRequestID      = "RequestId"
	PropTraceParent    = "TraceParent"
	PropStatus         = "StreamStatus"
	PropTruncateReason = "TruncationReason"
	PropLateEvents     = "LateEvents"
	// PropInvocationStatus is the platform's status of a failed invocation
	// (error, timeout, failure); absent on success.
	PropInvocationStatus = "InvocationStatus"
	// PropErrorType is the platform's error type of a failed invocation
	// (Runtime.ExitError, Sandbox.Timedout, …).
	PropErrorType = "ErrorType"
	// PropRuntimeDoneMissing is true on an invocation record written without
	// its platform.runtimeDone (classic environments only).
	PropRuntimeDoneMissing = "RuntimeDoneMissing"
)

// The counters document's counts that are properties, not metrics: searched
// in Logs Insights (the extension-problems query), never alarmed on alone.
const (
	PropDuplicateEnds         = "DuplicateEnds"
	PropEvictedStreams        = "EvictedStreams"
	PropOversizedDatagrams    = "OversizedDatagrams"
	PropBadTelemetry          = "BadTelemetry"
	PropRuntimeDoneMissingCnt = "RuntimeDoneMissingCount"
	PropEventsReceived        = "EventsReceived"
	PropDroppedEMFLines       = "DroppedEMFLines"
	PropDuplicateEvents       = "DuplicateEvents"
	PropMissingStart          = "MissingStart"
	PropImplausibleEvents     = "ImplausibleEvents"
	PropShedChunkDetail       = "ShedChunkDetail"
	PropSpansDropped          = "SpansDropped"
	PropInvocationRecordsLost = "InvocationRecordsLost"
	PropValuesRefused         = "ValuesRefused"
	PropChunkDetailShed       = "ChunkDetailShed"
	// Rings (the clients' shared-memory transport): slots reserved by a
	// writer that died before committing them (an event lost in a crash,
	// mid-write), slots that held something else than they should (a
	// writer that broke the protocol), rings refused (not a valid ring, or
	// too many).
	PropRingSlotsTorn = "RingSlotsTorn"
	PropRingSlotsLost = "RingSlotsLost"
	PropRingsRefused  = "RingsRefused"
)

// Properties lists every property key the extension writes beside its
// metrics and dimensions: ids, statuses and the counters document's counts.
func Properties() []string {
	return []string{PropQuoteID, PropBundleID, PropClientID, PropRequestID, PropTraceParent, PropStatus, PropTruncateReason,
		PropLateEvents, PropInvocationStatus, PropErrorType, PropRuntimeDoneMissing,
		PropDuplicateEnds, PropEvictedStreams, PropOversizedDatagrams, PropBadTelemetry, PropRuntimeDoneMissingCnt,
		PropEventsReceived, PropDroppedEMFLines, PropDuplicateEvents, PropMissingStart, PropImplausibleEvents,
		PropShedChunkDetail, PropSpansDropped, PropInvocationRecordsLost, PropValuesRefused, PropChunkDetailShed,
		PropRingSlotsTorn, PropRingSlotsLost, PropRingsRefused}
}

// Def describes one metric.
type Def struct {
	Name string
	Unit emf.Unit
	// PerInstrument metrics are emitted twice: per stream with FunctionName only,
	// and aggregated per instrument with FunctionName+Instrument.
	PerInstrument bool
	Description   string
}

// Defs lists every metric, in dashboard order.
func Defs() []Def {
	return []Def{
		{TimeToFirstByte, emf.Milliseconds, false, "handler start → first useful chunk (business TTFB)"},
		{ResponseLatency, emf.Milliseconds, false, "platform time to first byte (runtimeDone responseLatency)"},
		{ResponseDuration, emf.Milliseconds, false, "platform response duration (runtimeDone responseDuration)"},
		{ChunkLatency, emf.Milliseconds, true, "stream start → this chunk"},
		{ChunkInterval, emf.Milliseconds, true, "previous chunk → this chunk: the cost of computing this instrument"},
		{ChunksDelivered, emf.Count, false, "payload chunks delivered in a stream"},
		{ChunksExpected, emf.Count, false, "payload chunks the stream announced"},
		{TruncationByCaller, emf.Count, false, "1 for a stream truncated because its caller went away (status-aborted); written only then"},
		{TruncationUnobserved, emf.Count, false, "1 for a stream streamlens could not judge (evicted, or open at a spin-down); written only then"},
		{ChunksMissing, emf.Count, false, "announced chunks a stream did not deliver (written only when some are missing)"},
		{StreamTruncated, emf.Count, false, "1 if the stream did not end complete; its Average is the truncation rate"},
		{TruncatedByService, emf.Count, false, "1 for an outcome the service truncated (what the completeness SLO counts bad); written only then"},
		{IntegrityMismatch, emf.Count, false, "1 if the declared hash differs from the hash of delivered bytes"},
		{TTFBBudgetBreach, emf.Count, false, "1 if TimeToFirstByte exceeded the SLO threshold, or the stream ended before its first byte"},
		{StreamBytes, emf.Bytes, false, "payload bytes counted by the client"},
		{ProducedBytes, emf.Bytes, false, "bytes counted by the platform (runtimeDone producedBytes)"},
		{InitDuration, emf.Milliseconds, false, "sandbox init duration (platform.initReport)"},
		{ColdStart, emf.Count, false, "1 on the first invocation after an init"},
		{DroppedEvents, emf.Count, false, "events lost between client and extension (client drops + sequence gaps)"},
		{MalformedEvents, emf.Count, false, "datagram lines the extension rejected"},
		{TelemetryUnavailable, emf.Count, false, "1 once when the Telemetry API could not be subscribed to (202 Telemetry.NotSupported under sam local)"},
		{ExtensionOverhead, emf.Milliseconds, false, "time extensions added after the runtime finished (platform.report − runtimeDone): billed"},
		{ExtensionCPU, emf.Milliseconds, false, "CPU time the streamlens extension used for the invocation"},
		{InstrumentValuesDropped, emf.Count, false, "per-instrument values dropped: more than 1,000 waited for the background"},
		{InvalidDimensionValues, emf.Count, false, "instrument names made valid for CloudWatch (non-ASCII, control characters, blank, too long)"},
		{ConfigErrors, emf.Count, false, "bad STREAMLENS_* values that fell back to their defaults"},
		{InstrumentOverflow, emf.Count, false, "chunks whose instrument name was past STREAMLENS_MAX_INSTRUMENTS and went under \"other\""},
		{SpanExportFailures, emf.Count, false, "spans the collector did not take: failed, over the export budget, or rejected"},
		{SpansKeptFailed, emf.Count, false, "failed streams (truncated, bad hash, failed invocation, slow TTFB) exported whatever the sampler says"},
		{SpansSampled, emf.Count, false, "healthy streams the trace sampler kept"},
		{SpansSampledOut, emf.Count, false, "healthy streams the trace sampler did not keep"},
		{FailedBeforeFirstByte, emf.Count, false, "1 for an invocation that failed before any stream started (counted as a truncated outcome with no first byte); written only then"},
		{NonStreamingInvocations, emf.Count, false, "1 for an invocation that succeeded without starting a stream (in no SLO); written only then"},
		{EventAddressUnusable, emf.Count, false, "1 when STREAMLENS_ADDR could not be bound (taken, a file in the way): no stream events are received"},
		{WriteBlockedTime, emf.Milliseconds, false, "time the stream's writer was blocked by backpressure (a slow caller); written when at least 1 ms"},
		{WriteBlockedLongest, emf.Milliseconds, false, "the longest single block of the stream's writer; written with WriteBlockedTime"},
		{SpanExportUnknown, emf.Count, false, "spans whose export the budget ended before the collector answered (it may have taken them)"},
		{LongestChunkGap, emf.Milliseconds, false, "the longest time a stream's caller got nothing (start to a chunk, or between chunks); written when at least 1 s"},
		{IdleNearLimit, emf.Count, false, "1 for a stream whose longest gap reached 80 % of STREAMLENS_IDLE_LIMIT_MS (an API Gateway idle cut); written only then"},
		{BandwidthCapped, emf.Count, false, "1 for a stream past 6 MB, where Lambda caps a streamed response at 2 MiB/s; written only then"},
		{ResponseLimitReached, emf.Count, false, "1 for a stream at Lambda's 200 MiB response limit; written only then"},
		{ResponseThroughput, emf.BytesPerSecond, false, "the rate the platform took the invocation's response in (producedBytes / responseDuration); written for responses of at least 1 MB"},
		{KernelDrops, emf.Count, false, "datagrams the kernel dropped on the event socket (its buffer was full): lost events"},
		{RingDirUnusable, emf.Count, false, "1 when STREAMLENS_RING_DIR was not the extension's to use (something else is there): functions send their events by datagram"},
	}
}

// The caller's side: what `probe` and the canary (examples/canary) measure
// from outside the function, as its caller receives the response. These
// metrics have their own dimension, Probe (the probe's name), never
// FunctionName: the function's own metrics count its streams as the
// extension sees them, and a caller's figures mixed into those would read
// as the function's. They are listed by ProbeDefs, apart from Defs, because
// the extension never writes them (Defs is what it writes and what the
// function's dashboard draws).
const (
	// DimProbe is the probe's name (STREAMLENS_PROBE_NAME): the only
	// dimension of the Caller* metrics.
	DimProbe = "Probe"

	// CallerTimeToFirstByte is request sent → first response byte as the
	// caller received it (curl's time_starttransfer), DNS, connect and TLS
	// included: what a new caller waits.
	CallerTimeToFirstByte = "CallerTimeToFirstByte"
	// CallerFirstUsefulChunk is request sent → the end of the first useful
	// chunk (a quote, in the pricing envelope).
	CallerFirstUsefulChunk = "CallerFirstUsefulChunk"
	// CallerResponseTime is request sent → the end of the body.
	CallerResponseTime = "CallerResponseTime"
	// CallerDNS, CallerConnect and CallerTLS are the connection's phases;
	// written only when taken.
	CallerDNS     = "CallerDNS"
	CallerConnect = "CallerConnect"
	CallerTLS     = "CallerTLS"
	// CallerChunks and CallerBytes are what the caller received.
	CallerChunks = "CallerChunks"
	CallerBytes  = "CallerBytes"
	// CallerTruncated is 1 when the caller's response was not complete (the
	// request failed, an error status or trailer, no end marker, a wrong
	// SHA-256), 0 otherwise: written for every probe, so that its Average is
	// the caller-side truncation rate and its SampleCount the probes made.
	CallerTruncated = "CallerTruncated"
	// CallerIntegrityMismatch is 1 when the end marker's SHA-256 did not
	// match the lines before it, 0 when it did; written only when the
	// response carried an end marker with a hash.
	CallerIntegrityMismatch = "CallerIntegrityMismatch"
)

// Property keys of the probe's documents, beside PropTraceParent,
// PropTruncateReason and PropErrorType (Lambda's error trailer there).
const (
	// PropProbeURL is the URL probed, its credentials redacted.
	PropProbeURL = "ProbeURL"
	// PropHTTPStatus is the response's status code (0: no response).
	PropHTTPStatus = "HTTPStatus"
	// PropProbeVerdict is "complete" or "truncated".
	PropProbeVerdict = "ProbeVerdict"
)

// ProbeProperties lists every property key the probe writes beside its
// metrics and its Probe dimension.
func ProbeProperties() []string {
	return []string{PropProbeURL, PropHTTPStatus, PropProbeVerdict, PropTraceParent, PropTruncateReason, PropErrorType}
}

// ProbeDefs lists the caller-side metrics, in the order a reader wants them.
func ProbeDefs() []Def {
	return []Def{
		{CallerTimeToFirstByte, emf.Milliseconds, false, "request sent → first response byte, as the caller received it (curl's time_starttransfer; DNS, connect, TLS included)"},
		{CallerFirstUsefulChunk, emf.Milliseconds, false, "request sent → end of the first useful chunk, as the caller received it"},
		{CallerResponseTime, emf.Milliseconds, false, "request sent → end of the body, as the caller received it"},
		{CallerDNS, emf.Milliseconds, false, "the caller's DNS lookup; written when one was made"},
		{CallerConnect, emf.Milliseconds, false, "the caller's TCP connect; written when one was made"},
		{CallerTLS, emf.Milliseconds, false, "the caller's TLS handshake; written when one was made"},
		{CallerChunks, emf.Count, false, "chunks (lines, or reads for a raw body) the caller received"},
		{CallerBytes, emf.Bytes, false, "body bytes the caller received"},
		{CallerTruncated, emf.Count, false, "1 when the caller's response was not complete (failed request, error status or trailer, no end marker, wrong SHA-256), else 0; its Average is the caller-side truncation rate"},
		{CallerIntegrityMismatch, emf.Count, false, "1 when the end marker's SHA-256 did not match what the caller received, 0 when it did; written when there was one"},
	}
}

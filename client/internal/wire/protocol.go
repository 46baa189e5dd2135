package wire

import "errors"

// Version is the marker every line starts with. A new incompatible format gets a
// new marker; the decoder rejects lines it does not know, so old extensions count
// new-format events as malformed instead of misreading them.
const Version = "sl1"

// MaxDatagram is the largest datagram the extension accepts. Larger ones are
// counted and dropped whole: a truncated read could end mid-event.
const MaxDatagram = 8192

// Field limits. They keep one hostile event from costing the extension more than
// a few hundred bytes of state.
const (
	MaxIDLen       = 128 // stream id, request id
	MaxValueLen    = 256 // instrument, bundle, client, traceparent (after unescaping)
	MaxKeyLen      = 16
	MaxCount       = 1 << 31      // chunk counts: far above Lambda's 20 MiB response limit
	MaxBytes       = 1 << 40      // byte counts
	MaxBlockedUs   = 900_000_000  // blocked time: Lambda's longest invocation, 15 minutes
	MinTimeNs      = 946684800e9  // 2000-01-01: a clock before that is broken
	MaxTimeNs      = 4102444800e9 // 2100-01-01
	SHA256HexLen   = 64
	maxFieldsInEvt = 32
)

// Kind is the type of an event.
type Kind uint8

// Event kinds.
const (
	KindStart Kind = iota + 1
	KindChunk
	KindEnd
)

func (k Kind) String() string {
	switch k {
	case KindStart:
		return "start"
	case KindChunk:
		return "chunk"
	case KindEnd:
		return "end"
	}
	return "unknown"
}

// Flags qualify a chunk.
type Flags uint8

// Chunk flags, written as letters in the flags= field.
const (
	// FlagFirstUseful marks the chunk that ends business TTFB.
	FlagFirstUseful Flags = 1 << iota // 'u'
	// FlagError marks an error envelope sent in place of a quote.
	FlagError // 'e'
	// FlagTrailer marks a control chunk (e.g. BUNDLE_COMPLETE) that is written to
	// the stream but is not one of the expected payload chunks.
	FlagTrailer // 't'
)

// Status is how the function says a stream ended.
type Status uint8

// Stream end statuses.
const (
	StatusUnknown Status = iota
	StatusComplete
	StatusError
	StatusAborted
)

func (s Status) String() string {
	switch s {
	case StatusComplete:
		return "complete"
	case StatusError:
		return "error"
	case StatusAborted:
		return "aborted"
	}
	return "unknown"
}

// Header is carried by every event.
type Header struct {
	StreamID  string // the quote id: server-generated UUIDv7
	RequestID string // the Lambda request id of the invocation
	Seq       uint32 // per stream: start is 0, then +1 per event
	TimeNs    int64  // the client's wall clock, Unix ns: never the time of receipt
}

// Start opens a stream.
type Start struct {
	Expected    int64  // expected payload chunks; -1 if unknown
	TraceParent string // W3C traceparent, optional
	// CallerParent: TraceParent is the caller's span (the function took
	// it from the request and made no span of its own), so the stream's
	// span is the invocation's server span; otherwise it is the function's
	// own span, which the stream's goes inside. Optional key tpr=1.
	CallerParent bool
	BundleID     string // optional property
	ClientID     string // optional property
}

// Chunk records one write to the response stream.
type Chunk struct {
	Instrument string
	Bytes      int64
	Flags      Flags
}

// End closes a stream.
type End struct {
	Delivered int64 // payload chunks written successfully
	Expected  int64 // -1 if unknown
	Bytes     int64 // payload bytes written successfully
	SHA256    [32]byte
	HasSHA256 bool
	// Declared is the hash the function announced (e.g. in BUNDLE_COMPLETE); when
	// present and different from SHA256 the extension reports IntegrityMismatch.
	Declared    [32]byte
	HasDeclared bool
	Status      Status
	Dropped     int64 // events the client could not send before this one
	// Blocked is the time the writer spent blocked writing the stream's
	// chunks (backpressure: a slow caller), in µs, and BlockedMax the
	// longest single block; HasBlocked says the client measured them.
	BlockedUs    int64
	BlockedMaxUs int64
	HasBlocked   bool
}

// Event is one decoded line. Only the part matching Kind is meaningful.
type Event struct {
	Kind Kind
	Header
	Start Start
	Chunk Chunk
	End   End
}

// Decoding errors. Every rejected line maps to one of these so the extension can
// count rejections by reason.
var (
	ErrOversized = errors.New("datagram larger than MaxDatagram")
	ErrVersion   = errors.New("unknown version marker")
	ErrKind      = errors.New("unknown event kind")
	ErrHeader    = errors.New("malformed header")
	ErrField     = errors.New("malformed field")
	ErrMissing   = errors.New("required field missing")
	ErrRange     = errors.New("value out of range")
)

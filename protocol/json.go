package protocol

import "encoding/hex"

// JSON is an event in the field names of testdata/vectors.json, for tools and
// other languages' tests (the extension's decode mode prints it).
type JSON struct {
	Kind        string `json:"kind"`
	StreamID    string `json:"streamId"`
	RequestID   string `json:"requestId"`
	Seq         uint32 `json:"seq"`
	TimeNs      int64  `json:"timeNs,string"`
	Expected    *int64 `json:"expected,omitempty"`
	TraceParent string `json:"traceparent,omitempty"`
	// CallerParent: the traceparent is the caller's (tpr=1).
	CallerParent bool   `json:"callerParent,omitempty"`
	BundleID     string `json:"bundleId,omitempty"`
	ClientID     string `json:"clientId,omitempty"`
	Instrument   string `json:"instrument,omitempty"`
	Bytes        *int64 `json:"bytes,omitempty"`
	Flags        string `json:"flags,omitempty"`
	Delivered    *int64 `json:"delivered,omitempty"`
	SHA256       string `json:"sha256,omitempty"`
	Declared     string `json:"declared,omitempty"`
	Status       string `json:"status,omitempty"`
	Dropped      *int64 `json:"dropped,omitempty"`
}

// ToJSON converts a decoded event.
func (e *Event) ToJSON() JSON {
	j := JSON{Kind: e.Kind.String(), StreamID: e.StreamID, RequestID: e.RequestID, Seq: e.Seq, TimeNs: e.TimeNs}
	p := func(v int64) *int64 { return &v }
	switch e.Kind {
	case KindStart:
		j.Expected, j.TraceParent, j.BundleID, j.ClientID = p(e.Start.Expected), e.Start.TraceParent, e.Start.BundleID, e.Start.ClientID
		j.CallerParent = e.Start.CallerParent
	case KindChunk:
		j.Instrument, j.Bytes = e.Chunk.Instrument, p(e.Chunk.Bytes)
		for _, f := range []struct {
			bit Flags
			c   string
		}{{FlagFirstUseful, "u"}, {FlagError, "e"}, {FlagTrailer, "t"}} {
			if e.Chunk.Flags&f.bit != 0 {
				j.Flags += f.c
			}
		}
	case KindEnd:
		j.Delivered, j.Expected, j.Bytes, j.Status, j.Dropped = p(e.End.Delivered), p(e.End.Expected), p(e.End.Bytes), e.End.Status.String(), p(e.End.Dropped)
		if e.End.HasSHA256 {
			j.SHA256 = hex.EncodeToString(e.End.SHA256[:])
		}
		if e.End.HasDeclared {
			j.Declared = hex.EncodeToString(e.End.Declared[:])
		}
	}
	return j
}

package otlpsink

import (
	"encoding/binary"
	"math"
	"strings"
	"unicode/utf8"
)

// pb is a minimal protobuf writer for the few OTLP messages the extension
// sends (ExportTraceServiceRequest and what it holds). It replaces the OTel
// SDK and otlptracehttp, whose protobuf and gRPC dependencies doubled the
// extension's binary and added ~6 MB of resident memory, and whose
// span limits and sampler read the function's OTEL_* variables with
// meanings meant for the function's own spans. The field numbers are those
// of opentelemetry-proto's trace/v1/trace.proto, common/v1/common.proto
// and resource/v1/resource.proto; the tests decode the output with the
// official generated types and with the collector's pdata.
type pb []byte

func (b pb) tag(field, wire int) pb { return b.varint(uint64(field<<3 | wire)) }

func (b pb) varint(v uint64) pb { return binary.AppendUvarint(b, v) }

func (b pb) bytesField(field int, v []byte) pb {
	return append(b.tag(field, 2).varint(uint64(len(v))), v...)
}

// str writes a string field, made valid UTF-8: protobuf strings must be, and
// a strict decoder rejects the whole request (every span in it) for one
// invalid byte that came from the wire.
func (b pb) str(field int, s string) pb {
	if s == "" {
		return b
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return append(b.tag(field, 2).varint(uint64(len(s))), s...)
}

func (b pb) fixed64(field int, v uint64) pb {
	return binary.LittleEndian.AppendUint64(b.tag(field, 1), v)
}

func (b pb) fixed32(field int, v uint32) pb {
	return binary.LittleEndian.AppendUint32(b.tag(field, 5), v)
}

func (b pb) uint(field int, v uint64) pb {
	if v == 0 {
		return b
	}
	return b.tag(field, 0).varint(v)
}

// msg appends a length-delimited sub-message that fill appends in place; the
// length is inserted in front afterwards (one memmove, no buffer per level).
func (b pb) msg(field int, fill func(pb) pb) pb {
	b = b.tag(field, 2)
	start := len(b)
	b = fill(b)
	n := len(b) - start
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	b = append(b, l[:k]...)
	copy(b[start+k:], b[start:start+n])
	copy(b[start:], l[:k])
	return b
}

// KeyValue attributes (common.proto: KeyValue{key=1, value=2},
// AnyValue{string_value=1, bool_value=2, int_value=3, double_value=4}).

func (b pb) attrStr(field int, k, v string) pb {
	return b.msg(field, func(m pb) pb {
		return m.str(1, k).msg(2, func(a pb) pb {
			if v == "" {
				// An empty string_value is still a string: written, not omitted.
				return a.tag(1, 2).varint(0)
			}
			return a.str(1, v)
		})
	})
}

func (b pb) attrInt(field int, k string, v int64) pb {
	return b.msg(field, func(m pb) pb {
		return m.str(1, k).msg(2, func(a pb) pb { return a.tag(3, 0).varint(uint64(v)) })
	})
}

func (b pb) attrBool(field int, k string, v bool) pb {
	n := uint64(0)
	if v {
		n = 1
	}
	return b.msg(field, func(m pb) pb {
		return m.str(1, k).msg(2, func(a pb) pb { return a.tag(2, 0).varint(n) })
	})
}

func (b pb) attrFloat(field int, k string, v float64) pb {
	return b.msg(field, func(m pb) pb {
		return m.str(1, k).msg(2, func(a pb) pb { return a.fixed64(4, math.Float64bits(v)) })
	})
}

package otlpsink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// otlpExporter is an OTLP/HTTP span exporter (protobuf
// ExportTraceServiceRequest POSTed to <endpoint>/v1/traces) for the OTel SDK.
// It replaces otlptracehttp, whose protobuf and gRPC dependencies doubled the
// extension's binary (14.5 → 7.9 MB) and added ~6 MB of resident memory at
// start; the field numbers below are those of opentelemetry-proto's
// trace/v1/trace.proto and common/v1/common.proto.
type otlpExporter struct {
	url    string
	client *http.Client
	buf    pb // reused: the SDK never calls ExportSpans concurrently
}

func newOTLPExporter(url string) *otlpExporter {
	// No timeout of its own and no retries: the caller's context is the
	// budget (paused over freezes), and a failed export is counted and
	// dropped.
	return &otlpExporter{url: url, client: &http.Client{}}
}

// ExportSpans sends spans in one request bounded by ctx.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.buf = encodeTraces(e.buf[:0], spans)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(e.buf))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("otlp: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otlp: %s answered %d", e.url, resp.StatusCode)
	}
	return nil
}

// pb is a minimal protobuf writer.
type pb []byte

func (b pb) tag(field, wire int) pb { return b.varint(uint64(field<<3 | wire)) }

func (b pb) varint(v uint64) pb { return binary.AppendUvarint(b, v) }

func (b pb) bytesField(field int, v []byte) pb {
	return append(b.tag(field, 2).varint(uint64(len(v))), v...)
}

func (b pb) str(field int, s string) pb {
	if s == "" {
		return b
	}
	return append(b.tag(field, 2).varint(uint64(len(s))), s...)
}

func (b pb) fixed64(field int, v uint64) pb {
	return binary.LittleEndian.AppendUint64(b.tag(field, 1), v)
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

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// anyValue encodes an AnyValue.
func anyValue(b pb, v attribute.Value) pb {
	switch v.Type() {
	case attribute.BOOL:
		if v.AsBool() {
			return b.tag(2, 0).varint(1)
		}
		return b.tag(2, 0).varint(0)
	case attribute.INT64:
		return b.tag(3, 0).varint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return binary.LittleEndian.AppendUint64(b.tag(4, 1), math.Float64bits(v.AsFloat64()))
	default:
		s := v.String()
		return append(b.tag(1, 2).varint(uint64(len(s))), s...)
	}
}

func keyValues(b pb, field int, kvs []attribute.KeyValue) pb {
	for _, kv := range kvs {
		b = b.msg(field, func(m pb) pb {
			return m.str(1, string(kv.Key)).msg(2, func(v pb) pb { return anyValue(v, kv.Value) })
		})
	}
	return b
}

func encodeSpan(b pb, s sdktrace.ReadOnlySpan) pb {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = b.bytesField(1, tid[:]).bytesField(2, sid[:]).str(3, sc.TraceState().String())
	if p := s.Parent(); p.IsValid() {
		psid := p.SpanID()
		b = b.bytesField(4, psid[:])
	}
	b = b.str(5, s.Name()).uint(6, uint64(otlpKind(s.SpanKind())))
	b = b.fixed64(7, unixNano(s.StartTime())).fixed64(8, unixNano(s.EndTime()))
	b = keyValues(b, 9, s.Attributes()).uint(10, uint64(s.DroppedAttributes()))
	for _, ev := range s.Events() {
		b = b.msg(11, func(m pb) pb {
			m = m.fixed64(1, unixNano(ev.Time)).str(2, ev.Name)
			return keyValues(m, 3, ev.Attributes).uint(4, uint64(ev.DroppedAttributeCount))
		})
	}
	b = b.uint(12, uint64(s.DroppedEvents()))
	if st := s.Status(); st.Code != codes.Unset {
		b = b.msg(15, func(m pb) pb {
			code := uint64(1) // STATUS_CODE_OK
			if st.Code == codes.Error {
				code = 2
			}
			return m.str(2, st.Description).uint(3, code)
		})
	}
	return b
}

// otlpKind maps the API's span kinds to OTLP's (INTERNAL = 1 … CONSUMER = 5).
func otlpKind(k trace.SpanKind) int {
	switch k {
	case trace.SpanKindServer:
		return 2
	case trace.SpanKindClient:
		return 3
	case trace.SpanKindProducer:
		return 4
	case trace.SpanKindConsumer:
		return 5
	}
	return 1
}

// encodeTraces builds an ExportTraceServiceRequest: one ResourceSpans per
// resource, one ScopeSpans per instrumentation scope, in span order.
func encodeTraces(out pb, spans []sdktrace.ReadOnlySpan) pb {
	for i := 0; i < len(spans); {
		res, scope := spans[i].Resource(), spans[i].InstrumentationScope()
		j := i
		for j < len(spans) && spans[j].Resource() == res && spans[j].InstrumentationScope() == scope {
			j++
		}
		group := spans[i:j]
		out = out.msg(1, func(rs pb) pb {
			rs = rs.msg(1, func(r pb) pb { return keyValues(r, 1, res.Attributes()) })
			rs = rs.msg(2, func(ss pb) pb {
				ss = ss.msg(1, func(sc pb) pb { return sc.str(1, scope.Name).str(2, scope.Version) })
				for _, s := range group {
					ss = ss.msg(2, func(m pb) pb { return encodeSpan(m, s) })
				}
				return ss.str(3, scope.SchemaURL)
			})
			return rs.str(3, res.SchemaURL())
		})
		i = j
	}
	return out
}

// Package emf writes CloudWatch Embedded Metric Format documents.
//
// It enforces the specification's limits by splitting, not by truncating: a
// metric with more than MaxValuesPerMetric values, or a document with more than
// MaxMetricsPerDirective metrics, becomes several documents that repeat the
// dimensions and properties, so CloudWatch extracts every value.
package emf

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits from the EMF specification.
const (
	MaxMetricsPerDirective = 100
	MaxValuesPerMetric     = 100
	MaxDimensionsPerSet    = 30
	MaxNameLen             = 255 // namespace and metric names
	MaxDimensionValueLen   = 1024
	// MaxDocumentBytes is the CloudWatch Logs event size that has applied to EMF
	// for years (256 KB); newer accounts accept more, but this one is safe
	// everywhere.
	MaxDocumentBytes = 256 * 1024
)

// Unit is a CloudWatch metric unit.
type Unit string

// The units streamlens uses; all are in CloudWatch's list of standard units.
const (
	Milliseconds Unit = "Milliseconds"
	Count        Unit = "Count"
	Bytes        Unit = "Bytes"
	Megabytes    Unit = "Megabytes"
	None         Unit = "None"
	// BytesPerSecond is a rate.
	BytesPerSecond Unit = "Bytes/Second"
)

var validUnits = map[Unit]bool{
	"Seconds": true, "Microseconds": true, Milliseconds: true, Bytes: true, "Kilobytes": true, Megabytes: true,
	"Gigabytes": true, "Terabytes": true, "Bits": true, "Kilobits": true, "Megabits": true, "Gigabits": true,
	"Terabits": true, "Percent": true, Count: true, BytesPerSecond: true, "Kilobytes/Second": true,
	"Megabytes/Second": true, "Gigabytes/Second": true, "Terabytes/Second": true, "Bits/Second": true,
	"Kilobits/Second": true, "Megabits/Second": true, "Gigabits/Second": true, "Terabits/Second": true,
	"Count/Second": true, None: true,
}

// Metric is one metric and its values for one document.
type Metric struct {
	Name   string
	Unit   Unit
	Values []float64
}

// Property is a root member: a dimension value or a searchable property.
// Value is a string, bool, or any integer or float type.
type Property struct {
	Key   string
	Value any
}

// Document is one logical EMF document; Append may write it as several lines.
type Document struct {
	Namespace  string
	Timestamp  time.Time
	Dimensions [][]string // dimension sets; each key must be a string Property
	Properties []Property
	Metrics    []Metric
}

// Errors returned for documents that break the specification.
var (
	ErrInvalid  = errors.New("emf: invalid document")
	ErrTooLarge = errors.New("emf: document larger than MaxDocumentBytes")
	// ErrValueRange is a ValueRangeError: values CloudWatch would reject
	// were left out, and the rest of the document was written.
	ErrValueRange = errors.New("emf: metric values outside CloudWatch's range left out")
)

// CloudWatch's range for a metric value (the PutMetricData reference,
// MetricDatum.Value): zero, or a magnitude from MinMagnitude to
// MaxMagnitude; NaN and ±Inf are not supported. A value outside it is
// rejected by CloudWatch, not clamped, and with it what the log event
// carries: Append leaves such a value out instead.
const (
	MinMagnitude = 8.515920e-109
	MaxMagnitude = 1.174271e+108
)

// ValidValue reports whether CloudWatch accepts v as a metric value.
func ValidValue(v float64) bool {
	a := math.Abs(v)
	return v == 0 || (a >= MinMagnitude && a <= MaxMagnitude) // false for NaN, and ±Inf is past MaxMagnitude
}

// ValueRangeError is the error of a document written without the values
// CloudWatch would reject: how many were left out, and of which metrics.
// errors.Is(err, ErrValueRange) holds.
type ValueRangeError struct {
	Dropped int
	Metrics []string
}

func (e *ValueRangeError) Error() string {
	return fmt.Sprintf("%v: %d values of %q (CloudWatch takes 0 and magnitudes from %g to %g, no NaN or Inf)",
		ErrValueRange, e.Dropped, e.Metrics, MinMagnitude, MaxMagnitude)
}

// Is makes errors.Is(err, ErrValueRange) hold.
func (e *ValueRangeError) Is(target error) bool { return target == ErrValueRange }

// minRoom is the room Append wants free in dst before it starts.
const minRoom = 256

// estimate is about the size of d's JSON: its names, values and the fixed
// parts around them.
func estimate(d *Document) int {
	n := 128 + len(d.Namespace)
	for _, set := range d.Dimensions {
		for _, k := range set {
			n += len(k) + 4
		}
	}
	for _, p := range d.Properties {
		n += len(p.Key) + 24
		if s, ok := p.Value.(string); ok {
			n += len(s)
		}
	}
	for _, m := range d.Metrics {
		n += 2*len(m.Name) + len(m.Unit) + 24 + 12*len(m.Values)
	}
	return n
}

// Append validates d and appends it to dst as one or more newline-terminated
// JSON documents. On error dst is returned unchanged, but for a
// *ValueRangeError (ErrValueRange): then the values CloudWatch would reject
// are left out of their metric (a metric left with none is left out) and
// the rest is written; the caller counts what the error says was dropped.
func Append(dst []byte, d *Document) ([]byte, error) {
	if err := validate(d); err != nil {
		return dst, err
	}
	var rangeErr error
	if dd, re := inRange(d); re != nil {
		d, rangeErr = dd, re
	}
	start := len(dst)
	if cap(dst)-len(dst) < minRoom {
		// One allocation of about a document's size, not a series of
		// doublings from nothing, for a caller that does not reuse dst;
		// and at least double, so that a caller appending document after
		// document does not copy what it has again for each one.
		dst = append(make([]byte, 0, max(len(dst)+minRoom+estimate(d), 2*cap(dst))), dst...)
	}
	metrics := d.Metrics
	for len(metrics) > 0 {
		// A group is up to MaxMetricsPerDirective metrics that have values;
		// metrics without values are skipped (an empty array is not a value).
		n, end := 0, 0
		for end < len(metrics) && n < MaxMetricsPerDirective {
			if len(metrics[end].Values) > 0 {
				n++
			}
			end++
		}
		group := metrics[:end]
		metrics = metrics[end:]
		most := 0
		for _, m := range group {
			most = max(most, len(m.Values))
		}
		for off := 0; off < most; off += MaxValuesPerMetric {
			line := len(dst)
			dst = appendDoc(dst, d, group, off)
			if len(dst)-line > MaxDocumentBytes {
				return dst[:start], fmt.Errorf("%w: %d bytes", ErrTooLarge, len(dst)-line)
			}
		}
	}
	return dst, rangeErr
}

// inRange returns d, or when some of its values are outside CloudWatch's
// range a copy of d without them and the error that says so. The values
// are checked in place: the copy is made only when one is refused.
func inRange(d *Document) (*Document, *ValueRangeError) {
	var re *ValueRangeError
	var metrics []Metric
	for i, m := range d.Metrics {
		bad := 0
		for _, v := range m.Values {
			if !ValidValue(v) {
				bad++
			}
		}
		if bad == 0 {
			continue
		}
		if re == nil {
			re = &ValueRangeError{}
			metrics = append([]Metric(nil), d.Metrics...)
		}
		re.Dropped += bad
		re.Metrics = append(re.Metrics, m.Name)
		kept := make([]float64, 0, len(m.Values)-bad)
		for _, v := range m.Values {
			if ValidValue(v) {
				kept = append(kept, v)
			}
		}
		metrics[i].Values = kept
	}
	if re == nil {
		return d, nil
	}
	dd := *d
	dd.Metrics = metrics
	return &dd, re
}

func validate(d *Document) error {
	if n := len(d.Namespace); n == 0 || n > MaxNameLen || !utf8.ValidString(d.Namespace) {
		return fmt.Errorf("%w: namespace %q", ErrInvalid, d.Namespace)
	}
	// Root member names must be unique. Documents are small (tens of members),
	// so pairwise comparison beats building a map on every flush.
	for i, p := range d.Properties {
		if p.Key == "" || p.Key == "_aws" {
			return fmt.Errorf("%w: property key %q", ErrInvalid, p.Key)
		}
		for _, q := range d.Properties[:i] {
			if q.Key == p.Key {
				return fmt.Errorf("%w: duplicate member %q", ErrInvalid, p.Key)
			}
		}
	}
	for _, set := range d.Dimensions {
		if len(set) == 0 || len(set) > MaxDimensionsPerSet {
			return fmt.Errorf("%w: dimension set of %d keys", ErrInvalid, len(set))
		}
		for _, k := range set {
			pv, _ := d.property(k)
			v, ok := pv.(string)
			if !ok || v == "" || len(v) > MaxDimensionValueLen {
				return fmt.Errorf("%w: dimension %q needs a string value of 1..%d bytes", ErrInvalid, k, MaxDimensionValueLen)
			}
		}
	}
	for i, m := range d.Metrics {
		if n := len(m.Name); n == 0 || n > MaxNameLen || !utf8.ValidString(m.Name) {
			return fmt.Errorf("%w: metric name %q", ErrInvalid, m.Name)
		}
		if _, clash := d.property(m.Name); clash {
			return fmt.Errorf("%w: metric %q collides with a property", ErrInvalid, m.Name)
		}
		for _, o := range d.Metrics[:i] {
			if o.Name == m.Name {
				return fmt.Errorf("%w: duplicate metric %q", ErrInvalid, m.Name)
			}
		}
		if m.Unit != "" && !validUnits[m.Unit] {
			return fmt.Errorf("%w: metric %q unit %q", ErrInvalid, m.Name, m.Unit)
		}
		// Values outside CloudWatch's range are not the document's fault:
		// Append leaves them out (inRange).
	}
	return nil
}

// property returns the value of root member k and whether there is one.
func (d *Document) property(k string) (any, bool) {
	for _, p := range d.Properties {
		if p.Key == k {
			return p.Value, true
		}
	}
	return nil, false
}

func appendDoc(dst []byte, d *Document, group []Metric, off int) []byte {
	dst = append(dst, `{"_aws":{"Timestamp":`...)
	dst = strconv.AppendInt(dst, d.Timestamp.UnixMilli(), 10)
	dst = append(dst, `,"CloudWatchMetrics":[{"Namespace":`...)
	dst = appendString(dst, d.Namespace)
	dst = append(dst, `,"Dimensions":[`...)
	for i, set := range d.Dimensions {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		for j, k := range set {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `],"Metrics":[`...)
	first := true
	for _, m := range group {
		if off >= len(m.Values) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"Name":`...)
		dst = appendString(dst, m.Name)
		if m.Unit != "" {
			dst = append(dst, `,"Unit":`...)
			dst = appendString(dst, string(m.Unit))
		}
		dst = append(dst, '}')
	}
	dst = append(dst, "]}]}"...)
	for _, p := range d.Properties {
		dst = append(dst, ',')
		dst = appendString(dst, p.Key)
		dst = append(dst, ':')
		dst = appendValue(dst, p.Value)
	}
	for _, m := range group {
		if off >= len(m.Values) {
			continue
		}
		vals := m.Values[off:min(len(m.Values), off+MaxValuesPerMetric)]
		dst = append(dst, ',')
		dst = appendString(dst, m.Name)
		dst = append(dst, ':')
		if len(vals) == 1 {
			dst = appendFloat(dst, vals[0])
			continue
		}
		dst = append(dst, '[')
		for i, v := range vals {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, "}\n"...)
}

func appendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		return appendString(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return append(dst, "null"...)
		}
		return appendFloat(dst, v)
	case nil:
		return append(dst, "null"...)
	}
	return appendString(dst, fmt.Sprint(v))
}

// Most values are milliseconds with at most three decimals (the extension
// rounds per-chunk values to three significant digits), and strconv's
// shortest-representation search was most of the encoder's time on them.
// Such a value is written from its integer thousandths, with the same
// bytes strconv gives: below 1e9 two numbers of at most three decimals are
// never the same float64, so the shortest decimal that reads back as v is
// the one with the trailing zeros of n/1000 trimmed.
func appendFloat(dst []byte, v float64) []byte {
	if n := math.Round(v * 1000); math.Abs(v) < 1e9 && n/1000 == v && v != 0 {
		i := int64(n)
		if i < 0 {
			dst = append(dst, '-')
			i = -i
		}
		dst = strconv.AppendInt(dst, i/1000, 10)
		if frac := i % 1000; frac != 0 {
			digits := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
			end := 4
			for digits[end-1] == '0' {
				end--
			}
			dst = append(dst, digits[:end]...)
		}
		return dst
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// appendString writes a JSON string. Invalid UTF-8 becomes U+FFFD so a hostile
// instrument name can never produce a line CloudWatch rejects as non-JSON.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

package emf

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// MaxDimensionValue is CloudWatch's limit on a dimension value's length.
const MaxDimensionValue = 1024

// DimensionValue returns v as CloudWatch accepts it as a dimension value, and
// whether it had to change it. CloudWatch is stricter than the EMF
// specification, and drops the metrics of a document whose dimension value
// is not ASCII, holds control characters, is whitespace only or longer than
// 1,024 characters, without a word. The change is visible and keeps distinct
// inputs distinct: bytes outside printable ASCII, and '%' itself, become %XX
// (a value of spaces only has them escaped too), and a value still too long
// is cut and ends in '~' and a hash of the whole.
func DimensionValue(v string) (string, bool) {
	if ValidDimensionValue(v) && !strings.Contains(v, "%") {
		return v, false
	}
	if v == "" {
		return "%00", true // nothing is not a value; an escaped NUL stands for it
	}
	blank := strings.TrimSpace(v) == ""
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= 0x7f || c == '%' || (blank && c == ' ') {
			b.WriteByte('%')
			b.WriteString(strconv.FormatUint(uint64(c)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(c)&0xf, 16))
			continue
		}
		b.WriteByte(c)
	}
	out := b.String()
	if len(out) > MaxDimensionValue {
		h := fnv.New32a()
		h.Write([]byte(v))
		sum := strconv.FormatUint(uint64(h.Sum32()), 16)
		out = out[:MaxDimensionValue-1-len(sum)] + "~" + sum
	}
	return out, out != v
}

// ValidDimensionValue reports whether CloudWatch accepts v as a dimension
// value: 1 to 1,024 characters of printable ASCII (space included), not only
// whitespace.
func ValidDimensionValue(v string) bool {
	if len(v) == 0 || len(v) > MaxDimensionValue || strings.TrimSpace(v) == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] >= 0x7f {
			return false
		}
	}
	return true
}

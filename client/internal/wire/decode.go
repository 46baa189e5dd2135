package wire

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
)

// Decode splits a datagram into lines and decodes each. It calls ok for every
// well-formed event and bad for every rejected line (or once, for an oversized
// datagram, which is rejected whole). It never panics, whatever the input: a
// line is either an event or a counted error, and a bad line never affects the
// lines around it.
func Decode(datagram []byte, ok func(*Event), bad func(error)) {
	var d *Decoder
	d.Decode(datagram, ok, bad)
}

// Decoder decodes like Decode, and keeps the strings it decoded last: a
// stream's events repeat its ids and a bundle repeats its instrument names,
// so a receiver that decodes many events gets the same string back instead
// of a new allocation for each. The zero Decoder is ready; a nil one keeps
// nothing. It is not safe for concurrent use.
type Decoder struct {
	ev    Event             // the event handed to ok, reused
	ids   [4]string         // ids decoded last, most recent first
	names map[string]string // other values (instrument names, bundle ids), bounded
}

// event is the Event to decode into: the Decoder's own, or a new one.
func (d *Decoder) event() *Event {
	if d == nil {
		return new(Event)
	}
	return &d.ev
}

// maxDecoderNames bounds the values a Decoder keeps; past it they are simply
// not shared (made-up names must not grow it).
const maxDecoderNames = 4096

// Decode is the package's Decode, sharing strings it decoded before. The
// event handed to ok is the Decoder's own, overwritten by the next line: ok
// must copy what it keeps.
func (d *Decoder) Decode(datagram []byte, ok func(*Event), bad func(error)) {
	if len(datagram) > MaxDatagram {
		bad(ErrOversized)
		return
	}
	ev := d.event()
	for len(datagram) > 0 {
		line := datagram
		if i := bytes.IndexByte(datagram, '\n'); i >= 0 {
			line, datagram = datagram[:i], datagram[i+1:]
		} else {
			datagram = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			continue // blank lines (e.g. a trailing newline) are not events
		}
		if err := d.decodeLine(line, ev); err != nil {
			bad(err)
			continue
		}
		ok(ev)
	}
}

// DecodeLine decodes one line (without its newline) into ev.
func DecodeLine(line []byte, ev *Event) error {
	var d *Decoder
	return d.decodeLine(line, ev)
}

func (d *Decoder) decodeLine(line []byte, ev *Event) error {
	*ev = Event{}
	var f [6][]byte
	n, rest := 0, line
	for n < len(f) && rest != nil {
		if sp := bytes.IndexByte(rest, ' '); sp >= 0 || n == len(f)-1 {
			if sp < 0 {
				f[n], rest = rest, nil
			} else {
				f[n], rest = rest[:sp], rest[sp+1:]
			}
		} else {
			f[n], rest = rest, nil
		}
		n++
	}
	if string(f[0]) != Version {
		return ErrVersion
	}
	if n < len(f) {
		return ErrHeader
	}
	switch string(f[1]) {
	case "start":
		ev.Kind = KindStart
		ev.Start.Expected = -1
	case "chunk":
		ev.Kind = KindChunk
	case "end":
		ev.Kind = KindEnd
		ev.End.Expected = -1
	default:
		return ErrKind
	}
	var err error
	if ev.StreamID, err = d.id(f[2]); err != nil || ev.StreamID == "" {
		return fmt.Errorf("%w: stream id", ErrHeader)
	}
	if ev.RequestID, err = d.id(f[3]); err != nil || ev.RequestID == "" {
		return fmt.Errorf("%w: request id", ErrHeader)
	}
	seq, err := parseUint(f[4], 32)
	if err != nil {
		return fmt.Errorf("%w: seq", ErrHeader)
	}
	ev.Seq = uint32(seq)
	ts, err := parseInt(f[5])
	if err != nil {
		return fmt.Errorf("%w: time", ErrHeader)
	}
	if ts < MinTimeNs || ts > MaxTimeNs {
		return fmt.Errorf("%w: time %d", ErrRange, ts)
	}
	ev.TimeNs = ts

	seen := 0
	var haveBytes, haveDelivered, haveStatus bool
	for len(rest) > 0 {
		var field []byte
		if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
			field, rest = rest[:sp], rest[sp+1:]
		} else {
			field, rest = rest, nil
		}
		if len(field) == 0 {
			return fmt.Errorf("%w: empty field", ErrField)
		}
		if seen++; seen > maxFieldsInEvt {
			return fmt.Errorf("%w: too many fields", ErrField)
		}
		eq := bytes.IndexByte(field, '=')
		if eq <= 0 || eq > MaxKeyLen {
			return fmt.Errorf("%w: no key", ErrField)
		}
		key, val := field[:eq], field[eq+1:]
		var err error
		switch ev.Kind {
		case KindStart:
			switch string(key) {
			case "exp":
				ev.Start.Expected, err = parseCount(val, MaxCount)
			case "tp":
				ev.Start.TraceParent, err = unescape(val, MaxValueLen)
			case "tpr":
				ev.Start.CallerParent, err = parseFlag(val)
			case "bundle":
				ev.Start.BundleID, err = d.value(val)
			case "client":
				ev.Start.ClientID, err = unescape(val, MaxValueLen)
			}
		case KindChunk:
			switch string(key) {
			case "inst":
				ev.Chunk.Instrument, err = d.value(val)
			case "bytes":
				ev.Chunk.Bytes, err = parseCount(val, MaxBytes)
				haveBytes = true
			case "flags":
				ev.Chunk.Flags, err = parseFlags(val)
			}
		case KindEnd:
			switch string(key) {
			case "delivered":
				ev.End.Delivered, err = parseCount(val, MaxCount)
				haveDelivered = true
			case "exp":
				ev.End.Expected, err = parseCount(val, MaxCount)
			case "bytes":
				ev.End.Bytes, err = parseCount(val, MaxBytes)
			case "sha256":
				err = parseSHA(val, &ev.End.SHA256)
				ev.End.HasSHA256 = err == nil
			case "declared":
				err = parseSHA(val, &ev.End.Declared)
				ev.End.HasDeclared = err == nil
			case "status":
				ev.End.Status, err = parseStatus(val)
				haveStatus = true
			case "dropped":
				ev.End.Dropped, err = parseCount(val, MaxCount)
			case "blocked_us":
				ev.End.BlockedUs, err = parseCount(val, MaxBlockedUs)
				ev.End.HasBlocked = err == nil
			case "blocked_max_us":
				ev.End.BlockedMaxUs, err = parseCount(val, MaxBlockedUs)
			}
		}
		// Unknown keys are ignored: a newer client may add fields to sl1 that
		// an older extension does not need to understand.
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrField, string(key), err)
		}
	}
	switch {
	case ev.Kind == KindChunk && !haveBytes:
		return fmt.Errorf("%w: chunk bytes", ErrMissing)
	case ev.Kind == KindEnd && !(haveDelivered && haveStatus):
		return fmt.Errorf("%w: end delivered/status", ErrMissing)
	}
	return nil
}

// parseInt is strconv.ParseInt(string(v), 10, 64) without the string (and
// its allocation) for plain digits, the only form encoders write.
func parseInt(v []byte) (int64, error) {
	if n, ok := digits(v); ok && n <= math.MaxInt64 {
		return int64(n), nil
	}
	return strconv.ParseInt(string(v), 10, 64)
}

// parseUint is strconv.ParseUint(string(v), 10, bits), likewise.
func parseUint(v []byte, bits int) (uint64, error) {
	if n, ok := digits(v); ok && n < 1<<bits {
		return n, nil
	}
	return strconv.ParseUint(string(v), 10, bits)
}

// digits reads 1 to 19 decimal digits (no sign), which cannot overflow a
// uint64 (a nanosecond timestamp has 19).
func digits(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func parseCount(v []byte, max int64) (int64, error) {
	n, err := parseInt(v)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > max {
		return 0, ErrRange
	}
	return n, nil
}

func parseFlags(v []byte) (Flags, error) {
	var f Flags
	for _, c := range v {
		switch c {
		case 'u':
			f |= FlagFirstUseful
		case 'e':
			f |= FlagError
		case 't':
			f |= FlagTrailer
		default:
			return 0, fmt.Errorf("unknown flag %q", c)
		}
	}
	return f, nil
}

func parseStatus(v []byte) (Status, error) {
	switch string(v) {
	case "complete":
		return StatusComplete, nil
	case "error":
		return StatusError, nil
	case "aborted":
		return StatusAborted, nil
	}
	return StatusUnknown, fmt.Errorf("unknown status %q", v)
}

func parseSHA(v []byte, dst *[32]byte) error {
	if len(v) != SHA256HexLen {
		return ErrRange
	}
	_, err := hex.Decode(dst[:], v)
	return err
}

// unescape reverses appendEscaped. It rejects raw bytes that appendEscaped would
// have escaped, so a value always has one spelling on the wire.
// id is unescape for an id, returning a recently decoded id's string when
// the bytes are the same.
func (d *Decoder) id(v []byte) (string, error) {
	if d == nil {
		return unescape(v, MaxIDLen)
	}
	for _, s := range d.ids {
		if s == string(v) && s != "" { // ids never need escaping, so the bytes are the string
			return s, nil
		}
	}
	s, err := unescape(v, MaxIDLen)
	if err == nil && s == string(v) {
		copy(d.ids[1:], d.ids[:len(d.ids)-1])
		d.ids[0] = s
	}
	return s, err
}

// value is unescape for a value, sharing the string of one decoded before.
func (d *Decoder) value(v []byte) (string, error) {
	if d == nil {
		return unescape(v, MaxValueLen)
	}
	if s, ok := d.names[string(v)]; ok {
		return s, nil
	}
	s, err := unescape(v, MaxValueLen)
	if err == nil && s == string(v) && len(d.names) < maxDecoderNames {
		if d.names == nil {
			d.names = make(map[string]string)
		}
		d.names[s] = s
	}
	return s, err
}

func unescape(v []byte, max int) (string, error) {
	if bytes.IndexByte(v, '%') < 0 {
		if len(v) > max {
			return "", ErrRange
		}
		for _, c := range v {
			if c <= ' ' || c >= 0x7f {
				return "", fmt.Errorf("raw byte %#x", c)
			}
		}
		return string(v), nil
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '%':
			if i+2 >= len(v) {
				return "", fmt.Errorf("short escape")
			}
			hi, lo := unhex(v[i+1]), unhex(v[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("bad escape")
			}
			out = append(out, byte(hi<<4|lo))
			i += 2
		case c <= ' ' || c >= 0x7f:
			return "", fmt.Errorf("raw byte %#x", c)
		default:
			out = append(out, c)
		}
		if len(out) > max {
			return "", ErrRange
		}
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// parseFlag reads a 0 or 1.
func parseFlag(v []byte) (bool, error) {
	switch string(v) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("%w: want 0 or 1", ErrField)
}

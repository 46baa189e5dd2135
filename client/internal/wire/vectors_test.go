package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// testdata/vectors.json is a copy of the main module's
// protocol/testdata/vectors.json (protocol/vectors_sync_test.go fails when
// the two differ): the events every streamlens client must write and the
// extension must read.
type vector struct {
	Line  string `json:"line"`
	Error string `json:"error"`
	Event struct {
		Kind        string `json:"kind"`
		StreamID    string `json:"streamId"`
		RequestID   string `json:"requestId"`
		Seq         uint32 `json:"seq"`
		TimeNs      int64  `json:"timeNs,string"`
		Expected    *int64 `json:"expected"`
		TraceParent string `json:"traceparent"`
		BundleID    string `json:"bundleId"`
		ClientID    string `json:"clientId"`
		Instrument  string `json:"instrument"`
		Bytes       int64  `json:"bytes"`
		Flags       string `json:"flags"`
		Delivered   int64  `json:"delivered"`
		SHA256      string `json:"sha256"`
		Declared    string `json:"declared"`
		Status      string `json:"status"`
		Dropped     int64  `json:"dropped"`
	} `json:"event"`
}

func loadVectors(t *testing.T) (valid, invalid []vector) {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Valid, Invalid []vector }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		t.Fatal("no vectors")
	}
	return v.Valid, v.Invalid
}

// event builds the vector's event from its JSON description, not from its
// line: what the encoder is given, as the client would give it.
func (v *vector) event(t *testing.T) Event {
	t.Helper()
	w := v.Event
	ev := Event{Header: Header{StreamID: w.StreamID, RequestID: w.RequestID, Seq: w.Seq, TimeNs: w.TimeNs}}
	expected := int64(-1)
	if w.Expected != nil {
		expected = *w.Expected
	}
	hash := func(s string) (sum [32]byte, ok bool) {
		if s == "" {
			return sum, false
		}
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("%q: bad hash %q", v.Line, s)
		}
		copy(sum[:], b)
		return sum, true
	}
	switch w.Kind {
	case "start":
		ev.Kind = KindStart
		ev.Start = Start{Expected: expected, TraceParent: w.TraceParent, BundleID: w.BundleID, ClientID: w.ClientID}
	case "chunk":
		ev.Kind = KindChunk
		ev.Chunk = Chunk{Instrument: w.Instrument, Bytes: w.Bytes}
		for _, c := range w.Flags {
			ev.Chunk.Flags |= map[rune]Flags{'u': FlagFirstUseful, 'e': FlagError, 't': FlagTrailer}[c]
		}
	case "end":
		ev.Kind = KindEnd
		ev.End = End{Delivered: w.Delivered, Expected: expected, Bytes: w.Bytes, Dropped: w.Dropped}
		ev.End.SHA256, ev.End.HasSHA256 = hash(w.SHA256)
		ev.End.Declared, ev.End.HasDeclared = hash(w.Declared)
		for _, s := range []Status{StatusComplete, StatusError, StatusAborted} {
			if s.String() == w.Status {
				ev.End.Status = s
			}
		}
	default:
		t.Fatalf("%q: unknown kind %q", v.Line, w.Kind)
	}
	return ev
}

func encode(ev *Event) []byte {
	switch ev.Kind {
	case KindStart:
		return AppendStart(nil, ev.Header, ev.Start)
	case KindChunk:
		return AppendChunk(nil, ev.Header, ev.Chunk)
	default:
		return AppendEnd(nil, ev.Header, ev.End)
	}
}

// encoderKeys are the keys the encoder writes. A vector line with another
// key (one a future client may send, which the extension must ignore) is
// not what this encoder writes; its event must still encode to a line that
// decodes the same.
var encoderKeys = map[string]bool{"exp": true, "tp": true, "bundle": true, "client": true, "inst": true, "bytes": true, "flags": true,
	"delivered": true, "sha256": true, "declared": true, "status": true, "dropped": true, "blocked_us": true, "blocked_max_us": true}

// The client's encoder writes every shared vector byte for byte.
func TestEncodeVectors(t *testing.T) {
	valid, _ := loadVectors(t)
	exact := 0
	for _, v := range valid {
		ev := v.event(t)
		got := encode(&ev)
		canonical := true
		for _, f := range strings.Fields(v.Line)[6:] {
			k, _, _ := strings.Cut(f, "=")
			canonical = canonical && encoderKeys[k]
		}
		if canonical {
			exact++
			if want := lowerEscapes(v.Line) + "\n"; string(got) != want {
				t.Errorf("encoded %q\n         want %q", got, want)
			}
		}
		// Either way, the encoded line and the vector's decode alike.
		var fromVector, fromEncoded Event
		if err := DecodeLine([]byte(v.Line), &fromVector); err != nil {
			t.Errorf("%q: %v", v.Line, err)
		}
		if err := DecodeLine(bytes.TrimSuffix(got, []byte("\n")), &fromEncoded); err != nil || fromEncoded != fromVector || fromEncoded != ev {
			t.Errorf("%q: encoded %q decodes to %+v (%v), want %+v", v.Line, got, fromEncoded, err, ev)
		}
		// The client writes chunks with a prefix computed once per stream.
		if ev.Kind == KindChunk {
			prefixed := AppendChunkPrefixed(nil, AppendChunkPrefix(nil, ev.StreamID, ev.RequestID), ev.Seq, ev.TimeNs, ev.Chunk)
			if !bytes.Equal(prefixed, got) {
				t.Errorf("AppendChunkPrefixed %q, AppendChunk %q", prefixed, got)
			}
		}
	}
	if exact < len(valid)-1 {
		t.Errorf("only %d of %d vectors are lines the encoder writes", exact, len(valid))
	}
}

// lowerEscapes lowers the hex digits of line's percent escapes: a vector
// may write %C3, which decodes as %c3 does, and the encoder writes %c3.
func lowerEscapes(line string) string {
	b := []byte(line)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			copy(b[i+1:i+3], strings.ToLower(string(b[i+1:i+3])))
		}
	}
	return string(b)
}

// The decoder the client's tests read datagrams with rejects what the
// extension rejects.
func TestDecodeInvalidVectors(t *testing.T) {
	_, invalid := loadVectors(t)
	byName := map[string]error{"version": ErrVersion, "kind": ErrKind, "header": ErrHeader, "field": ErrField, "missing": ErrMissing, "range": ErrRange}
	for _, v := range invalid {
		var ev Event
		want := byName[v.Error]
		if want == nil {
			t.Fatalf("vector names unknown error %q", v.Error)
		}
		if err := DecodeLine([]byte(v.Line), &ev); !errors.Is(err, want) {
			t.Errorf("%q: got %v, want %v", v.Line, err, want)
		}
	}
}

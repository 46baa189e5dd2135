package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"strings"
	"testing"
)

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

func flagString(f Flags) string {
	var s string
	if f&FlagFirstUseful != 0 {
		s += "u"
	}
	if f&FlagError != 0 {
		s += "e"
	}
	if f&FlagTrailer != 0 {
		s += "t"
	}
	return s
}

func hexOr(has bool, b [32]byte) string {
	if !has {
		return ""
	}
	return hex.EncodeToString(b[:])
}

func TestVectorsValid(t *testing.T) {
	valid, _ := loadVectors(t)
	for _, v := range valid {
		var ev Event
		if err := DecodeLine([]byte(v.Line), &ev); err != nil {
			t.Errorf("%q: %v", v.Line, err)
			continue
		}
		w := v.Event
		if ev.Kind.String() != w.Kind || ev.StreamID != w.StreamID || ev.RequestID != w.RequestID || ev.Seq != w.Seq || ev.TimeNs != w.TimeNs {
			t.Errorf("%q: header %+v", v.Line, ev.Header)
		}
		switch ev.Kind {
		case KindStart:
			if ev.Start.Expected != *w.Expected || ev.Start.TraceParent != w.TraceParent || ev.Start.BundleID != w.BundleID || ev.Start.ClientID != w.ClientID {
				t.Errorf("%q: start %+v", v.Line, ev.Start)
			}
		case KindChunk:
			if ev.Chunk.Instrument != w.Instrument || ev.Chunk.Bytes != w.Bytes || flagString(ev.Chunk.Flags) != w.Flags {
				t.Errorf("%q: chunk %+v", v.Line, ev.Chunk)
			}
		case KindEnd:
			e := ev.End
			if e.Delivered != w.Delivered || e.Expected != *w.Expected || e.Bytes != w.Bytes || e.Status.String() != w.Status || e.Dropped != w.Dropped ||
				hexOr(e.HasSHA256, e.SHA256) != w.SHA256 || hexOr(e.HasDeclared, e.Declared) != w.Declared {
				t.Errorf("%q: end %+v", v.Line, e)
			}
		}
		// The encoder is canonical for what it writes: re-encoding gives a line
		// that decodes to the same event.
		again := encode(&ev)
		var ev2 Event
		if err := DecodeLine(again[:len(again)-1], &ev2); err != nil || ev2 != ev {
			t.Errorf("re-encode of %q = %q: %v", v.Line, again, err)
		}
	}
}

func TestVectorsInvalid(t *testing.T) {
	_, invalid := loadVectors(t)
	byName := map[string]error{"version": ErrVersion, "kind": ErrKind, "header": ErrHeader, "field": ErrField, "missing": ErrMissing, "range": ErrRange}
	for _, v := range invalid {
		var ev Event
		err := DecodeLine([]byte(v.Line), &ev)
		want := byName[v.Error]
		if want == nil {
			t.Fatalf("vector names unknown error %q", v.Error)
		}
		if !errors.Is(err, want) {
			t.Errorf("%q: got %v, want %v", v.Line, err, want)
		}
	}
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

func randString(r *rand.Rand, n int) string {
	b := make([]byte, r.Intn(n)+1)
	for i := range b {
		b[i] = byte(r.Intn(256))
	}
	return string(b)
}

// Any value the encoder is given, including spaces, newlines, '%' and non-UTF-8
// bytes, survives the round trip unchanged.
func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		ev := Event{Header: Header{StreamID: randString(r, 40), RequestID: randString(r, 40), Seq: r.Uint32(), TimeNs: MinTimeNs + r.Int63n(MaxTimeNs-MinTimeNs)}}
		switch i % 3 {
		case 0:
			ev.Kind = KindStart
			ev.Start = Start{Expected: r.Int63n(MaxCount) - 1, TraceParent: randString(r, 60), BundleID: randString(r, 80), ClientID: randString(r, 80)}
		case 1:
			ev.Kind = KindChunk
			ev.Chunk = Chunk{Instrument: randString(r, 80), Bytes: r.Int63n(MaxBytes), Flags: Flags(r.Intn(8))}
		case 2:
			ev.Kind = KindEnd
			ev.End = End{Delivered: r.Int63n(MaxCount), Expected: r.Int63n(MaxCount) - 1, Bytes: r.Int63n(MaxBytes), HasSHA256: r.Intn(2) == 0,
				HasDeclared: r.Intn(2) == 0, Status: Status(1 + r.Intn(3)), Dropped: r.Int63n(100)}
			if ev.End.HasSHA256 {
				r.Read(ev.End.SHA256[:])
			}
			if ev.End.HasDeclared {
				r.Read(ev.End.Declared[:])
			}
			if r.Intn(2) == 0 {
				ev.End.HasBlocked, ev.End.BlockedUs, ev.End.BlockedMaxUs = true, r.Int63n(MaxBlockedUs), r.Int63n(MaxBlockedUs)
			}
		}
		line := encode(&ev)
		var got Event
		n := 0
		Decode(line, func(e *Event) { got = *e; n++ }, func(err error) { t.Fatalf("%q: %v", line, err) })
		if n != 1 || got != ev {
			t.Fatalf("round trip of %+v gave %+v (%d events) via %q", ev, got, n, line)
		}
	}
}

func TestDecodeDatagramIsolatesBadLines(t *testing.T) {
	h := Header{StreamID: "q", RequestID: "r", TimeNs: 1732300000000000000}
	var d []byte
	d = AppendStart(d, h, Start{Expected: 2})
	d = append(d, "garbage line\n"...)
	h.Seq = 1
	d = AppendChunk(d, h, Chunk{Instrument: "A", Bytes: 3})
	d = append(d, "\n\nsl1 chunk q r 2 1 bytes=1\n"...) // blank lines skipped; bad time
	h.Seq = 3
	d = AppendEnd(d, h, End{Delivered: 1, Status: StatusComplete})
	var kinds []string
	var errs []error
	Decode(d, func(e *Event) { kinds = append(kinds, e.Kind.String()) }, func(err error) { errs = append(errs, err) })
	if strings.Join(kinds, ",") != "start,chunk,end" {
		t.Errorf("events %v", kinds)
	}
	if len(errs) != 2 || !errors.Is(errs[0], ErrVersion) || !errors.Is(errs[1], ErrRange) {
		t.Errorf("errors %v", errs)
	}
}

func TestDecodeOversized(t *testing.T) {
	d := []byte(strings.Repeat("sl1 chunk q r 1 1732300000000000000 bytes=1\n", MaxDatagram/40))
	if len(d) <= MaxDatagram {
		t.Fatal("test datagram not oversized")
	}
	events, bad := 0, 0
	Decode(d, func(*Event) { events++ }, func(err error) {
		if !errors.Is(err, ErrOversized) {
			t.Errorf("got %v", err)
		}
		bad++
	})
	if events != 0 || bad != 1 {
		t.Errorf("events=%d bad=%d: an oversized datagram is dropped whole and counted once", events, bad)
	}
}

func TestChunkPrefixedMatchesAppendChunk(t *testing.T) {
	h := Header{StreamID: "q 1%", RequestID: "r\n1", Seq: 42, TimeNs: 1732300000000000001}
	c := Chunk{Instrument: "BRK B", Bytes: 12, Flags: FlagFirstUseful | FlagError}
	a := AppendChunk(nil, h, c)
	b := AppendChunkPrefixed(nil, AppendChunkPrefix(nil, h.StreamID, h.RequestID), h.Seq, h.TimeNs, c)
	if string(a) != string(b) {
		t.Errorf("%q != %q", a, b)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, MaxDatagram)
	h := Header{StreamID: "0193a6f2-7c1e-7b3a-9d4e-2f1a0b9c8d7e", RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Seq: 7, TimeNs: 1732300000000000000}
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendChunk(buf[:0], h, Chunk{Instrument: "BRK B", Bytes: 200, Flags: FlagFirstUseful})
		b = AppendEnd(b, h, End{Delivered: 5, Expected: 5, HasSHA256: true, Status: StatusComplete})
		_ = AppendStart(b, h, Start{Expected: 5, TraceParent: "00-x-y-01"})
	})
	if allocs != 0 {
		t.Errorf("encode allocated %v times per run", allocs)
	}
}

// FuzzDecode: any byte string gives events or counted errors, never a panic, and
// every event it accepts re-encodes to a line that decodes to the same event.
func FuzzDecode(f *testing.F) {
	valid, invalid := loadVectorsF(f)
	for _, v := range append(valid, invalid...) {
		f.Add([]byte(v.Line))
	}
	// One Decoder across all inputs, as the extension keeps one: what it
	// remembers must never change what it decodes.
	var shared Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		var plain, cached []Event
		var plainBad, cachedBad int
		Decode(data, func(ev *Event) { plain = append(plain, *ev) }, func(error) { plainBad++ })
		shared.Decode(data, func(ev *Event) { cached = append(cached, *ev) }, func(error) { cachedBad++ })
		shared.Decode(data, func(ev *Event) { cached = append(cached, *ev) }, func(error) { cachedBad++ }) // now from memory
		if len(cached) != 2*len(plain) || cachedBad != 2*plainBad {
			t.Fatalf("Decoder: %d events %d bad, Decode: %d events %d bad", len(cached), cachedBad, len(plain), plainBad)
		}
		for i, ev := range plain {
			if cached[i] != ev || cached[len(plain)+i] != ev {
				t.Fatalf("Decoder differs: %+v / %+v vs %+v", cached[i], cached[len(plain)+i], ev)
			}
		}
		Decode(data, func(ev *Event) {
			if ev.Kind < KindStart || ev.Kind > KindEnd || ev.StreamID == "" || ev.RequestID == "" {
				t.Fatalf("accepted incomplete event %+v", ev)
			}
			line := encode(ev)
			var again Event
			if err := DecodeLine(line[:len(line)-1], &again); err != nil || again != *ev {
				t.Fatalf("re-encode %q: %v (%+v vs %+v)", line, err, again, *ev)
			}
		}, func(err error) {
			if err == nil {
				t.Fatal("nil error reported")
			}
		})
	})
}

func loadVectorsF(f *testing.F) (valid, invalid []vector) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var v struct{ Valid, Invalid []vector }
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	return v.Valid, v.Invalid
}

// The Decoder shares the strings of ids and names it decoded before.
func TestDecoderSharesRepeatedStrings(t *testing.T) {
	h := Header{StreamID: "0193a6f2-7c1e-7b3a-9d4e-2f1a0b9c8d7e", RequestID: "8476a536-e9f4-11e8-9739-2dfe598c3fcd", Seq: 1, TimeNs: 1732300000000000000}
	dg := AppendChunk(nil, h, Chunk{Instrument: "AAPL", Bytes: 10})
	var d Decoder
	d.Decode(dg, func(*Event) {}, func(err error) { t.Fatal(err) }) // learn
	allocs := testing.AllocsPerRun(100, func() {
		d.Decode(dg, func(*Event) {}, func(err error) { t.Fatal(err) })
	})
	if allocs != 0 {
		t.Errorf("%v allocations decoding a repeated event, want 0", allocs)
	}
}

// tpr=1 says the traceparent is the caller's; it round-trips, and anything
// but 0 or 1 is a bad field (an old decoder ignores the key).
func TestCallerParentKey(t *testing.T) {
	h := Header{StreamID: "s", RequestID: "r", TimeNs: 1732300000000000000}
	line := AppendStart(nil, h, Start{Expected: -1, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", CallerParent: true})
	var got []Event
	Decode(line, func(e *Event) { got = append(got, *e) }, func(err error) { t.Error(err) })
	if len(got) != 1 || !got[0].Start.CallerParent || !bytes.Contains(line, []byte(" tpr=1")) {
		t.Errorf("%q -> %+v", line, got)
	}
	bad := 0
	Decode([]byte("sl1 start s r 0 1732300000000000000 tpr=2\n"), func(*Event) {}, func(error) { bad++ })
	if bad != 1 {
		t.Errorf("tpr=2 accepted")
	}
}

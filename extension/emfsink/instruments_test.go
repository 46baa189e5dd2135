package emfsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/cwcheck"
)

func streamOf(insts ...string) state.Result {
	var r state.Result
	for i, in := range insts {
		r.Chunks = append(r.Chunks, state.Chunk{Inst: in, LatencyMs: float32(i + 1), IntervalMs: 1})
	}
	return r
}

// docs decodes EMF lines into maps.
func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("invalid line %q: %v", line, err)
		}
		// Judged by CloudWatch's rules, by a checker that shares no code
		// with the encoder; the tests' documents are timestamped near 2027.
		if _, err := cwcheck.Check(line, time.UnixMilli(int64(d["_aws"].(map[string]any)["Timestamp"].(float64)))); err != nil {
			t.Errorf("CloudWatch would drop %s: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}

func count(v any) int {
	if a, ok := v.([]any); ok {
		return len(a)
	}
	if v == nil {
		return 0
	}
	return 1
}

func TestInstrumentsAreWrittenBy100ValuesByAgeAndAtShutdown(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(10)
	t0 := time.Unix(1_800_000_000, 0)
	for i := 0; i < 99; i++ {
		a.Add([]state.Result{streamOf("SPY", "QQQ")}, t0)
	}
	if a.Due(t0.Add(59 * time.Second)) {
		t.Fatal("due with 99 values after 59 s")
	}
	a.Add([]state.Result{streamOf("SPY")}, t0)
	if !a.Due(t0) {
		t.Fatal("not due with 100 values")
	}
	out, errs := enc.Take(nil, a, t0, false)
	ds := docs(t, out)
	if len(errs) != 0 || len(ds) != 1 || ds[0]["Instrument"] != "SPY" || count(ds[0]["ChunkLatency"]) != 100 {
		t.Fatalf("by count: %d docs %v %v", len(ds), ds, errs)
	}
	// QQQ (99 values) is written once its oldest value is 60 s old.
	if a.Due(t0.Add(59 * time.Second)) {
		t.Fatal("due again too early")
	}
	out, _ = enc.Take(nil, a, t0.Add(60*time.Second), false)
	if ds = docs(t, out); len(ds) != 1 || ds[0]["Instrument"] != "QQQ" || count(ds[0]["ChunkInterval"]) != 99 {
		t.Fatalf("by age: %v", ds)
	}
	// At SHUTDOWN everything goes, 100 values a document at most.
	for i := 0; i < 250; i++ {
		a.Add([]state.Result{streamOf("IWM")}, t0)
	}
	a.Add([]state.Result{streamOf("DIA")}, t0)
	out, _ = enc.Take(nil, a, t0, true)
	ds = docs(t, out)
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s:%d", d["Instrument"], count(d["ChunkLatency"])))
	}
	if fmt.Sprint(got) != "[DIA:1 IWM:100 IWM:100 IWM:50]" {
		t.Errorf("shutdown: %v", got)
	}
	if a.Due(t0.Add(time.Hour)) {
		t.Error("values left after SHUTDOWN")
	}
}

// Past the cap of distinct names, chunks go under "other" and are counted:
// each distinct Instrument value is a billed custom metric.
func TestInstrumentCapPutsTheRestUnderOther(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(3)
	t0 := time.Unix(1_800_000_000, 0)
	var names []string
	for i := 0; i < 6001; i++ {
		names = append(names, fmt.Sprintf("made-up-%d", i))
	}
	a.Add([]state.Result{streamOf(names...)}, t0)
	a.Add([]state.Result{streamOf("made-up-1")}, t0) // admitted before the cap: stays itself
	out, _ := enc.Take(nil, a, t0, true)
	seen := map[string]int{}
	overflow, dropped := 0.0, 0.0
	for _, d := range docs(t, out) {
		if in, ok := d["Instrument"].(string); ok {
			seen[in] += count(d["ChunkLatency"])
		}
		if v, ok := d["InstrumentOverflow"].(float64); ok {
			overflow += v
		}
		if v, ok := d["InstrumentValuesDropped"].(float64); ok {
			dropped += v
		}
	}
	// "other" holds at most 1,000 values (each of latency and interval);
	// the oldest beyond are dropped and counted.
	if len(seen) != 4 || seen[OtherInstrument] != maxHeldValues || seen["made-up-1"] != 2 || overflow != 5998 || dropped != 2*(5998-maxHeldValues) {
		t.Errorf("names %d (other %v), overflow %v, dropped %v", len(seen), seen["other"], overflow, dropped)
	}
	// A new hour admits new names.
	a.Add([]state.Result{streamOf("fresh")}, t0.Add(time.Hour))
	out, _ = enc.Take(nil, a, t0.Add(time.Hour), true)
	if ds := docs(t, out); len(ds) != 1 || ds[0]["Instrument"] != "fresh" {
		t.Errorf("after an hour: %v", ds)
	}
}

// When the background falls behind, one Take writes every full document,
// not one per instrument, so the backlog cannot grow.
func TestTakeWritesTheWholeBacklog(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(10)
	t0 := time.Unix(1_800_000_000, 0)
	for i := 0; i < 350; i++ {
		a.Add([]state.Result{streamOf("SPY")}, t0)
	}
	out, _ := enc.Take(nil, a, t0.Add(time.Second), false)
	if ds := docs(t, out); len(ds) != 3 {
		t.Errorf("%d documents for 350 young values, want the 3 full ones", len(ds))
	}
	if a.Due(t0.Add(59*time.Second)) || !a.Due(t0.Add(61*time.Second)) {
		t.Error("the 50 left should wait for their age")
	}
}

// Instrument names are dimension values: what CloudWatch would drop without
// a word is written made valid, distinct names stay distinct, and it is
// counted.
func TestInstrumentNamesAreValidDimensionValues(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(100)
	t0 := time.Unix(1_800_000_000, 0)
	a.Add([]state.Result{streamOf("étf", "\t", " ", "SPY", "ÉTF")}, t0)
	out, _ := enc.Take(nil, a, t0, true)
	names := map[string]bool{}
	fixed := 0.0
	for _, d := range docs(t, out) {
		if in, ok := d["Instrument"].(string); ok {
			names[in] = true
		}
		if v, ok := d["InvalidDimensionValues"].(float64); ok {
			fixed += v
		}
	}
	if len(names) != 5 || !names["SPY"] || !names["%c3%a9tf"] || fixed != 4 {
		t.Errorf("names %v, counted %v", names, fixed)
	}
}

func TestSig3(t *testing.T) {
	for in, want := range map[float64]float64{0: 0, -1: 0, 0.0004: 0, 0.0006: 0.001, 0.23456: 0.235, 2.3456: 2.35, 12.345: 12.3,
		123.45: 123, 1234.5: 1230, 99.96: 100, 0.9996: 1, 9.996: 10, 999.6: 1000, 1000: 1000, 9994: 9990, 9996: 10000,
		123456: 123000, 899_999.9: 900_000, math.NaN(): 0, math.Inf(1): math.Inf(1)} {
		if got := sig3(in); got != want {
			t.Errorf("sig3(%v) = %v, want %v", in, got, want)
		}
	}
	// The same as rounding at 10^(2 - floor(log10 v)), the definition, away
	// from the boundaries where log10 itself rounds.
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		v := math.Pow(10, r.Float64()*9-3) // 0.001 .. 1,000,000 ms
		scale := min(math.Pow(10, 2-math.Floor(math.Log10(v))), 1000)
		want := math.Round(v*scale) / scale
		if got := sig3(v); math.Abs(got-want) > 1e-9*want {
			t.Fatalf("sig3(%v) = %v, want %v", v, got, want)
		}
	}
}

// With an allowlist, only names it matches whole get their own Instrument
// value; the rest go under "other", counted as overflow.
func TestInstrumentAllowlist(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(100)
	a.Allow(regexp.MustCompile(`^(?:[A-Z]{1,5})$`))
	t0 := time.Unix(1_800_000_000, 0)
	a.Add([]state.Result{streamOf("SPY", "AAPL", "user-123", "spy", "SPYSPY", "user-123")}, t0)
	out, _ := enc.Take(nil, a, t0, true)
	seen, overflow := map[string]int{}, 0.0
	for _, d := range docs(t, out) {
		if in, ok := d["Instrument"].(string); ok {
			seen[in] += count(d["ChunkLatency"])
		}
		if v, ok := d["InstrumentOverflow"].(float64); ok {
			overflow += v
		}
	}
	if len(seen) != 3 || seen["SPY"] != 1 || seen["AAPL"] != 1 || seen[OtherInstrument] != 4 || overflow != 4 {
		t.Errorf("names %v, overflow %v", seen, overflow)
	}
}

// In the steady state (the same bundle again and again, a document written
// every 100 values) adding a stream's values allocates nothing: names are
// routed once, and written instruments keep their arrays.
func TestInstrumentsSteadyStateAllocatesNothing(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(100)
	names := make([]string, 150) // 100 named, 50 under "other"
	for i := range names {
		names[i] = fmt.Sprintf("I%d", i)
	}
	res := []state.Result{streamOf(names...)}
	now := time.Unix(1_800_000_000, 0)
	var out []byte
	cycle := func() {
		a.Add(res, now)
		if a.Due(now) {
			out, _ = enc.Take(out[:0], a, now, false)
		}
	}
	for range 300 { // warm: arrays grown, routes known
		cycle()
	}
	lat0, other0 := &a.byName["I0"].lat[:1][0], &a.byName[OtherInstrument].lat[:1][0]
	for range 250 { // documents of I0 and of other written meanwhile
		cycle()
	}
	if &a.byName["I0"].lat[:1][0] != lat0 || &a.byName[OtherInstrument].lat[:1][0] != other0 {
		t.Error("written instruments were given new arrays")
	}
	if allocs := testing.AllocsPerRun(50, func() { a.Add(res, now) }); allocs > 0 {
		t.Errorf("%v allocations per Add", allocs)
	}
}

// Instruments of an earlier admission window do not add up: once written,
// they go with the window.
func TestOldWindowsInstrumentsGo(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(3)
	now := time.Unix(1_800_000_000, 0)
	for h := range 10 {
		t0 := now.Add(time.Duration(h) * time.Hour)
		a.Add([]state.Result{streamOf(fmt.Sprintf("a%d", h), fmt.Sprintf("b%d", h), fmt.Sprintf("c%d", h))}, t0)
		enc.Take(nil, a, t0, true)
	}
	if len(a.byName) > 3 {
		t.Errorf("%d instruments held after 10 hours of 3 new names each", len(a.byName))
	}
}

// Past maxHeldValues the oldest values go and the newest are written, in
// order, within one Add as across several; every other one is counted.
func TestHeldValuesAreTheNewest(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(10)
	now := time.Unix(1_800_000_000, 0)
	names := make([]string, 2*maxHeldValues+7)
	for i := range names {
		names[i] = "SPY"
	}
	a.Add([]state.Result{streamOf(names...)}, now)       // LatencyMs 1, 2, … 2,007
	a.Add([]state.Result{streamOf(names[:500]...)}, now) // 1, … 500
	var want []float64
	for i := maxHeldValues + 7 + 500; i < len(names); i++ {
		want = append(want, sig3(float64(i+1)))
	}
	for i := range 500 {
		want = append(want, sig3(float64(i+1)))
	}
	out, _ := enc.Take(nil, a, now, true)
	var got []float64
	dropped := 0.0
	for _, d := range docs(t, out) {
		switch v := d["ChunkLatency"].(type) {
		case []any:
			for _, x := range v {
				got = append(got, x.(float64))
			}
		case float64:
			got = append(got, v)
		}
		if v, ok := d["InstrumentValuesDropped"].(float64); ok {
			dropped += v
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("written %d values, want the newest %d in order", len(got), len(want))
	}
	if wantDropped := 2 * (len(names) + 500 - maxHeldValues); dropped != float64(wantDropped) {
		t.Errorf("dropped %v, want %d", dropped, wantDropped)
	}
}

// Adding 2,000,000 values, one an Add, to one instrument that is not
// written does linear work — values moved to drop the oldest: at most one a
// value, where shifting the array for each value past the cap moved 1,000
// a value — keeps memory bounded, writes the cap's worth and counts every
// value dropped.
func TestHoldingPastTheCapIsLinear(t *testing.T) {
	enc := New(Config{Namespace: "Streamlens", FunctionName: "pricing"})
	a := NewInstruments(10)
	now := time.Unix(1_800_000_000, 0)
	// Distinct values in a row (sig3 keeps whole numbers under 1,000), so
	// that a shift of the held values shows as a new oldest one.
	res := make([]state.Result, 997)
	for i := range res {
		res[i] = state.Result{Chunks: []state.Chunk{{Inst: "SPY", LatencyMs: float32(i + 1), IntervalMs: float32(i + 1)}}}
	}
	const values = 2_000_000
	maxCap, oldestChanged := 0, 0
	oldest := -1.0
	for i := range values {
		a.Add(res[i%len(res):i%len(res)+1], now)
		in := a.byName["SPY"]
		maxCap = max(maxCap, cap(in.lat), cap(in.intv))
		if i >= values-10*maxHeldValues {
			// Held values stay where they are between cuts: the oldest
			// changes once per maxHeldValues values, not with each.
			if in.lat[0] != oldest {
				oldestChanged++
				oldest = in.lat[0]
			}
		}
	}
	moved := a.moved
	out, _ := enc.Take(nil, a, now, true)
	held, dropped := 0, 0.0
	for _, d := range docs(t, out) {
		held += count(d["ChunkLatency"]) + count(d["ChunkInterval"])
		if v, ok := d["InstrumentValuesDropped"].(float64); ok {
			dropped += v
		}
	}
	t.Logf("figure: %d values into one instrument, one an Add: %d written, %d dropped, %d moved (%.2f a value), arrays of at most %d, oldest held value changed %d times in the last %d",
		2*values, held, int64(dropped), a.moved, float64(a.moved)/float64(2*values), maxCap, oldestChanged, 10*maxHeldValues)
	if held != 2*maxHeldValues || dropped != 2*(values-maxHeldValues) {
		t.Errorf("written %d, dropped %v; want %d and %d", held, dropped, 2*maxHeldValues, 2*(values-maxHeldValues))
	}
	// The first look, and once a cut (ten in 10,000 values).
	if moved > 2*values || oldestChanged > 11 {
		t.Errorf("%d values moved for %d added, the oldest held value changed %d times in %d adds: more than one move a value",
			moved, 2*values, oldestChanged, 10*maxHeldValues)
	}
	if maxCap > 3*maxHeldValues {
		t.Errorf("an array of %d values' capacity for a cap of %d", maxCap, maxHeldValues)
	}
}

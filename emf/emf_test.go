package emf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// specCheck validates one line against the EMF specification's rules, written
// from the spec rather than from the encoder: root is an object with _aws holding
// only Timestamp (number, ms) and CloudWatchMetrics; each directive has only
// Namespace, Dimensions, Metrics; limits on sets, metrics and values; every
// referenced member exists at the root with the right type. It returns the
// metric values found, by name.
func specCheck(t *testing.T, line []byte) map[string][]float64 {
	t.Helper()
	var root map[string]json.RawMessage
	if err := json.Unmarshal(line, &root); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, line)
	}
	if len(line) > MaxDocumentBytes {
		t.Fatalf("document of %d bytes", len(line))
	}
	var aws map[string]json.RawMessage
	if err := json.Unmarshal(root["_aws"], &aws); err != nil {
		t.Fatalf("_aws: %v", err)
	}
	for k := range aws {
		if k != "Timestamp" && k != "CloudWatchMetrics" {
			t.Errorf("_aws has extra member %q", k)
		}
	}
	var ts int64
	if err := json.Unmarshal(aws["Timestamp"], &ts); err != nil || ts < 1e12 {
		t.Errorf("Timestamp %s is not epoch milliseconds", aws["Timestamp"])
	}
	var directives []map[string]json.RawMessage
	if err := json.Unmarshal(aws["CloudWatchMetrics"], &directives); err != nil || len(directives) == 0 {
		t.Fatalf("CloudWatchMetrics: %v", err)
	}
	out := map[string][]float64{}
	for _, d := range directives {
		for k := range d {
			if k != "Namespace" && k != "Dimensions" && k != "Metrics" {
				t.Errorf("directive has extra member %q", k)
			}
		}
		var ns string
		if err := json.Unmarshal(d["Namespace"], &ns); err != nil || ns == "" || len(ns) > 255 {
			t.Errorf("Namespace %s", d["Namespace"])
		}
		var dims [][]string
		if err := json.Unmarshal(d["Dimensions"], &dims); err != nil {
			t.Errorf("Dimensions: %v", err)
		}
		for _, set := range dims {
			if len(set) > 30 {
				t.Errorf("dimension set of %d", len(set))
			}
			for _, k := range set {
				var v string
				if err := json.Unmarshal(root[k], &v); err != nil {
					t.Errorf("dimension %q has no string root member", k)
				}
			}
		}
		var metrics []map[string]json.RawMessage
		if err := json.Unmarshal(d["Metrics"], &metrics); err != nil || len(metrics) > 100 {
			t.Fatalf("Metrics: %v (%d)", err, len(metrics))
		}
		for _, m := range metrics {
			for k := range m {
				if k != "Name" && k != "Unit" && k != "StorageResolution" {
					t.Errorf("metric definition has extra member %q", k)
				}
			}
			var name string
			_ = json.Unmarshal(m["Name"], &name)
			raw, ok := root[name]
			if !ok {
				t.Fatalf("metric %q has no root member", name)
			}
			var one float64
			var many []float64
			if err := json.Unmarshal(raw, &one); err == nil {
				many = []float64{one}
			} else if err := json.Unmarshal(raw, &many); err != nil {
				t.Fatalf("metric %q value %s is neither a number nor an array of numbers", name, raw)
			}
			if len(many) > 100 {
				t.Errorf("metric %q has %d values", name, len(many))
			}
			for _, v := range many {
				// CloudWatch's documented range (MetricDatum.Value).
				if a := math.Abs(v); v != 0 && (a < 8.515920e-109 || a > 1.174271e+108) {
					t.Errorf("metric %q value %v is outside CloudWatch's range", name, v)
				}
			}
			out[name] = append(out[name], many...)
		}
	}
	return out
}

func lines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func seq(n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(i) * scale
	}
	return v
}

func TestSingleDocument(t *testing.T) {
	d := &Document{
		Namespace:  "Streamlens",
		Timestamp:  time.UnixMilli(1732300000123),
		Dimensions: [][]string{{"FunctionName"}},
		Properties: []Property{{"FunctionName", "pricing"}, {"QuoteId", "q-1"}, {"Truncated", true}, {"Chunks", 3}},
		Metrics:    []Metric{{"TimeToFirstByte", Milliseconds, []float64{12.5}}, {"ChunkLatency", Milliseconds, []float64{1, 2.25, 3}}},
	}
	b, err := Append(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(b)
	if len(ls) != 1 {
		t.Fatalf("%d lines", len(ls))
	}
	got := specCheck(t, ls[0])
	if fmt.Sprint(got["TimeToFirstByte"]) != "[12.5]" || fmt.Sprint(got["ChunkLatency"]) != "[1 2.25 3]" {
		t.Errorf("values %v", got)
	}
	want := `{"_aws":{"Timestamp":1732300000123,"CloudWatchMetrics":[{"Namespace":"Streamlens","Dimensions":[["FunctionName"]],"Metrics":[{"Name":"TimeToFirstByte","Unit":"Milliseconds"},{"Name":"ChunkLatency","Unit":"Milliseconds"}]}]},"FunctionName":"pricing","QuoteId":"q-1","Truncated":true,"Chunks":3,"TimeToFirstByte":12.5,"ChunkLatency":[1,2.25,3]}`
	if string(ls[0]) != want {
		t.Errorf("got\n%s\nwant\n%s", ls[0], want)
	}
}

// 250 values and 130 metrics: every value must come out exactly once, spread
// over documents that each respect the limits, each carrying the dimensions and
// properties.
func TestSplitKeepsEveryValue(t *testing.T) {
	d := &Document{
		Namespace:  "Streamlens",
		Timestamp:  time.Now(),
		Dimensions: [][]string{{"FunctionName"}},
		Properties: []Property{{"FunctionName", "pricing"}, {"RequestId", "r-1"}},
	}
	d.Metrics = append(d.Metrics, Metric{"ChunkLatency", Milliseconds, seq(250, 0.5)})
	for i := 0; i < 129; i++ {
		d.Metrics = append(d.Metrics, Metric{fmt.Sprintf("M%03d", i), Count, []float64{float64(i)}})
	}
	b, err := Append(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string][]float64{}
	ls := lines(b)
	for _, l := range ls {
		for k, v := range specCheck(t, l) {
			all[k] = append(all[k], v...)
		}
		var root map[string]any
		_ = json.Unmarshal(l, &root)
		if root["RequestId"] != "r-1" || root["FunctionName"] != "pricing" {
			t.Errorf("split document lost its properties: %s", l)
		}
	}
	// 100 metrics: 3 docs (250 values of ChunkLatency); the other 30: 1 doc.
	if len(ls) != 4 {
		t.Errorf("%d documents, want 4", len(ls))
	}
	got := all["ChunkLatency"]
	sort.Float64s(got)
	if fmt.Sprint(got) != fmt.Sprint(seq(250, 0.5)) {
		t.Errorf("ChunkLatency values changed across split: %d values", len(got))
	}
	if len(all) != 130 {
		t.Errorf("%d metrics, want 130", len(all))
	}
}

func TestRejectsInvalid(t *testing.T) {
	base := func() *Document {
		return &Document{Namespace: "N", Timestamp: time.Now(), Dimensions: [][]string{{"FunctionName"}},
			Properties: []Property{{"FunctionName", "f"}}, Metrics: []Metric{{"M", Count, []float64{1}}}}
	}
	cases := map[string]func(*Document){
		"empty namespace":    func(d *Document) { d.Namespace = "" },
		"long namespace":     func(d *Document) { d.Namespace = strings.Repeat("n", 256) },
		"missing dimension":  func(d *Document) { d.Dimensions = [][]string{{"Instrument"}} },
		"numeric dimension":  func(d *Document) { d.Properties = []Property{{"FunctionName", 3}} },
		"31 dimensions":      func(d *Document) { d.Dimensions = [][]string{make([]string, 31)} },
		"bad unit":           func(d *Document) { d.Metrics[0].Unit = "Parsecs" },
		"metric = property":  func(d *Document) { d.Metrics[0].Name = "FunctionName" },
		"_aws property":      func(d *Document) { d.Properties = append(d.Properties, Property{"_aws", "x"}) },
		"duplicate property": func(d *Document) { d.Properties = append(d.Properties, Property{"FunctionName", "g"}) },
	}
	for name, mutate := range cases {
		d := base()
		mutate(d)
		out, err := Append([]byte("keep"), d)
		if !errors.Is(err, ErrInvalid) || string(out) != "keep" {
			t.Errorf("%s: err=%v out=%q", name, err, out)
		}
	}
}

func nanValue() float64 {
	var z float64
	return z / z
}

func TestTooLarge(t *testing.T) {
	d := &Document{Namespace: "N", Timestamp: time.Now(), Properties: []Property{{"Big", strings.Repeat("x", MaxDocumentBytes)}},
		Metrics: []Metric{{"M", Count, []float64{1}}}}
	out, err := Append(nil, d)
	if !errors.Is(err, ErrTooLarge) || len(out) != 0 {
		t.Errorf("err=%v len=%d", err, len(out))
	}
}

func TestHostileStringsStayJSON(t *testing.T) {
	d := &Document{Namespace: "N", Timestamp: time.Now(), Dimensions: [][]string{{"Instrument"}},
		Properties: []Property{{"Instrument", "\"}\n\x00\xff\\"}}, Metrics: []Metric{{"M", Count, []float64{1}}}}
	b, err := Append(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines(b)) != 1 {
		t.Fatalf("a hostile string split the line: %q", b)
	}
	specCheck(t, lines(b)[0])
	var root map[string]any
	_ = json.Unmarshal(lines(b)[0], &root)
	if root["Instrument"] != "\"}\n\x00\ufffd\\" {
		t.Errorf("Instrument = %q", root["Instrument"])
	}
}

func TestMetricWithoutValuesIsLeftOut(t *testing.T) {
	d := &Document{Namespace: "N", Timestamp: time.Now(), Metrics: []Metric{{"Empty", Count, nil}, {"M", Count, []float64{2}}}}
	b, err := Append(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	got := specCheck(t, lines(b)[0])
	if _, ok := got["Empty"]; ok || len(got) != 1 {
		t.Errorf("got %v", got)
	}
}

// appendFloat writes what strconv's shortest representation writes, on
// values of three decimals (its fast path) and on any other.
func TestAppendFloatIsStrconvs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(v float64) {
		t.Helper()
		if got, want := string(appendFloat(nil, v)), strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Fatalf("appendFloat(%v) = %s, strconv: %s", v, got, want)
		}
	}
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 0.001, 0.1, 0.5, 12.3, 1230, 999_999_999.999, 1e9, 1e9 + 0.5, 123456789.125, -42.07, 0.0005, 1e-7, 3e21} {
		check(v)
	}
	for range 200_000 {
		n := r.Int64N(2e12) - 1e12 // thousandths up to ±1e9
		check(float64(n) / 1000)
		check(math.Round(r.Float64()*1e6) / 1000)
		check(r.NormFloat64() * math.Pow(10, float64(r.IntN(24)-8)))
	}
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 0.001, 12.3, 1e9, -7.25, 1e300} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return // refused before appendFloat (appendValue)
		}
		if got, want := string(appendFloat(nil, v)), strconv.FormatFloat(v, 'f', -1, 64); got != want {
			t.Fatalf("appendFloat(%v) = %s, strconv: %s", v, got, want)
		}
	})
}

// Values CloudWatch would reject (outside ±8.515920e-109..1.174271e+108,
// NaN, ±Inf) are left out of their metric, and counted in the error; the
// rest of the document is written, and a metric left with nothing is left
// out. The range's own ends, zero and 2^31-1 are kept.
func TestValuesOutsideCloudWatchsRangeAreLeftOut(t *testing.T) {
	good := []float64{0, 8.515920e-109, -8.515920e-109, 1.174271e+108, -1.174271e+108, 1e-108, 1<<31 - 1, 12.5}
	bad := []float64{1e308, -5e300, 1.1743e108, 8.5159e-109, -1e-200, 5e-324, math.Inf(1), math.Inf(-1), nanValue()}
	mixed := append(append([]float64{}, good...), bad...)
	d := &Document{Namespace: "N", Timestamp: time.UnixMilli(1_800_000_000_000), Dimensions: [][]string{{"FunctionName"}},
		Properties: []Property{{"FunctionName", "f"}},
		Metrics:    []Metric{{"Mixed", None, mixed}, {"AllBad", None, bad[:3]}, {"Fine", Count, []float64{1}}}}
	before := fmt.Sprint(d.Metrics)
	out, err := Append([]byte("keep\n"), d)
	var re *ValueRangeError
	if !errors.Is(err, ErrValueRange) || !errors.As(err, &re) || re.Dropped != len(bad)+3 || fmt.Sprint(re.Metrics) != "[Mixed AllBad]" {
		t.Fatalf("err %v", err)
	}
	if fmt.Sprint(d.Metrics) != before {
		t.Error("the caller's values were changed")
	}
	ls := lines(out)
	if len(ls) != 2 || string(ls[0]) != "keep" {
		t.Fatalf("%d lines: %s", len(ls), out)
	}
	got := specCheck(t, ls[1])
	if fmt.Sprint(got["Mixed"]) != fmt.Sprint(good) || fmt.Sprint(got["Fine"]) != "[1]" {
		t.Errorf("values %v", got)
	}
	if _, ok := got["AllBad"]; ok || bytes.Contains(ls[1], []byte("AllBad")) {
		t.Errorf("a metric with no value left is written: %s", ls[1])
	}
	// Nothing out of range: no error, the same bytes as ever.
	d.Metrics = []Metric{{"Fine", Count, good}}
	if _, err := Append(nil, d); err != nil {
		t.Errorf("in range: %v", err)
	}
}

// FuzzAppendValue: whatever the value, the document is written, CloudWatch
// would take all of it, and the value is in it exactly when ValidValue.
func FuzzAppendValue(f *testing.F) {
	for _, v := range []float64{0, 1, 1e308, -5e300, 8.515920e-109, 1.174271e+108, 5e-324} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		d := &Document{Namespace: "N", Timestamp: time.UnixMilli(1_800_000_000_000),
			Metrics: []Metric{{"V", None, []float64{v}}, {"One", Count, []float64{1}}}}
		out, err := Append(nil, d)
		got := specCheck(t, bytes.TrimSuffix(out, []byte("\n")))
		if ValidValue(v) {
			if err != nil || len(got["V"]) != 1 || got["V"][0] != v {
				t.Errorf("%v: %v, %s", v, err, out)
			}
		} else if !errors.Is(err, ErrValueRange) || len(got["V"]) != 0 || fmt.Sprint(got["One"]) != "[1]" {
			t.Errorf("%v: %v, %s", v, err, out)
		}
	})
}

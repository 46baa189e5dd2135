package summary

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/slo"
)

func doc(t *testing.T, props []emf.Property, dims [][]string, ms ...emf.Metric) string {
	b, err := emf.Append(nil, &emf.Document{Namespace: "Streamlens", Timestamp: time.Now(), Dimensions: dims, Properties: props, Metrics: ms})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fn() emf.Property { return emf.Property{Key: "FunctionName", Value: "pricing"} }

func TestReadCountsSplitStreamOnce(t *testing.T) {
	lat := make([]float64, 150)
	for i := range lat {
		lat[i] = float64(i)
	}
	log := "START RequestId\n" + doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: "q"}, {Key: "TruncationReason", Value: "short"}},
		[][]string{{"FunctionName"}},
		emf.Metric{Name: "ChunkLatency", Values: lat}, emf.Metric{Name: "StreamTruncated", Values: []float64{1}},
		emf.Metric{Name: "TimeToFirstByte", Values: []float64{7}}) + "not json\n" +
		doc(t, []emf.Property{fn(), {Key: "Instrument", Value: "SPY"}}, [][]string{{"FunctionName", "Instrument"}},
			emf.Metric{Name: "ChunkInterval", Values: []float64{3, 4}})
	s, err := Read(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if s.Streams() != 1 || s.Truncated() != 1 || s.TruncReasons["short"] != 1 || len(s.Values["ChunkLatency"]) != 150 || len(s.EMFLines) != 1 {
		t.Errorf("streams %d truncated %d reasons %v latencies %d", s.Streams(), s.Truncated(), s.TruncReasons, len(s.Values["ChunkLatency"]))
	}
	if got := s.ByDim["Instrument/ChunkInterval"]["SPY"]; len(got) != 2 || len(s.Values["ChunkInterval"]) != 0 {
		t.Errorf("per-instrument values %v; FunctionName-only %v", got, s.Values["ChunkInterval"])
	}
}

func TestStat(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for stat, want := range map[string]float64{"p50": 5, "p90": 9, "p99": 10, "Average": 5.5, "Sum": 55, "SampleCount": 10, "Maximum": 10, "Minimum": 1} {
		if got := Stat(v, stat); got != want {
			t.Errorf("%s = %v, want %v", stat, got, want)
		}
	}
	if !math.IsNaN(Stat(nil, "p50")) || Stat(nil, "Sum") != 0 {
		t.Error("no data")
	}
}

func TestHTMLRendersTheDashboardWidgets(t *testing.T) {
	log := doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: "a"}}, [][]string{{"FunctionName"}},
		emf.Metric{Name: "TimeToFirstByte", Values: []float64{150}}, emf.Metric{Name: "StreamTruncated", Values: []float64{1}},
		emf.Metric{Name: "TTFBBudgetBreach", Values: []float64{1}}) +
		doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: "b"}}, [][]string{{"FunctionName"}},
			emf.Metric{Name: "TimeToFirstByte", Values: []float64{50}}, emf.Metric{Name: "StreamTruncated", Values: []float64{0}},
			emf.Metric{Name: "TTFBBudgetBreach", Values: []float64{0}}) +
		doc(t, []emf.Property{fn(), {Key: "Instrument", Value: "AAPL"}}, [][]string{{"FunctionName", "Instrument"}},
			emf.Metric{Name: "ChunkInterval", Values: []float64{3}}) +
		doc(t, []emf.Property{fn(), {Key: "Instrument", Value: "SPY"}}, [][]string{{"FunctionName", "Instrument"}},
			emf.Metric{Name: "ChunkInterval", Values: []float64{9}})
	s, _ := Read(strings.NewReader(log))
	specs, err := slo.Load("../../slo/slos.json")
	if err != nil {
		t.Fatal(err)
	}
	h := string(HTML(s, specs))
	for _, want := range []string{
		"Business TTFB (handler start → first useful chunk)", "150 ms", // p99 of {50,150}
		"Truncation rate (streams not ended complete)", "50.00 %", "alarm: 0.10 %",
		"TTFB SLO threshold: 100 ms", "breach",
		"SLO ttfb: error budget left", "-4900.00 %", // 50 % bad against a 1 % budget
		"Slowest instruments (ChunkInterval p99, top 10)", "SPY (p99)",
	} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Index(h, "SPY (p99)") > strings.Index(h, "AAPL (p99)") {
		t.Error("slowest instrument must come first")
	}
}

// One series without data (no platform telemetry) must not blank the bars of
// the others in the same widget.
func TestHTMLBarsSurviveAMissingSeries(t *testing.T) {
	log := doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: "a"}}, [][]string{{"FunctionName"}},
		emf.Metric{Name: "TimeToFirstByte", Values: []float64{40}}, emf.Metric{Name: "StreamTruncated", Values: []float64{0}})
	s, _ := Read(strings.NewReader(log))
	h := string(HTML(s, nil))
	i := strings.Index(h, "Platform TTFB vs business TTFB (p99)")
	j := strings.Index(h[i:], "business TTFB p99")
	if i < 0 || j < 0 {
		t.Fatal("widget missing")
	}
	if bar := h[i+j:]; !strings.Contains(bar[:300], `style="width:90.9%"`) {
		t.Errorf("business TTFB bar not drawn next to a platform series without data: %s", bar[:300])
	}
}

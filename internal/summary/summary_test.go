package summary

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/emf"
)

func TestReadCountsSplitStreamOnce(t *testing.T) {
	lat := make([]float64, 150)
	for i := range lat {
		lat[i] = float64(i)
	}
	d := &emf.Document{Namespace: "N", Timestamp: time.Now(), Dimensions: [][]string{{"FunctionName"}},
		Properties: []emf.Property{{Key: "FunctionName", Value: "f"}, {Key: "QuoteId", Value: "q"}, {Key: "TruncationReason", Value: "short"}},
		Metrics: []emf.Metric{{Name: "ChunkLatency", Values: lat}, {Name: "StreamTruncated", Values: []float64{1}},
			{Name: "TimeToFirstByte", Values: []float64{7}}, {Name: "ChunksDelivered", Values: []float64{150}}}}
	b, err := emf.Append(nil, d)
	if err != nil {
		t.Fatal(err)
	}
	log := "START RequestId\n" + string(b) + "not json\n"
	s, err := Read(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "\n") != 2 {
		t.Fatalf("test needs a split document")
	}
	if s.Streams != 1 || s.Truncated != 1 || s.TruncReasons["short"] != 1 || len(s.ChunkLatency) != 150 || s.Delivered != 150 {
		t.Errorf("summary %+v", s)
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 90: 9, 99: 10, 100: 10, 1: 1} {
		if got := Percentile(v, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("no data must be NaN")
	}
}

func TestHTMLShowsThresholds(t *testing.T) {
	s := &Summary{Streams: 4, Truncated: 1, TTFB: []float64{50, 60, 150}, TruncReasons: map[string]int{"no-end": 1},
		ChunkInterval: map[string][]float64{"AAPL": {3}, "SPY": {9}}, InitDurations: map[string][]float64{}}
	h := string(HTML(s, 100))
	for _, want := range []string{"25.00 %", "p99 150.0 ms", "100.0 ms", "SPY", "breach", "reason no-end"} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Index(h, "SPY") > strings.Index(h, "AAPL") {
		t.Error("slowest instrument must come first")
	}
}

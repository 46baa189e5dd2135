package summary

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/slo"
)

func doc(t *testing.T, props []emf.Property, dims [][]string, ms ...emf.Metric) string {
	b, err := emf.Append(nil, &emf.Document{Namespace: "Streamlens", Timestamp: time.UnixMilli(1_800_000_000_000), Dimensions: dims, Properties: props, Metrics: ms})
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
	// No data is no data whatever the statistic, as CloudWatch draws it:
	// a zero would read as "nothing went wrong" (Lambda's own metrics,
	// which a local run does not have, were drawn as zeros).
	for _, stat := range []string{"p50", "Sum", "SampleCount", "Average"} {
		if !math.IsNaN(Stat(nil, stat)) {
			t.Errorf("%s of no data = %v, want no data", stat, Stat(nil, stat))
		}
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
	h := string(HTML(s, specs, nil))
	for _, want := range []string{
		"Business TTFB (handler start → first useful chunk)", "150 ms", // p99 of {50,150}
		"Truncation rate (outcomes not ended complete)", "50.00 %", "alarm: 1.00 %", // the alarm is at ten times the 0.1 % budget
		"TTFB SLO threshold: 100 ms", `class="thl"`, `class="series"`,
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
	// Lambda's own metrics are not in a run's log: no data, not zeros.
	lambda := h[strings.Index(h, "Lambda: traffic, errors, throttles, concurrency"):]
	lambda = lambda[:strings.Index(lambda, `class="w"`)+1]
	if !strings.Contains(lambda, "no data") || strings.Contains(lambda, ">0 count<") {
		t.Errorf("the Lambda widget draws zeros where the run has no data: %.600s", lambda)
	}
}

// The time-series widgets are drawn over the run's timeline: one point per
// period that has data, a gap (not a zero) where a series has none, the
// threshold as a line at its value.
func TestHTMLDrawsTimeSeries(t *testing.T) {
	at := func(ms int64, ttfb float64) string {
		line := doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: "a"}}, [][]string{{"FunctionName"}},
			emf.Metric{Name: "TimeToFirstByte", Values: []float64{ttfb}}, emf.Metric{Name: "StreamTruncated", Values: []float64{0}})
		return strings.Replace(line, `"Timestamp":1800000000000`, fmt.Sprintf(`"Timestamp":%d`, 1_800_000_000_000+ms), 1)
	}
	// Data in the first and the last period only.
	s, _ := Read(strings.NewReader(at(0, 40) + at(11_999, 200)))
	if s.To.Sub(s.From) != 11999*time.Millisecond {
		t.Fatalf("run %v–%v", s.From, s.To)
	}
	h := string(HTML(s, nil, nil))
	i := strings.Index(h, "Platform TTFB vs business TTFB (p99)")
	if i < 0 {
		t.Fatal("widget missing")
	}
	w := h[i:]
	w = w[:strings.Index(w, "</svg>")]
	// Platform TTFB has no data: an empty path. Business TTFB: two points,
	// the second starting a new segment after the gap.
	if !strings.Contains(w, `<path class="series" d="" stroke="#1f77b4"/>`) || strings.Count(w, "<circle") != 2 ||
		!regexp.MustCompile(`d="M[0-9.]+ [0-9.]+ M[0-9.]+ [0-9.]+" stroke="#ff7f0e"`).MatchString(w) {
		t.Errorf("platform TTFB must be a gap, business TTFB two points: %s", w)
	}
	// Business TTFB: 200 ms at the top (×1.1 headroom), the 100 ms threshold
	// line at 100/220 of the height from the top... measured from the bottom.
	j := strings.Index(h, "Business TTFB (handler start")
	b := h[j:]
	b = b[:strings.Index(b, "</svg>")]
	if !strings.Contains(b, `y1="62.2"`) || !strings.Contains(b, "220 ms") {
		t.Errorf("threshold line or scale off: %s", b)
	}
}

func TestHTMLWaterfall(t *testing.T) {
	s, _ := Read(strings.NewReader(""))
	wf := &Waterfall{Title: "a truncated stream", Total: 2 * time.Second,
		Events: []WaterfallEvent{{"chunk SPY", 2 * time.Millisecond}, {"chunk QQQ", time.Second}}, End: "the platform ended the invocation"}
	h := string(HTML(s, nil, wf))
	if !strings.Contains(h, `left:50.00%`) || !strings.Contains(h, "chunk QQQ") || !strings.Contains(h, "2000.0 ms") {
		t.Errorf("waterfall: %s", h[strings.Index(h, "a truncated stream"):])
	}
}

// The preview is drawn by a real browser as intended: every chart laid out,
// every point inside its chart, no NaN (scripts/browser-check.sh, headless
// Chromium). Skipped, loudly, without chromium.
func TestPreviewRendersInABrowser(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("## SKIPPED: no chromium (scripts/need-chromium.sh installs it; make test runs it) ##")
	}
	var log strings.Builder
	for i := range 30 {
		line := doc(t, []emf.Property{fn(), {Key: "QuoteId", Value: fmt.Sprint(i)}}, [][]string{{"FunctionName"}},
			emf.Metric{Name: "TimeToFirstByte", Values: []float64{float64(20 + i*7%150)}}, emf.Metric{Name: "StreamTruncated", Values: []float64{float64(i % 5 / 4)}},
			emf.Metric{Name: "ChunksDelivered", Values: []float64{50}}, emf.Metric{Name: "ChunksExpected", Values: []float64{50}})
		log.WriteString(strings.Replace(line, `"Timestamp":1800000000000`, fmt.Sprintf(`"Timestamp":%d`, 1_800_000_000_000+int64(i)*500), 1))
	}
	s, _ := Read(strings.NewReader(log.String()))
	specs, err := slo.Load("../../slo/slos.json")
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "dashboard.html")
	if err := os.WriteFile(page, HTML(s, specs, &Waterfall{Title: "w", Total: time.Second}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "../../scripts/browser-check.sh", page).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("browser check failed: %v", err)
	}
	if !strings.Contains(string(out), "bad=0") || strings.Contains(string(out), "points=0 ") {
		t.Errorf("%s", out)
	}
}

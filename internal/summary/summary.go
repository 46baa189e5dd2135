// Package summary reads EMF lines from a log stream and aggregates them the way
// CloudWatch would, so the demo can print a summary and render the dashboard's
// widgets as an HTML preview.
package summary

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	m "github.com/streamlens/streamlens/metrics"
)

// Summary holds every metric value of a run.
type Summary struct {
	// Values: metric → values from documents whose dimensions are FunctionName
	// alone (what a FunctionName-dimension dashboard series reads).
	Values map[string][]float64
	// ByDim: "Dim/Metric" → dimension value → values, for SEARCH widgets.
	ByDim        map[string]map[string][]float64
	TruncReasons map[string]int
	EMFLines     []string // the per-stream documents, raw
	// Points: metric → its FunctionName-level values with their documents'
	// timestamps, for the time-series widgets.
	Points map[string][]Point
	// From and To bound the documents' timestamps.
	From, To time.Time
}

// Point is the values of one metric in one document.
type Point struct {
	T      time.Time
	Values []float64
}

// Read parses a log stream; lines that are not EMF are skipped.
func Read(r io.Reader) (*Summary, error) {
	s := &Summary{Values: map[string][]float64{}, ByDim: map[string]map[string][]float64{}, TruncReasons: map[string]int{},
		Points: map[string][]Point{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `{"_aws"`) {
			continue
		}
		var d map[string]any
		if json.Unmarshal([]byte(line), &d) != nil {
			continue
		}
		s.add(d, line)
	}
	return s, sc.Err()
}

func values(v any) []float64 {
	switch v := v.(type) {
	case float64:
		return []float64{v}
	case []any:
		out := make([]float64, 0, len(v))
		for _, x := range v {
			if f, ok := x.(float64); ok {
				out = append(out, f)
			}
		}
		return out
	}
	return nil
}

type directive struct {
	Dimensions [][]string
	Metrics    []struct{ Name string }
}

func (s *Summary) add(d map[string]any, line string) {
	raw, _ := json.Marshal(d["_aws"])
	var aws struct {
		Timestamp         int64
		CloudWatchMetrics []directive
	}
	if json.Unmarshal(raw, &aws) != nil {
		return
	}
	ts := time.UnixMilli(aws.Timestamp)
	if s.From.IsZero() || ts.Before(s.From) {
		s.From = ts
	}
	if ts.After(s.To) {
		s.To = ts
	}
	for _, dir := range aws.CloudWatchMetrics {
		for _, set := range dir.Dimensions {
			for _, met := range dir.Metrics {
				vals := values(d[met.Name])
				switch {
				case len(set) == 1 && set[0] == m.DimFunctionName:
					s.Values[met.Name] = append(s.Values[met.Name], vals...)
					s.Points[met.Name] = append(s.Points[met.Name], Point{ts, vals})
				case len(set) == 2:
					dim := set[1]
					dv, _ := d[dim].(string)
					key := dim + "/" + met.Name
					if s.ByDim[key] == nil {
						s.ByDim[key] = map[string][]float64{}
					}
					s.ByDim[key][dv] = append(s.ByDim[key][dv], vals...)
				}
			}
		}
	}
	if _, ok := d[m.PropQuoteID]; ok && d[m.StreamTruncated] != nil {
		// A stream with more than 100 chunks spans several documents; the
		// first carries the per-stream counts.
		s.EMFLines = append(s.EMFLines, line)
		if sum(values(d[m.StreamTruncated])) > 0 {
			r, _ := d[m.PropTruncateReason].(string)
			s.TruncReasons[r]++
		}
	}
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

// Stat computes a CloudWatch statistic (pNN, Average, Sum, SampleCount,
// Maximum, Minimum) over values; NaN when there are none.
func Stat(v []float64, stat string) float64 {
	if len(v) == 0 {
		// No data, whatever the statistic, as CloudWatch draws it: a gap,
		// not a zero that reads as "nothing went wrong".
		return math.NaN()
	}
	switch stat {
	case "Sum":
		return sum(v)
	case "SampleCount":
		return float64(len(v))
	case "Average":
		return sum(v) / float64(len(v))
	case "Maximum":
		return slices.Max(v)
	case "Minimum":
		return slices.Min(v)
	}
	if p, err := strconv.ParseFloat(strings.TrimPrefix(stat, "p"), 64); err == nil && strings.HasPrefix(stat, "p") {
		return Percentile(v, p)
	}
	return math.NaN()
}

// Percentile is the nearest-rank percentile (p in 0..100); NaN for no data.
func Percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	rank := int(math.Ceil(p / 100 * float64(len(c))))
	return c[max(0, min(len(c)-1, rank-1))]
}

// Streams is the number of streams.
func (s *Summary) Streams() int { return len(s.Values[m.StreamTruncated]) }

// Truncated is the number of truncated streams.
func (s *Summary) Truncated() int { return int(sum(s.Values[m.StreamTruncated])) }

// TruncationRate is truncated streams / streams.
func (s *Summary) TruncationRate() float64 {
	if s.Streams() == 0 {
		return 0
	}
	return float64(s.Truncated()) / float64(s.Streams())
}

// Buckets splits the run into n equal periods and returns, for each, the
// values of metric in it: what a CloudWatch graph's periods hold.
func (s *Summary) Buckets(metric string, n int) [][]float64 {
	out := make([][]float64, n)
	span := s.To.Sub(s.From)
	for _, p := range s.Points[metric] {
		i := 0
		if span > 0 {
			i = min(n-1, int(float64(n)*float64(p.T.Sub(s.From))/float64(span)))
		}
		out[i] = append(out[i], p.Values...)
	}
	return out
}

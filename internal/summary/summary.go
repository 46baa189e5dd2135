// Package summary reads EMF lines from a log stream and summarises them the
// way the dashboard does: the demo prints it and renders it as HTML.
package summary

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"sort"
	"strings"

	m "github.com/streamlens/streamlens/metrics"
)

// Summary aggregates the metrics of a run.
type Summary struct {
	Streams        int
	Truncated      int
	TruncReasons   map[string]int
	TTFB           []float64 // ms
	ChunkLatency   []float64
	ChunkInterval  map[string][]float64 // per instrument
	Delivered      float64
	Expected       float64
	Invocations    int
	ColdStarts     int
	InitDurations  map[string][]float64 // per init type
	ResponseLat    []float64
	Dropped        float64
	Malformed      float64
	IntegrityBad   int
	BudgetBreaches int
	EMFLines       []string // the stream documents, raw
}

// Read parses a log stream; lines that are not EMF are skipped.
func Read(r io.Reader) (*Summary, error) {
	s := &Summary{TruncReasons: map[string]int{}, ChunkInterval: map[string][]float64{}, InitDurations: map[string][]float64{}}
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

func sum(v any) float64 {
	t := 0.0
	for _, x := range values(v) {
		t += x
	}
	return t
}

func (s *Summary) add(d map[string]any, line string) {
	inst, _ := d[m.DimInstrument].(string)
	switch {
	case d[m.PropQuoteID] != nil:
		// A stream with more than 100 chunks spans several documents; only the
		// first carries the per-stream counts.
		if d[m.StreamTruncated] != nil {
			s.Streams++
			s.EMFLines = append(s.EMFLines, line)
		}
		if sum(d[m.StreamTruncated]) > 0 {
			s.Truncated++
			r, _ := d[m.PropTruncateReason].(string)
			s.TruncReasons[r]++
		}
		s.TTFB = append(s.TTFB, values(d[m.TimeToFirstByte])...)
		s.ChunkLatency = append(s.ChunkLatency, values(d[m.ChunkLatency])...)
		s.Delivered += sum(d[m.ChunksDelivered])
		s.Expected += sum(d[m.ChunksExpected])
		s.Dropped += sum(d[m.DroppedEvents])
		s.IntegrityBad += int(sum(d[m.IntegrityMismatch]))
		s.BudgetBreaches += int(sum(d[m.TTFBBudgetBreach]))
	case inst != "":
		s.ChunkInterval[inst] = append(s.ChunkInterval[inst], values(d[m.ChunkInterval])...)
	case d[m.ColdStart] != nil:
		s.Invocations++
		if sum(d[m.ColdStart]) > 0 {
			s.ColdStarts++
		}
		if v := values(d[m.InitDuration]); len(v) > 0 {
			t, _ := d[m.DimInitType].(string)
			s.InitDurations[t] = append(s.InitDurations[t], v...)
		}
		s.ResponseLat = append(s.ResponseLat, values(d[m.ResponseLatency])...)
	}
	s.Malformed += sum(d[m.MalformedEvents])
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

// TruncationRate is truncated streams / streams.
func (s *Summary) TruncationRate() float64 {
	if s.Streams == 0 {
		return 0
	}
	return float64(s.Truncated) / float64(s.Streams)
}

// SlowInstruments returns up to n instruments by p99 ChunkInterval, slowest first.
func (s *Summary) SlowInstruments(n int) []InstrumentStat {
	var out []InstrumentStat
	for k, v := range s.ChunkInterval {
		out = append(out, InstrumentStat{k, Percentile(v, 99), len(v)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].P99 != out[j].P99 {
			return out[i].P99 > out[j].P99
		}
		return out[i].Instrument < out[j].Instrument
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// InstrumentStat is one row of the slow-instrument table.
type InstrumentStat struct {
	Instrument string
	P99        float64
	Count      int
}

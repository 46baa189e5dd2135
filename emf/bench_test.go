package emf

import (
	"io"
	"testing"
	"time"

	prozz "github.com/prozz/aws-embedded-metrics-golang/emf"

	"github.com/streamlens/streamlens/internal/benchround"
)

// The same document both encoders can express: one dimension, four
// properties, ten single-valued metrics (prozz has no arrays of values).
var benchMetrics = []struct {
	name string
	v    float64
}{
	{"TimeToFirstByte", 12.5}, {"TTFBBudgetBreach", 0}, {"ChunksDelivered", 50}, {"ChunksExpected", 50},
	{"StreamTruncated", 0}, {"IntegrityMismatch", 0}, {"StreamBytes", 9400}, {"DroppedEvents", 0},
	{"ResponseLatency", 3.25}, {"ResponseDuration", 180.5},
}

func BenchmarkEncode(b *testing.B) {
	ts := time.UnixMilli(1732300000000)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		d := Document{Namespace: "Streamlens", Timestamp: ts, Dimensions: [][]string{{"FunctionName"}},
			Properties: []Property{{"FunctionName", "pricing"}, {"QuoteId", "0193a6f2-7c1e-7b3a-9d4e-2f1a0b9c8d7e"},
				{"RequestId", "8476a536-e9f4-11e8-9739-2dfe598c3fcd"}, {"BundleId", "EQ-EU-50"}},
			Metrics: make([]Metric, 0, len(benchMetrics))}
		for _, m := range benchMetrics {
			d.Metrics = append(d.Metrics, Metric{Name: m.name, Unit: Count, Values: []float64{m.v}})
		}
		var err error
		if buf, err = Append(buf[:0], &d); err != nil {
			b.Fatal(err)
		}
		_, _ = io.Discard.Write(buf)
	}
}

// BenchmarkEncodeRatios: this encoder against prozz/aws-embedded-metrics-golang
// on the same document, in interleaved rounds (min/median/max of the
// per-round ratios), on equal terms: a fresh output buffer per document for
// both (prozz has no other way), and this encoder reusing its buffer, as the
// extension does. -benchtime=1x.
func BenchmarkEncodeRatios(b *testing.B) {
	ts := time.UnixMilli(1732300000000)
	doc := func() *Document {
		d := &Document{Namespace: "Streamlens", Timestamp: ts, Dimensions: [][]string{{"FunctionName"}},
			Properties: []Property{{"FunctionName", "pricing"}, {"QuoteId", "0193a6f2-7c1e-7b3a-9d4e-2f1a0b9c8d7e"},
				{"RequestId", "8476a536-e9f4-11e8-9739-2dfe598c3fcd"}, {"BundleId", "EQ-EU-50"}},
			Metrics: make([]Metric, 0, len(benchMetrics))}
		for _, m := range benchMetrics {
			d.Metrics = append(d.Metrics, Metric{Name: m.name, Unit: Count, Values: []float64{m.v}})
		}
		return d
	}
	var reused []byte
	for b.Loop() {
		ns := benchround.Run(7, 20000,
			func() {
				l := prozz.New(prozz.WithWriter(io.Discard), prozz.WithTimestamp(ts), prozz.WithoutDimensions()).
					Namespace("Streamlens").Dimension("FunctionName", "pricing").
					Property("QuoteId", "0193a6f2-7c1e-7b3a-9d4e-2f1a0b9c8d7e").
					Property("RequestId", "8476a536-e9f4-11e8-9739-2dfe598c3fcd").Property("BundleId", "EQ-EU-50")
				for _, m := range benchMetrics {
					l.MetricFloatAs(m.name, m.v, prozz.Count)
				}
				l.Log()
			},
			func() {
				out, _ := Append(nil, doc())
				_, _ = io.Discard.Write(out)
			},
			func() {
				reused, _ = Append(reused[:0], doc())
				_, _ = io.Discard.Write(reused)
			})
		// prozz's time over this encoder's: the speed-up.
		benchround.Report(b, ns, 0, 1, "prozz/fresh")
		benchround.Report(b, ns, 0, 2, "prozz/reused")
	}
}

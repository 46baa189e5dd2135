package emfsink

import (
	"math"
	"regexp"
	"sort"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/extension/state"
	m "github.com/streamlens/streamlens/metrics"
)

// OtherInstrument is the Instrument value that stands for every instrument
// past the cap: each distinct value of a dimension is a billed custom metric,
// so the names a function (or its callers) make up must not grow the bill.
const OtherInstrument = "other"

// Per-instrument documents carry up to maxInstrumentValues values per metric
// (the EMF limit per metric) and wait at most maxInstrumentAge: one document
// per instrument per 100 chunks, not one per invocation, is what keeps the
// per-instrument latency visible at a small share of the log bytes and of
// the flush's CPU.
const (
	maxInstrumentValues = 100
	maxInstrumentAge    = 60 * time.Second
	// instrumentWindow is how long the set of admitted names lasts: the cap
	// is "distinct names per environment per hour".
	instrumentWindow = time.Hour
	// maxHeldValues bounds what one instrument holds when the background has
	// had no time to write it (back-to-back short invocations): past it the
	// oldest values are dropped and counted. Its arrays may run to twice
	// that before the oldest are cut (hold): 32 KB an instrument at most.
	maxHeldValues = 10 * maxInstrumentValues
)

// Instruments aggregates per-instrument chunk latencies and intervals across
// streams and invocations. It is pure and not safe for concurrent use.
type Instruments struct {
	max      int // distinct names per window; more go under OtherInstrument
	byName   map[string]*instrument
	admitted map[string]struct{}
	since    time.Time // start of the admission window
	overflow int64     // chunks put under OtherInstrument since the last Take
	dropped  int64     // values dropped past maxHeldValues since the last Take
	fixed    int64     // chunks whose name CloudWatch would refuse as a dimension value (made valid)
	allow    *regexp.Regexp
	refused  map[string]struct{} // names the allowlist refused, so that it runs once a name
	// routes remembers, per name as the chunks carry it, where its values
	// go: one map lookup a chunk instead of making the name valid, asking
	// admission and finding its instrument each time. Cleared with the
	// admission window, which is when instruments are dropped.
	routes map[string]route
	moved  int64 // values moved to drop older ones: the work hold does, which tests bound
}

// route is where the values of one chunk name go.
type route struct {
	in       *instrument
	overflow bool // under OtherInstrument: counted
	fixed    bool // its name was made valid for CloudWatch: counted
}

// maxRoutes bounds the routes kept; made-up names must not grow memory.
const maxRoutes = 10_000

// keepCap is the largest value array an instrument keeps once written
// (4 KiB): the usual ones (a document of 100 values; "other", which takes
// the values of many names at once) are reused, not grown again, and one
// that grew in a burst is let go. At most ~0.8 MB for 100 names.
const keepCap = 512

// Allow admits only the names re matches whole (STREAMLENS_INSTRUMENT_ALLOW);
// the rest go under OtherInstrument and are counted with the overflow. nil
// admits every name, up to the cap.
func (a *Instruments) Allow(re *regexp.Regexp) {
	a.allow, a.refused = re, map[string]struct{}{}
}

// allowed reports whether the allowlist admits name.
func (a *Instruments) allowed(name string) bool {
	if a.allow == nil {
		return true
	}
	if _, ok := a.refused[name]; ok {
		return false
	}
	if a.allow.MatchString(name) {
		return true
	}
	if len(a.refused) >= 10_000 {
		clear(a.refused) // callers' made-up names must not grow memory
	}
	a.refused[name] = struct{}{}
	return false
}

type instrument struct {
	// The values not yet written, oldest first; up to 2×maxHeldValues of
	// which only the newest maxHeldValues count (hold, settle).
	lat, intv []float64
	oldest    time.Time // when the oldest value not yet written arrived
}

// NewInstruments returns an aggregator that admits at most max distinct
// instrument names per hour.
func NewInstruments(max int) *Instruments {
	return &Instruments{max: max, byName: map[string]*instrument{}, admitted: map[string]struct{}{}}
}

// Add takes the chunk values of finished streams, received at now.
func (a *Instruments) Add(results []state.Result, now time.Time) {
	if now.Sub(a.since) >= instrumentWindow {
		a.since, a.admitted, a.routes = now, map[string]struct{}{}, nil
		// A new window admits other names: the old ones' instruments go
		// once written, so that they do not add up hour after hour.
		for name, in := range a.byName {
			if len(in.lat) == 0 && len(in.intv) == 0 {
				delete(a.byName, name)
			}
		}
	}
	for _, r := range results {
		for _, c := range r.Chunks {
			if c.Inst == "" || (c.LatencyMs < 0 && c.IntervalMs < 0) {
				continue
			}
			rt, ok := a.routes[c.Inst]
			if !ok {
				rt = a.route(c.Inst)
			}
			if rt.fixed {
				a.fixed++
			}
			if rt.overflow {
				a.overflow++
			}
			in := rt.in
			if len(in.lat) == 0 && len(in.intv) == 0 {
				in.oldest = now
			}
			if c.LatencyMs >= 0 {
				in.lat = a.hold(in.lat, sig3(float64(c.LatencyMs)))
			}
			if c.IntervalMs >= 0 {
				in.intv = a.hold(in.intv, sig3(float64(c.IntervalMs)))
			}
		}
	}
}

// route decides where the values of chunk name raw go, and remembers it.
func (a *Instruments) route(raw string) route {
	// The name is a dimension value: made valid for CloudWatch, which would
	// drop the document without a word.
	name, fixed := emf.DimensionValue(raw)
	rt := route{fixed: fixed}
	if _, ok := a.admitted[name]; !ok {
		if len(a.admitted) < a.max && a.allowed(name) {
			a.admitted[name] = struct{}{}
		} else {
			name, rt.overflow = OtherInstrument, true
		}
	}
	rt.in = a.byName[name]
	if rt.in == nil {
		rt.in = &instrument{}
		a.byName[name] = rt.in
	}
	if a.routes == nil || len(a.routes) >= maxRoutes {
		a.routes = make(map[string]route)
	}
	a.routes[raw] = rt
	return rt
}

// sig3 rounds a per-chunk value to 3 significant digits (12.3, 0.235, 1230
// ms): at most 0.5 % off, less than one chunk's run-to-run variation, and a
// third fewer bytes for the values that are most of the EMF a stream costs.
// Never below 1 µs, the resolution of the values.
//
// By comparisons, not logarithms: it runs for every chunk value, and
// math.Log10 and math.Pow were 4 % of the extension's CPU.
func sig3(v float64) float64 {
	switch {
	case !(v > 0): // and NaN
		return 0
	case v < 1:
		return math.Round(v*1000) / 1000
	case v < 10:
		return math.Round(v*100) / 100
	case v < 100:
		return math.Round(v*10) / 10
	case v < 1000:
		return math.Round(v)
	}
	// 1,000 and up: keep 3 digits, in steps of an exact power of ten.
	step := 10.0
	for v >= step*1000 && step < 1e300 {
		step *= 10
	}
	return math.Round(v/step) * step
}

// hold appends v to vals. Past maxHeldValues the oldest values are dropped
// and counted, but not one at a time: that moved the whole array for every
// value (1,000 moves a value; 1.7 s for 2 M chunks). The array runs on to
// twice the cap and is then cut back to its newest maxHeldValues in one
// move, and Take cuts what is past the cap before it reads (settle): at
// most one move a value however Add is called, and the same values written
// and dropped as when each was dropped at once.
func (a *Instruments) hold(vals []float64, v float64) []float64 {
	vals = append(vals, v)
	if len(vals) >= 2*maxHeldValues {
		vals = a.cut(vals)
	}
	return vals
}

// cut drops the oldest values of vals past maxHeldValues, counted.
func (a *Instruments) cut(vals []float64) []float64 {
	n := len(vals) - maxHeldValues
	if n <= 0 {
		return vals
	}
	a.dropped += int64(n)
	a.moved += maxHeldValues
	return append(vals[:0], vals[n:]...)
}

// settle drops what in holds past maxHeldValues, before it is read.
func (a *Instruments) settle(in *instrument) {
	in.lat, in.intv = a.cut(in.lat), a.cut(in.intv)
}

// Due reports whether Take(now, false) would write something.
func (a *Instruments) Due(now time.Time) bool {
	for _, in := range a.byName {
		if in.due(now) {
			return true
		}
	}
	return a.overflow > 0 || a.dropped > 0 || a.fixed > 0
}

func (in *instrument) due(now time.Time) bool {
	n := max(len(in.lat), len(in.intv))
	return n >= maxInstrumentValues || (n > 0 && now.Sub(in.oldest) >= maxInstrumentAge)
}

// Take appends the documents of the instruments that are due to dst, in name
// order: every full document (100 values per metric), and the rest when it
// is 60 s old; all that is held when all is set (SHUTDOWN).
func (e *Encoder) Take(dst []byte, a *Instruments, now time.Time, all bool) ([]byte, []error) {
	var names []string
	for name, in := range a.byName {
		// Due needs no settle: an instrument past the cap is due anyway.
		a.settle(in)
		if all && (len(in.lat) > 0 || len(in.intv) > 0) || in.due(now) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var errs []error
	fn := emf.Property{Key: m.DimFunctionName, Value: e.cfg.FunctionName}
	for _, name := range names {
		in := a.byName[name]
		for len(in.lat) > 0 || len(in.intv) > 0 {
			nl, ni := min(len(in.lat), maxInstrumentValues), min(len(in.intv), maxInstrumentValues)
			// Timestamped when its oldest value arrived, not when written:
			// the values belong to the minute they were measured in.
			d := &emf.Document{Namespace: e.cfg.Namespace, Timestamp: clamp(in.oldest, now),
				// Both dimension sets: the values are the function's
				// ChunkLatency/ChunkInterval too, so stream documents need
				// not repeat them.
				Dimensions: [][]string{{m.DimFunctionName, m.DimInstrument}, {m.DimFunctionName}},
				Properties: []emf.Property{fn, {Key: m.DimInstrument, Value: name}},
				Metrics: []emf.Metric{
					{Name: m.ChunkLatency, Unit: emf.Milliseconds, Values: in.lat[:nl]},
					{Name: m.ChunkInterval, Unit: emf.Milliseconds, Values: in.intv[:ni]},
				}}
			var err error
			if dst, err = emf.Append(dst, d); err != nil {
				errs = append(errs, err)
			}
			// What is left moves to the front: the arrays are reused.
			in.lat, in.intv = append(in.lat[:0], in.lat[nl:]...), append(in.intv[:0], in.intv[ni:]...)
			if !all && max(len(in.lat), len(in.intv)) < maxInstrumentValues && !in.due(now) {
				break // a partial document waits until it is old enough
			}
		}
		switch {
		case len(in.lat) > 0 || len(in.intv) > 0:
			in.oldest = now
		case cap(in.lat) > keepCap || cap(in.intv) > keepCap:
			// Grown in a burst: a fresh array is smaller than the peak. The
			// instrument stays (routes point to it).
			in.lat, in.intv = nil, nil
		}
	}
	if a.overflow > 0 {
		dst = e.appendCount(dst, m.InstrumentOverflow, a.overflow, now, &errs)
		a.overflow = 0
	}
	if a.dropped > 0 {
		dst = e.appendCount(dst, m.InstrumentValuesDropped, a.dropped, now, &errs)
		a.dropped = 0
	}
	if a.fixed > 0 {
		dst = e.appendCount(dst, m.InvalidDimensionValues, a.fixed, now, &errs)
		a.fixed = 0
	}
	return dst, errs
}

// appendCount appends a document with one count metric.
func (e *Encoder) appendCount(dst []byte, name string, v int64, now time.Time, errs *[]error) []byte {
	out, err := appendOrKeep(dst, &emf.Document{Namespace: e.cfg.Namespace, Timestamp: now, Dimensions: [][]string{{m.DimFunctionName}},
		Properties: []emf.Property{{Key: m.DimFunctionName, Value: e.cfg.FunctionName}},
		Metrics:    []emf.Metric{{Name: name, Unit: emf.Count, Values: []float64{float64(v)}}}})
	if err != nil {
		*errs = append(*errs, err)
	}
	return out
}

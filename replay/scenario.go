package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	m "github.com/streamlens/streamlens/metrics"
)

// Duration is a time.Duration written as "20m", "72h", "6h20m".
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(x)
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d Duration) min() int { return int(time.Duration(d) / time.Minute) }

// Traffic is what a function does in a minute. A phase sets only the fields
// that change; the others are the baseline's.
type Traffic struct {
	// Invocations per minute. Each is one outcome: a stream, or (share
	// FailedBeforeFirstByte) an invocation that failed before any stream
	// started, whose record counts as truncated and over the TTFB budget.
	PerMin *float64 `json:"streams_per_min,omitempty"`
	// Shares of the streams: truncated by the service, truncated because the
	// caller went away (in neither SLO count), over the TTFB budget, hung
	// until the function timeout (truncated, recorded at the timeout).
	Truncated         *float64 `json:"truncated,omitempty"`
	TruncatedByCaller *float64 `json:"truncated_by_caller,omitempty"`
	TTFBBreach        *float64 `json:"ttfb_breach,omitempty"`
	Hang              *float64 `json:"hang,omitempty"`
	// Share of the invocations that fail before the first byte.
	FailedBeforeFirstByte *float64 `json:"failed_before_first_byte,omitempty"`
	// TTFB of the streams within the budget and of those over it (ms).
	TTFBMs     *float64 `json:"ttfb_ms,omitempty"`
	SlowTTFBMs *float64 `json:"slow_ttfb_ms,omitempty"`
	// OnDemandInitsPerMin: InitDuration records with InitType on-demand.
	OnDemandInitsPerMin *float64 `json:"on_demand_inits_per_min,omitempty"`
	// Extension false: the layer is missing; Lambda counts the invocations,
	// streamlens writes nothing.
	Extension *bool `json:"extension,omitempty"`
	// Client false: the function does not wrap its stream with the
	// streamlens client; the extension records every invocation as one
	// that succeeded without a stream (NonStreamingInvocations), in no SLO.
	Client *bool `json:"client,omitempty"`
	// Metrics adds per minute, to each named streamlens metric (FunctionName
	// dimension), one value of the given size (e.g. {"DroppedEvents": 1}).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Phase is traffic for a while: from At (after the warmup) for For (to the
// end when zero).
type Phase struct {
	At  Duration `json:"at"`
	For Duration `json:"for,omitempty"`
	Traffic
}

// Event is a count of single outcomes in one minute.
type Event struct {
	At Duration `json:"at"`
	// What: truncated, ttfb_breach, failed_before_first_byte, on_demand_init.
	What  string `json:"what"`
	Count int    `json:"count,omitempty"` // default 1
}

// Expect is one check of a scenario's notifications (those at or after
// the warmup's end). Topic "" or "*" means any; State "" any; Alarm, when
// set, a substring of the alarm's name.
type Expect struct {
	Topic string   `json:"topic,omitempty"`
	State string   `json:"state,omitempty"`
	Alarm string   `json:"alarm,omitempty"`
	Min   *int     `json:"min,omitempty"`
	Max   *int     `json:"max,omitempty"`
	By    Duration `json:"by,omitempty"`  // every matching notification at or before By
	Why   string   `json:"why,omitempty"` // printed when the check fails
}

// Scenario is a replay: traffic minute by minute, and what should be heard.
type Scenario struct {
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	Function    string  `json:"function,omitempty"`  // default pricing
	Namespace   string  `json:"namespace,omitempty"` // default Streamlens
	Baseline    Traffic `json:"baseline"`
	Phases      []Phase `json:"phases,omitempty"`
	Events      []Event `json:"events,omitempty"`
	// Warmup runs the baseline before time 0 so that the long windows are
	// full (default 72h); notifications in it are not counted.
	Warmup   *Duration `json:"warmup,omitempty"`
	Duration Duration  `json:"duration"`
	// Delay: how long an EMF record takes to become a CloudWatch datapoint
	// (default 2m); AWSDelay the same for AWS/Lambda's own metrics (1m).
	Delay    *Duration `json:"delay,omitempty"`
	AWSDelay *Duration `json:"aws_delay,omitempty"`
	// Timeout of the function: when a hung stream's record is written.
	Timeout Duration `json:"timeout,omitempty"`
	// Seed 0: counts are the expected ones, spread evenly (deterministic);
	// otherwise Poisson draws from this seed.
	Seed uint64 `json:"seed,omitempty"`
	// Vars override Terraform variables ("name": the root's; "module.name").
	Vars   map[string]any `json:"vars,omitempty"`
	Expect []Expect       `json:"expect,omitempty"`
}

// ParseScenario reads a scenario file.
func ParseScenario(b []byte) (*Scenario, error) {
	var s Scenario
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if s.Duration <= 0 {
		return nil, errors.New("scenario: duration must be positive")
	}
	if s.Baseline.PerMin == nil {
		return nil, errors.New("scenario: baseline.streams_per_min is required")
	}
	return &s, nil
}

func (s *Scenario) warmupMin() int {
	if s.Warmup != nil {
		return s.Warmup.min()
	}
	return 72 * 60
}

func (s *Scenario) delays() (emf, aws int) {
	emf, aws = 2, 1
	if s.Delay != nil {
		emf = s.Delay.min()
	}
	if s.AWSDelay != nil {
		aws = s.AWSDelay.min()
	}
	return emf, aws
}

// overlay sets every field p sets.
func overlay(base Traffic, p Traffic) Traffic {
	out := base
	for _, f := range []struct{ dst, src **float64 }{
		{&out.PerMin, &p.PerMin}, {&out.Truncated, &p.Truncated}, {&out.TruncatedByCaller, &p.TruncatedByCaller},
		{&out.TTFBBreach, &p.TTFBBreach}, {&out.Hang, &p.Hang}, {&out.FailedBeforeFirstByte, &p.FailedBeforeFirstByte},
		{&out.TTFBMs, &p.TTFBMs}, {&out.SlowTTFBMs, &p.SlowTTFBMs}, {&out.OnDemandInitsPerMin, &p.OnDemandInitsPerMin},
	} {
		if *f.src != nil {
			*f.dst = *f.src
		}
	}
	if p.Extension != nil {
		out.Extension = p.Extension
	}
	if p.Client != nil {
		out.Client = p.Client
	}
	if p.Metrics != nil {
		out.Metrics = p.Metrics
	}
	return out
}

func val(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

// series is one metric (namespace, name, dimensions), minute by minute.
type series struct {
	count, sum []float64
	hist       []map[float64]float64 // value → how many, for percentiles
	pc, ps     []float64             // prefix sums of count and sum
	aws        bool
}

// Data is a scenario's metrics, per minute since its start (warmup included).
type Data struct {
	Minutes            int
	Warmup             int
	series             map[string]*series
	emfDelay, awsDelay int
}

func seriesKey(namespace, metric string, dims map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(dims)) {
		parts = append(parts, k+"="+dims[k])
	}
	return namespace + "|" + metric + "|" + strings.Join(parts, ",")
}

func (d *Data) add(minute int, key string, value, n float64) {
	if minute >= d.Minutes || n == 0 {
		return
	}
	s := d.series[key]
	if s == nil {
		s = &series{count: make([]float64, d.Minutes), sum: make([]float64, d.Minutes), hist: make([]map[float64]float64, d.Minutes),
			aws: strings.HasPrefix(key, "AWS/")}
		d.series[key] = s
	}
	s.count[minute] += n
	s.sum[minute] += value * n
	if s.hist[minute] == nil {
		s.hist[minute] = map[float64]float64{}
	}
	s.hist[minute][value] += n
}

// counter turns expected counts into whole ones: evenly spread, or Poisson.
type counter struct {
	carry map[string]float64
	rng   *rand.Rand
}

func (c *counter) n(name string, expected float64) float64 {
	if expected <= 0 {
		return 0
	}
	if c.rng != nil {
		return poisson(c.rng, expected)
	}
	c.carry[name] += expected
	k := math.Floor(c.carry[name])
	c.carry[name] -= k
	return k
}

func poisson(r *rand.Rand, lambda float64) float64 {
	if lambda > 50 {
		return math.Max(0, math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64()))
	}
	l, k, p := math.Exp(-lambda), 0.0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// Build turns a scenario into per-minute metrics, as the extension writes
// them (metrics/metrics.go): one record per invocation (ColdStart), per
// outcome StreamTruncated and TTFBBudgetBreach 0/1 (a failure before the
// first byte writes 1 for both and FailedBeforeFirstByte), TimeToFirstByte
// per stream; every record stamped at the outcome's end.
func (s *Scenario) Build() (*Data, error) {
	warm := s.warmupMin()
	d := &Data{Minutes: warm + s.Duration.min(), Warmup: warm, series: map[string]*series{}}
	d.emfDelay, d.awsDelay = s.delays()
	fn, ns := s.Function, s.Namespace
	if fn == "" {
		fn = "pricing"
	}
	if ns == "" {
		ns = m.DefaultNamespace
	}
	fdim := map[string]string{m.DimFunctionName: fn}
	key := func(metric string) string { return seriesKey(ns, metric, fdim) }
	inv := seriesKey("AWS/Lambda", "Invocations", fdim)
	initKey := seriesKey(ns, m.InitDuration, map[string]string{m.DimFunctionName: fn, m.DimInitType: "on-demand"})
	known := map[string]bool{}
	for _, def := range m.Defs() {
		known[def.Name] = true
	}
	c := &counter{carry: map[string]float64{}}
	if s.Seed != 0 {
		c.rng = rand.New(rand.NewPCG(s.Seed, 0x5eed))
	}
	timeout := s.Timeout.min()
	if timeout == 0 {
		timeout = 15
	}
	events := map[int][]Event{}
	for _, e := range s.Events {
		switch e.What {
		case "truncated", "ttfb_breach", "failed_before_first_byte", "on_demand_init":
		default:
			return nil, fmt.Errorf("scenario: event %q: want truncated, ttfb_breach, failed_before_first_byte or on_demand_init", e.What)
		}
		events[warm+e.At.min()] = append(events[warm+e.At.min()], e)
	}
	for name := range s.Baseline.Metrics {
		if !known[name] {
			return nil, fmt.Errorf("scenario: unknown metric %q", name)
		}
	}
	for minute := 0; minute < d.Minutes; minute++ {
		tr := s.Baseline
		rel := minute - warm
		for _, p := range s.Phases {
			if rel >= p.At.min() && (p.For == 0 || rel < p.At.min()+p.For.min()) {
				tr = overlay(tr, p.Traffic)
			}
		}
		for name := range tr.Metrics {
			if !known[name] {
				return nil, fmt.Errorf("scenario: unknown metric %q", name)
			}
		}
		n := c.n("inv", val(tr.PerMin, 0))
		failed := min(n, c.n("failed", n*val(tr.FailedBeforeFirstByte, 0)))
		streams := n - failed
		hang := min(streams, c.n("hang", streams*val(tr.Hang, 0)))
		trunc := min(streams-hang, c.n("trunc", streams*val(tr.Truncated, 0)))
		caller := min(streams-hang-trunc, c.n("caller", streams*val(tr.TruncatedByCaller, 0)))
		breach := min(streams-hang, c.n("breach", streams*val(tr.TTFBBreach, 0)))
		inits := c.n("inits", val(tr.OnDemandInitsPerMin, 0))
		for _, e := range events[minute] {
			k := float64(max(1, e.Count))
			switch e.What {
			case "truncated":
				n, streams, trunc = n+k, streams+k, trunc+k
			case "ttfb_breach":
				n, streams, breach = n+k, streams+k, breach+k
			case "failed_before_first_byte":
				n, failed = n+k, failed+k
			case "on_demand_init":
				inits += k
			}
		}
		d.add(minute, inv, 1, n)
		if tr.Extension != nil && !*tr.Extension {
			continue
		}
		if tr.Client != nil && !*tr.Client {
			d.add(minute, key(m.ColdStart), 0, n)
			d.add(minute, key(m.NonStreamingInvocations), 1, n)
			continue
		}
		done := streams - hang // recorded this minute; hung ones at the timeout
		good, slow := val(tr.TTFBMs, 40), val(tr.SlowTTFBMs, 400)
		d.add(minute, key(m.ColdStart), 0, done+failed)
		d.add(minute, key(m.StreamTruncated), 1, trunc+caller+failed)
		d.add(minute, key(m.StreamTruncated), 0, done-trunc-caller)
		d.add(minute, key(m.TruncationByCaller), 1, caller)
		d.add(minute, key(m.TTFBBudgetBreach), 1, breach+failed)
		d.add(minute, key(m.TTFBBudgetBreach), 0, done-breach)
		d.add(minute, key(m.FailedBeforeFirstByte), 1, failed)
		d.add(minute, key(m.TimeToFirstByte), slow, breach)
		d.add(minute, key(m.TimeToFirstByte), good, done-breach)
		d.add(minute+timeout, key(m.ColdStart), 0, hang)
		d.add(minute+timeout, key(m.StreamTruncated), 1, hang)
		d.add(minute+timeout, key(m.TTFBBudgetBreach), 0, hang)
		d.add(minute+timeout, key(m.TimeToFirstByte), good, hang)
		d.add(minute, initKey, 250, inits)
		for _, name := range slices.Sorted(maps.Keys(tr.Metrics)) {
			d.add(minute, key(name), tr.Metrics[name], 1)
		}
	}
	for _, s := range d.series {
		s.pc, s.ps = make([]float64, d.Minutes+1), make([]float64, d.Minutes+1)
		for i := range d.Minutes {
			s.pc[i+1], s.ps[i+1] = s.pc[i]+s.count[i], s.ps[i]+s.sum[i]
		}
	}
	return d, nil
}

// stat is a statistic of the minutes [from, to) of a metric, missing when
// the metric has no value there.
func (d *Data) stat(key, stat string, from, to int) (Value, error) {
	s := d.series[key]
	from, to = max(0, from), min(d.Minutes, to)
	if s == nil || from >= to {
		return Value{}, nil
	}
	n := s.pc[to] - s.pc[from]
	if n == 0 {
		return Value{}, nil
	}
	sum := s.ps[to] - s.ps[from]
	switch stat {
	case "Sum":
		return Value{V: sum, OK: true}, nil
	case "SampleCount":
		return Value{V: n, OK: true}, nil
	case "Average":
		return Value{V: sum / n, OK: true}, nil
	}
	merged := map[float64]float64{}
	for i := from; i < to; i++ {
		for v, c := range s.hist[i] {
			merged[v] += c
		}
	}
	vals := slices.Sorted(maps.Keys(merged))
	switch stat {
	case "Minimum":
		return Value{V: vals[0], OK: true}, nil
	case "Maximum":
		return Value{V: vals[len(vals)-1], OK: true}, nil
	}
	var pct float64
	if _, err := fmt.Sscanf(stat, "p%g", &pct); err != nil || pct <= 0 || pct > 100 {
		return Value{}, fmt.Errorf("statistic %q is not replayed", stat)
	}
	// Nearest rank: the smallest value with at least pct % of the
	// samples at or below it.
	rank := math.Ceil(pct / 100 * n)
	seen, i := 0.0, 0
	for i = range vals {
		seen += merged[vals[i]]
		if seen >= rank {
			break
		}
	}
	return Value{V: vals[i], OK: true}, nil
}

package slo

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	m "github.com/streamlens/streamlens/metrics"
)

// Series is an SLI read from CloudWatch: bad and total events per period,
// keyed by the period's start, up to End (a period boundary).
type Series struct {
	Bad, Total map[time.Time]float64
	Excluded   map[time.Time]float64 // events of the SLI's Exclude queries, summed
	End        time.Time
	Period     time.Duration
}

// Status is one SLO's standing at the end of its window.
type Status struct {
	Name       string    `json:"name"`
	Objective  float64   `json:"objective"`
	WindowDays int       `json:"window_days"`
	AsOf       time.Time `json:"as_of"` // the end of the last whole period read
	// NoData: not one event in the window. Attainment and BudgetLeft are
	// then 0 and mean nothing: no data is not "100 % attained".
	NoData     bool               `json:"no_data"`
	Total      float64            `json:"total_events"`
	Bad        float64            `json:"bad_events"`
	Attainment float64            `json:"attainment"`  // good / total
	BudgetLeft float64            `json:"budget_left"` // 1 − (bad/total)/(1−objective); negative when overspent
	Burn       map[string]float64 `json:"burn_rate"`   // trailing window → burn rate
	// Alerts are the burn-rate pairs of the alarms (slo.tf.json), each with
	// its windows' burn rates now and whether the pair fires; Page and
	// Ticket whether the composites would.
	Alerts []Alert `json:"alerts"`
	Page   bool    `json:"page_firing"`
	Ticket bool    `json:"ticket_firing"`
	// HourlyBurn is the burn rate of each of the last 72 hours, oldest
	// first (0 for an hour without events).
	HourlyBurn []float64 `json:"hourly_burn"`
}

// Alert is one burn-rate pair as the alarms see it now.
type Alert struct {
	Severity string  `json:"severity"`
	Long     string  `json:"long_window"`
	Short    string  `json:"short_window"`
	Factor   float64 `json:"factor"`
	// ShortFactor is the short window's threshold (a ticket's is lower).
	ShortFactor float64 `json:"short_factor"`
	BurnLong    float64 `json:"burn_long"`
	BurnShort   float64 `json:"burn_short"`
	BadLong     float64 `json:"bad_long"` // bad events in the long window (the page guard)
	// Measurable: the data's period fits the short window (hourly data,
	// beyond 63 days, cannot show 5 minutes).
	Measurable bool `json:"measurable"`
	Firing     bool `json:"firing"`
}

// PageMinBadEvents is the page alarms' default guard (the slo module's
// page_min_bad_events): a page's long window needs this many bad events.
const PageMinBadEvents = 5

// BurnWindows are the trailing windows the report shows burn rates for (the
// long windows of the alerting pairs; hourly data cannot show 5 minutes).
func BurnWindows() []time.Duration {
	return []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour}
}

func sumSince(v map[time.Time]float64, from time.Time) float64 {
	t := 0.0
	for ts, x := range v {
		if !ts.Before(from) {
			t += x
		}
	}
	return t
}

// Compute evaluates spec on h, for the window ending at h.End.
func Compute(spec Spec, h Series, window time.Duration) Status {
	end := h.End
	st := Status{Name: spec.Name, Objective: spec.Objective, WindowDays: int(window / (24 * time.Hour)), Burn: map[string]float64{}, AsOf: end}
	from := end.Add(-window)
	ex := sumSince(h.Excluded, from)
	st.Bad, st.Total = max(0, sumSince(h.Bad, from)-ex), max(0, sumSince(h.Total, from)-ex)
	if st.Total > 0 {
		st.Attainment, st.BudgetLeft = 1-st.Bad/st.Total, 1-spec.Burn(st.Bad, st.Total, 0)
	} else {
		st.NoData = true
	}
	burn := func(d time.Duration) (float64, float64) {
		from := end.Add(-d)
		b, x := sumSince(h.Bad, from), sumSince(h.Excluded, from)
		return spec.Burn(b, sumSince(h.Total, from), x), b - x
	}
	for _, w := range spec.Windows() {
		a := Alert{Severity: w.Severity, Long: durName(w.Long), Short: durName(w.Short), Factor: w.Factor, ShortFactor: w.ShortFactor,
			Measurable: h.Period > 0 && w.Short >= h.Period && w.Short%h.Period == 0}
		a.BurnLong, a.BadLong = burn(w.Long)
		a.BurnShort, _ = burn(w.Short)
		a.Firing = a.Measurable && a.BurnLong > w.Factor && a.BurnShort > w.ShortFactor && (w.Severity != "page" || a.BadLong >= PageMinBadEvents)
		st.Alerts = append(st.Alerts, a)
		st.Page = st.Page || a.Firing && w.Severity == "page"
		st.Ticket = st.Ticket || a.Firing && w.Severity == "ticket"
	}
	for _, w := range BurnWindows() {
		from := end.Add(-w)
		st.Burn[durName(w)] = spec.Burn(sumSince(h.Bad, from), sumSince(h.Total, from), sumSince(h.Excluded, from))
	}
	longest := BurnWindows()[len(BurnWindows())-1]
	for from := end.Add(-longest); from.Before(end); from = from.Add(time.Hour) {
		to := from.Add(time.Hour)
		st.HourlyBurn = append(st.HourlyBurn, spec.Burn(sumBetween(h.Bad, from, to), sumBetween(h.Total, from, to), sumBetween(h.Excluded, from, to)))
	}
	return st
}

func sumBetween(v map[time.Time]float64, from, to time.Time) float64 {
	t := 0.0
	for ts, x := range v {
		if !ts.Before(from) && ts.Before(to) {
			t += x
		}
	}
	return t
}

// Sparkline draws burn rates as one block per value, scaled to their
// maximum, with 1× (the sustainable rate) marked by the scale.
func Sparkline(burns []float64) string {
	const blocks = "▁▂▃▄▅▆▇█"
	top := 1.0
	for _, b := range burns {
		top = max(top, b)
	}
	var sb strings.Builder
	for _, b := range burns {
		i := int(b / top * 7.999)
		sb.WriteRune([]rune(blocks)[max(0, min(7, i))])
	}
	return sb.String()
}

// Periods and how far back CloudWatch keeps them: 5-minute data for 63
// days, hourly data for 455.
const (
	finePeriod   = 5 * time.Minute
	coarsePeriod = time.Hour
	fineKept     = 63 * 24 * time.Hour
)

// Fetch reads the SLI series of every spec from CloudWatch with
// GetMetricData (all pages): the window ending at the last period boundary
// before end, and at least the longest burn window. The boundary matters:
// CloudWatch rounds StartTime down (to the minute under 15 days, to 5
// minutes under 63, to the hour beyond) and starts its buckets there, so a
// window that does not start on a period boundary shifts every bucket, and
// the last one, holding a few minutes, passes for the last hour.
func Fetch(ctx context.Context, cw *cloudwatch.Client, specs []Spec, namespace, function string, end time.Time, window time.Duration) ([]Series, error) {
	window = max(window, BurnWindows()[len(BurnWindows())-1])
	period := finePeriod
	if window > fineKept-time.Hour {
		period = coarsePeriod
	}
	end = end.UTC().Truncate(period)
	var queries []types.MetricDataQuery
	q := func(id string, qq Query) types.MetricDataQuery {
		return types.MetricDataQuery{Id: aws.String(id), ReturnData: aws.Bool(true), MetricStat: &types.MetricStat{
			Metric: &types.Metric{Namespace: aws.String(namespace), MetricName: aws.String(qq.Metric),
				Dimensions: []types.Dimension{{Name: aws.String(m.DimFunctionName), Value: aws.String(function)}}},
			Period: aws.Int32(int32(period / time.Second)), Stat: aws.String(qq.Stat)}}
	}
	for i, s := range specs {
		queries = append(queries, q("bad"+strconv.Itoa(i), s.SLI.Bad), q("total"+strconv.Itoa(i), s.SLI.Total))
		for j, x := range s.SLI.Exclude {
			queries = append(queries, q(fmt.Sprintf("ex%d_%d", i, j), x))
		}
	}
	out := make([]Series, len(specs))
	for i := range out {
		out[i] = Series{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}, Excluded: map[time.Time]float64{}, End: end, Period: period}
	}
	p := cloudwatch.NewGetMetricDataPaginator(cw, &cloudwatch.GetMetricDataInput{
		MetricDataQueries: queries, StartTime: aws.Time(end.Add(-window)), EndTime: aws.Time(end), ScanBy: types.ScanByTimestampAscending})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("GetMetricData: %w", err)
		}
		for _, msg := range page.Messages {
			// e.g. a query over the 100,800 datapoints limit: the numbers
			// would be incomplete.
			return nil, fmt.Errorf("GetMetricData: %s: %s", aws.ToString(msg.Code), aws.ToString(msg.Value))
		}
		for _, r := range page.MetricDataResults {
			id := aws.ToString(r.Id)
			switch r.StatusCode {
			case types.StatusCodeComplete, types.StatusCodePartialData: // PartialData: the next page has the rest
			default:
				return nil, fmt.Errorf("GetMetricData: %s: status %s %v", id, r.StatusCode, r.Messages)
			}
			for _, msg := range r.Messages {
				return nil, fmt.Errorf("GetMetricData: %s: %s: %s", id, aws.ToString(msg.Code), aws.ToString(msg.Value))
			}
			var dst map[time.Time]float64
			switch {
			case strings.HasPrefix(id, "bad"):
				n, _ := strconv.Atoi(strings.TrimPrefix(id, "bad"))
				if n < len(out) {
					dst = out[n].Bad
				}
			case strings.HasPrefix(id, "total"):
				n, _ := strconv.Atoi(strings.TrimPrefix(id, "total"))
				if n < len(out) {
					dst = out[n].Total
				}
			case strings.HasPrefix(id, "ex"):
				spec, _, _ := strings.Cut(strings.TrimPrefix(id, "ex"), "_")
				n, _ := strconv.Atoi(spec)
				if n < len(out) {
					dst = out[n].Excluded // every excluded query adds to the same count
				}
			}
			if dst == nil || len(r.Timestamps) != len(r.Values) {
				return nil, fmt.Errorf("GetMetricData: malformed result %q", id)
			}
			for k, ts := range r.Timestamps {
				dst[ts.UTC()] += r.Values[k]
			}
		}
	}
	return out, nil
}

// NoDataError is the report's answer when an SLO has no events at all:
// never "100 % attained".
type NoDataError struct {
	SLOs                        []string
	Function, Namespace, Region string
	Window                      time.Duration
	AsOf                        time.Time
}

func (e *NoDataError) Error() string {
	region := e.Region
	if region == "" {
		region = "the configured region"
	}
	return fmt.Sprintf("no events for SLO %s of function %q in namespace %q, %s, over the %v before %s: "+
		"the function name or the region is wrong (the FunctionName dimension is the name, not the ARN or an alias), "+
		"the metrics go to another namespace (STREAMLENS_NAMESPACE) or function name (STREAMLENS_FUNCTION_NAME), "+
		"the streamlens layer is not attached (the heartbeat alarm fires) or the handler does not use the streamlens client (slo-metrics-absent fires), "+
		"or the function had no traffic",
		strings.Join(e.SLOs, ", "), e.Function, e.Namespace, region, e.Window, e.AsOf.Format(time.RFC3339))
}

// PrintTable writes statuses as a human table.
func PrintTable(w io.Writer, sts []Status) error {
	if len(sts) > 0 {
		fmt.Fprintf(w, "as of %s (the last whole period; EMF reaches CloudWatch a few minutes late)\n\n", sts[0].AsOf.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "SLO\tobjective\twindow\tevents\tbad\tattainment\tbudget left")
	for _, d := range BurnWindows() {
		fmt.Fprintf(tw, "\tburn %s", durName(d))
	}
	fmt.Fprintln(tw)
	for _, s := range sts {
		if s.NoData {
			fmt.Fprintf(tw, "%s\t%.4g%%\t%dd\t0\t0\tno data\tno data", s.Name, 100*s.Objective, s.WindowDays)
		} else {
			fmt.Fprintf(tw, "%s\t%.4g%%\t%dd\t%.0f\t%.0f\t%.4f%%\t%.1f%%", s.Name, 100*s.Objective, s.WindowDays, s.Total, s.Bad, 100*s.Attainment, 100*s.BudgetLeft)
		}
		for _, d := range BurnWindows() {
			fmt.Fprintf(tw, "\t%.2f×", s.Burn[durName(d)])
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nalerts now (burn over the long and the short window against the pair's factor):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range sts {
		for _, a := range s.Alerts {
			verdict := "quiet"
			switch {
			case !a.Measurable:
				verdict = "n/a (data too coarse for the short window)"
			case a.Firing:
				verdict = "FIRING"
			case a.Severity == "page" && a.BurnLong > a.Factor && a.BurnShort > a.ShortFactor:
				verdict = fmt.Sprintf("quiet (%.0f bad events, the page needs %d)", a.BadLong, PageMinBadEvents)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s/%s\t> %.4g× / %.4g×\t%.2f× / %.2f×\t%s\n", s.Name, a.Severity, a.Long, a.Short, a.Factor, a.ShortFactor, a.BurnLong, a.BurnShort, verdict)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sts {
		if len(s.HourlyBurn) == 0 {
			continue
		}
		top := 1.0
		for _, b := range s.HourlyBurn {
			top = max(top, b)
		}
		fmt.Fprintf(w, "\n%s: burn rate per hour, last %d h (full block: %.2f×)\n  %s\n", s.Name, len(s.HourlyBurn), top, Sparkline(s.HourlyBurn))
	}
	return nil
}

// CheckData fails a report with an SLO without any event: a NoDataError
// naming the likely causes. window 0 means each SLO's own.
func CheckData(sts []Status, function, namespace, region string, window time.Duration) error {
	e := &NoDataError{Function: function, Namespace: namespace, Region: region, Window: window}
	for _, s := range sts {
		if s.NoData {
			e.SLOs = append(e.SLOs, s.Name)
			e.AsOf = s.AsOf
			if window == 0 {
				e.Window = time.Duration(s.WindowDays) * 24 * time.Hour
			}
		}
	}
	if len(e.SLOs) > 0 {
		return e
	}
	return nil
}

// Retryer is the report's retry policy: the SDK's standard retryer (it
// retries throttling and transient errors with exponential back-off and
// jitter), with more attempts and a 20 s cap, for reports that read many
// pages against GetMetricData's per-account rate.
func Retryer() aws.Retryer { return retryer(nil) }

// retryer is Retryer with another back-off (tests: none).
func retryer(backoff retry.BackoffDelayer) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 8
		o.MaxBackoff = 20 * time.Second
		if backoff != nil {
			o.Backoff = backoff
		}
		// The client-side retry quota would stop retrying a long run of
		// throttles before MaxAttempts; the back-off is the brake.
		o.RateLimiter = ratelimit.None
	})
}

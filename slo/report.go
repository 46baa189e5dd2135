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
	Name       string             `json:"name"`
	Objective  float64            `json:"objective"`
	WindowDays int                `json:"window_days"`
	Total      float64            `json:"total_events"`
	Bad        float64            `json:"bad_events"`
	Attainment float64            `json:"attainment"`  // good / total; 1 with no events
	BudgetLeft float64            `json:"budget_left"` // 1 − (bad/total)/(1−objective); negative when overspent
	Burn       map[string]float64 `json:"burn_rate"`   // trailing window → burn rate
	// HourlyBurn is the burn rate of each of the last 72 hours, oldest
	// first (0 for an hour without events).
	HourlyBurn []float64 `json:"hourly_burn"`
}

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
	st := Status{Name: spec.Name, Objective: spec.Objective, WindowDays: int(window / (24 * time.Hour)), Burn: map[string]float64{}}
	from := end.Add(-window)
	ex := sumSince(h.Excluded, from)
	st.Bad, st.Total = max(0, sumSince(h.Bad, from)-ex), max(0, sumSince(h.Total, from)-ex)
	st.Attainment, st.BudgetLeft = 1, 1-spec.Burn(st.Bad, st.Total, 0)
	if st.Total > 0 {
		st.Attainment = 1 - st.Bad/st.Total
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

// PrintTable writes statuses as a human table.
func PrintTable(w io.Writer, sts []Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "SLO\tobjective\twindow\tevents\tbad\tattainment\tbudget left")
	for _, d := range BurnWindows() {
		fmt.Fprintf(tw, "\tburn %s", durName(d))
	}
	fmt.Fprintln(tw)
	for _, s := range sts {
		fmt.Fprintf(tw, "%s\t%.4g%%\t%dd\t%.0f\t%.0f\t%.4f%%\t%.1f%%", s.Name, 100*s.Objective, s.WindowDays, s.Total, s.Bad, 100*s.Attainment, 100*s.BudgetLeft)
		for _, d := range BurnWindows() {
			fmt.Fprintf(tw, "\t%.2f×", s.Burn[durName(d)])
		}
		fmt.Fprintln(tw)
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

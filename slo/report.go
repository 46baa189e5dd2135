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

// Hourly is an SLI read from CloudWatch: bad and total events per hour.
type Hourly struct {
	Bad, Total map[time.Time]float64
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

// Compute evaluates spec on h, for the window ending at end.
func Compute(spec Spec, h Hourly, end time.Time, window time.Duration) Status {
	st := Status{Name: spec.Name, Objective: spec.Objective, WindowDays: int(window / (24 * time.Hour)), Burn: map[string]float64{}}
	from := end.Add(-window)
	st.Bad, st.Total = sumSince(h.Bad, from), sumSince(h.Total, from)
	st.Attainment, st.BudgetLeft = 1, 1
	if st.Total > 0 {
		st.Attainment = 1 - st.Bad/st.Total
		st.BudgetLeft = 1 - (st.Bad/st.Total)/spec.ErrorBudget()
	}
	for _, w := range BurnWindows() {
		bad, total := sumSince(h.Bad, end.Add(-w)), sumSince(h.Total, end.Add(-w))
		burn := 0.0
		if total > 0 {
			burn = (bad / total) / spec.ErrorBudget()
		}
		st.Burn[durName(w)] = burn
	}
	return st
}

// Fetch reads the hourly SLI series of every spec from CloudWatch with
// GetMetricData (all pages) for the window ending at end.
func Fetch(ctx context.Context, cw *cloudwatch.Client, specs []Spec, namespace, function string, end time.Time, window time.Duration) ([]Hourly, error) {
	var queries []types.MetricDataQuery
	q := func(id string, qq Query) types.MetricDataQuery {
		return types.MetricDataQuery{Id: aws.String(id), ReturnData: aws.Bool(true), MetricStat: &types.MetricStat{
			Metric: &types.Metric{Namespace: aws.String(namespace), MetricName: aws.String(qq.Metric),
				Dimensions: []types.Dimension{{Name: aws.String(m.DimFunctionName), Value: aws.String(function)}}},
			Period: aws.Int32(3600), Stat: aws.String(qq.Stat)}}
	}
	for i, s := range specs {
		queries = append(queries, q("bad"+strconv.Itoa(i), s.SLI.Bad), q("total"+strconv.Itoa(i), s.SLI.Total))
	}
	out := make([]Hourly, len(specs))
	for i := range out {
		out[i] = Hourly{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}}
	}
	p := cloudwatch.NewGetMetricDataPaginator(cw, &cloudwatch.GetMetricDataInput{
		MetricDataQueries: queries, StartTime: aws.Time(end.Add(-window)), EndTime: aws.Time(end), ScanBy: types.ScanByTimestampAscending})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("GetMetricData: %w", err)
		}
		for _, r := range page.MetricDataResults {
			id := aws.ToString(r.Id)
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
	return tw.Flush()
}

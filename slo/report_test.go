package slo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/smithy-go/encoding/cbor"
)

// fakeCloudWatch speaks CloudWatch's GetMetricData over the wire protocol the
// SDK uses (Smithy RPC v2 CBOR): it decodes and checks every request and
// answers in the documented shape, two pages per query set.
type fakeCloudWatch struct {
	t        *testing.T
	mu       sync.Mutex
	now      time.Time                    // when CloudWatch gets the request: its rounding depends on it
	series   map[string]map[int64]float64 // "Metric/Stat" → epoch seconds of a 5-minute slot → value
	requests int
	throttle int          // answer this many requests with a Throttling error first
	pages    map[bool]int // requests for the first page (false) and the second (true)
	status   string       // StatusCode of every result; "" Complete
	message  string       // a page-level message, if any
}

// roundStart rounds a StartTime as CloudWatch documents it: down to the
// minute when less than 15 days old, to 5 minutes up to 63 days, to the
// hour beyond.
func (f *fakeCloudWatch) roundStart(sec int64) int64 {
	age := f.now.Sub(time.Unix(sec, 0))
	switch {
	case age < 15*24*time.Hour:
		return sec - sec%60
	case age < 63*24*time.Hour:
		return sec - sec%300
	}
	return sec - sec%3600
}

func asMap(t *testing.T, v cbor.Value, what string) cbor.Map {
	m, ok := v.(cbor.Map)
	if !ok {
		t.Fatalf("%s is %T, not a CBOR map", what, v)
	}
	return m
}

func str(v cbor.Value) string { s, _ := v.(cbor.String); return string(s) }

func epoch(t *testing.T, v cbor.Value) int64 {
	var tag cbor.Tag
	switch x := v.(type) {
	case cbor.Tag:
		tag = x
	case *cbor.Tag:
		tag = *x
	}
	if tag.ID != 1 {
		t.Fatalf("timestamp %#v is not CBOR tag 1", v)
	}
	switch x := tag.Value.(type) {
	case cbor.Float64:
		return int64(x)
	case cbor.Uint:
		return int64(x)
	}
	t.Fatalf("timestamp value %T", tag.Value)
	return 0
}

func (f *fakeCloudWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	f.mu.Lock()
	f.requests++
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/service/GraniteServiceVersion20100801/operation/GetMetricData" ||
		r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor" || r.Header.Get("Content-Type") != "application/cbor" {
		t.Errorf("request %s %s smithy-protocol=%q content-type=%q", r.Method, r.URL.Path, r.Header.Get("Smithy-Protocol"), r.Header.Get("Content-Type"))
	}
	if a := r.Header.Get("Authorization"); !strings.HasPrefix(a, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(a, "/eu-west-1/monitoring/aws4_request") {
		t.Errorf("not SigV4-signed for monitoring in eu-west-1: %q", a)
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	throttled := f.throttle > 0
	f.throttle--
	f.mu.Unlock()
	if throttled {
		// CloudWatch's rate limit, as RPC v2 CBOR carries errors: 400 and
		// the error's type in the body.
		w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
		w.Header().Set("Content-Type", "application/cbor")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(cbor.Encode(cbor.Map{"__type": cbor.String("Throttling"), "message": cbor.String("Rate exceeded")}))
		return
	}
	v, err := cbor.Decode(body)
	if err != nil {
		t.Fatalf("request body is not CBOR: %v", err)
	}
	in := asMap(t, v, "request")
	start, end := f.roundStart(epoch(t, in["StartTime"])), epoch(t, in["EndTime"])
	page2 := str(in["NextToken"]) == "page-2"
	if f.pages == nil {
		f.pages = map[bool]int{}
	}
	f.pages[page2]++
	var results cbor.List
	for _, qv := range in["MetricDataQueries"].(cbor.List) {
		q := asMap(t, qv, "query")
		ms := asMap(t, q["MetricStat"], "MetricStat")
		metric := asMap(t, ms["Metric"], "Metric")
		dims := metric["Dimensions"].(cbor.List)
		d0 := asMap(t, dims[0], "dimension")
		period, _ := ms["Period"].(cbor.Uint)
		if str(metric["Namespace"]) != "Streamlens" || str(d0["Name"]) != "FunctionName" || str(d0["Value"]) != "pricing" || period < 60 {
			t.Errorf("query %v", q)
		}
		key := str(metric["MetricName"]) + "/" + str(ms["Stat"])
		var ts, vals cbor.List
		// Buckets start at the rounded StartTime, as CloudWatch's do.
		for sec := start; sec < end; sec += int64(period) {
			// First page: the first half of the window; second page: the rest.
			if (sec < (start+end)/2) == page2 {
				continue
			}
			sum, any := 0.0, false
			for slot := sec - sec%300; slot < sec+int64(period) && slot < end; slot += 300 {
				if x, ok := f.series[key][slot]; ok && slot >= sec {
					sum, any = sum+x, true
				}
			}
			if any {
				ts = append(ts, cbor.Tag{ID: 1, Value: cbor.Float64(sec)})
				vals = append(vals, cbor.Float64(sum))
			}
		}
		status := f.status
		if status == "" {
			status = "Complete"
		}
		results = append(results, cbor.Map{"Id": q["Id"], "Label": cbor.String(key), "StatusCode": cbor.String(status),
			"Timestamps": ts, "Values": vals})
	}
	msgs := cbor.List{}
	if f.message != "" {
		msgs = append(msgs, cbor.Map{"Code": cbor.String("MaxQueryTimeRangeExceed"), "Value": cbor.String(f.message)})
	}
	out := cbor.Map{"MetricDataResults": results, "Messages": msgs}
	if !page2 {
		out["NextToken"] = cbor.String("page-2")
	}
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	_, _ = w.Write(cbor.Encode(out))
}

// newFake is a CloudWatch whose TTFBBudgetBreach series holds, per
// 5-minute slot over the last days days before now, 100 streams and 0.5 bad
// ones (0.5 %), except the last 6 hours before slotEnd: 5 bad (5 %).
func newFake(t *testing.T, now, slotEnd time.Time, days int) *fakeCloudWatch {
	f := &fakeCloudWatch{t: t, now: now, series: map[string]map[int64]float64{
		"TTFBBudgetBreach/Sum": {}, "TTFBBudgetBreach/SampleCount": {},
	}}
	for slot := slotEnd.Add(-time.Duration(days) * 24 * time.Hour); slot.Before(now); slot = slot.Add(5 * time.Minute) {
		f.series["TTFBBudgetBreach/SampleCount"][slot.Unix()] = 100
		bad := 0.5
		if !slot.Before(slotEnd.Add(-6 * time.Hour)) {
			bad = 5
		}
		f.series["TTFBBudgetBreach/Sum"][slot.Unix()] = bad
	}
	return f
}

func fakeClient(t *testing.T, f *fakeCloudWatch) *cloudwatch.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return cloudwatch.New(cloudwatch.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
}

// The report's window ends off the hour (12:37:23), as a real one does: the
// figures must be those of whole periods (CloudWatch rounds StartTime and
// starts its buckets there). Before, the "1h" burn was whatever a partial
// last bucket held: 1× during a 10× incident.
func TestReportAgainstCloudWatchWireProtocol(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 37, 23, 0, time.UTC)
	slotEnd := now.Truncate(5 * time.Minute) // 12:35: the last whole period
	window := 28 * 24 * time.Hour
	f := newFake(t, now, slotEnd, 28)
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Fetch(context.Background(), fakeClient(t, f), specs[:1], "Streamlens", "pricing", now, window)
	if err != nil {
		t.Fatal(err)
	}
	// Both pages, each at least once: the SDK may retry a request on a slow
	// machine, which is not what this test is about.
	if f.pages[false] == 0 || f.pages[true] == 0 {
		t.Errorf("%d requests, pages %v: want both pages read", f.requests, f.pages)
	}
	if !h[0].End.Equal(slotEnd) || h[0].Period != 5*time.Minute {
		t.Errorf("window ends %v, period %v", h[0].End, h[0].Period)
	}
	st := Compute(specs[0], h[0], window)
	slots := 28.0 * 24 * 12
	wantBad := 0.5*(slots-72) + 5*72
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if !near(st.Total, 100*slots) || !near(st.Bad, wantBad) {
		t.Fatalf("total %v bad %v, want %v %v", st.Total, st.Bad, 100*slots, wantBad)
	}
	if !near(st.Attainment, 1-wantBad/(100*slots)) || !near(st.BudgetLeft, 1-(wantBad/(100*slots))/0.01) {
		t.Errorf("attainment %v budget left %v", st.Attainment, st.BudgetLeft)
	}
	// 5 % bad over the last 6 hours against a 1 % budget: 5× burn; 24 h and
	// 72 h mix in the 0.5 % before.
	if !near(st.Burn["1h"], 5) || !near(st.Burn["6h"], 5) || !near(st.Burn["24h"], (5*72+0.5*216)/(100*288.0)/0.01) ||
		!near(st.Burn["72h"], (5*72+0.5*792)/(100*864.0)/0.01) {
		t.Errorf("burn %v", st.Burn)
	}
	// The last 72 hours, an hour each: 0.5× then the incident's 5× for 6.
	if len(st.HourlyBurn) != 72 || !near(st.HourlyBurn[0], 0.5) || !near(st.HourlyBurn[65], 0.5) || !near(st.HourlyBurn[66], 5) || !near(st.HourlyBurn[71], 5) {
		t.Errorf("hourly burn %v", st.HourlyBurn)
	}
	var buf bytes.Buffer
	if err := PrintTable(&buf, []Status{st}); err != nil || !strings.Contains(buf.String(), "ttfb") || !strings.Contains(buf.String(), "5.00×") ||
		!strings.Contains(buf.String(), strings.Repeat("▁", 66)+strings.Repeat("█", 6)) {
		t.Errorf("table %q %v", buf.String(), err)
	}
	if b, err := json.Marshal(st); err != nil || !strings.Contains(string(b), `"budget_left"`) {
		t.Errorf("json %s %v", b, err)
	}

	// A window beyond 63 days reads hourly data (CloudWatch keeps 5-minute
	// data for 63 days) and ends on the hour.
	f = newFake(t, now, now.Truncate(time.Hour), 90)
	h, err = Fetch(context.Background(), fakeClient(t, f), specs[:1], "Streamlens", "pricing", now, 90*24*time.Hour)
	if err != nil || h[0].Period != time.Hour || !h[0].End.Equal(now.Truncate(time.Hour)) {
		t.Fatalf("90 days: %v, period %v end %v", err, h[0].Period, h[0].End)
	}
	if st := Compute(specs[0], h[0], 90*24*time.Hour); !near(st.Burn["1h"], 5) || !near(st.Total, 100*90*24*12) {
		t.Errorf("90 days: burn %v total %v", st.Burn, st.Total)
	}

	// A window shorter than the burn windows still reads 72 h: the 6 h, 24 h
	// and 72 h burn rates are not the 1 h one repeated.
	f = newFake(t, now, slotEnd, 4)
	h, err = Fetch(context.Background(), fakeClient(t, f), specs[:1], "Streamlens", "pricing", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st := Compute(specs[0], h[0], time.Hour); !near(st.Total, 1200) || near(st.Burn["72h"], st.Burn["1h"]) {
		t.Errorf("--since 1h: total %v burn %v", st.Total, st.Burn)
	}
}

// A result CloudWatch could not complete, or a message it attaches, is an
// error: a report from part of the data would be a wrong report.
func TestReportRefusesIncompleteData(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 37, 23, 0, time.UTC)
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*fakeCloudWatch){
		func(f *fakeCloudWatch) { f.status = "InternalError" },
		func(f *fakeCloudWatch) { f.message = "query exceeds the maximum time range" },
	} {
		f := newFake(t, now, now.Truncate(5*time.Minute), 28)
		mod(f)
		if _, err := Fetch(context.Background(), fakeClient(t, f), specs[:1], "Streamlens", "pricing", now, 28*24*time.Hour); err == nil {
			t.Errorf("status %q message %q: no error", f.status, f.message)
		}
	}
}

// No events is no data, never "100 % attained": the report fails, naming
// the likely causes, and the table says "no data".
func TestComputeWithoutEvents(t *testing.T) {
	s := Spec{Name: "x", Objective: 0.999, WindowDays: 28}
	end := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	st := Compute(s, Series{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}, End: end}, 28*24*time.Hour)
	if !st.NoData || st.Attainment == 1 || st.BudgetLeft == 1 || st.Burn["1h"] != 0 || !st.AsOf.Equal(end) {
		t.Errorf("%+v", st)
	}
	var buf bytes.Buffer
	if err := PrintTable(&buf, []Status{st}); err != nil || strings.Contains(buf.String(), "100") || !strings.Contains(buf.String(), "no data") ||
		!strings.Contains(buf.String(), "as of 2026-12-07T06:00:00Z") {
		t.Errorf("table %q %v", buf.String(), err)
	}
	err := CheckData([]Status{st}, "pricing", "Streamlens", "eu-west-1", 0)
	var nd *NoDataError
	if !errors.As(err, &nd) {
		t.Fatalf("no data: %v", err)
	}
	for _, cause := range []string{`"pricing"`, "eu-west-1", "region is wrong", "layer is not attached", "672h0m0s", "2026-12-07T06:00:00Z"} {
		if !strings.Contains(err.Error(), cause) {
			t.Errorf("%q does not name %q", err, cause)
		}
	}
}

// The report says, per burn-rate pair of the alarms, the burn over both
// windows now and whether the pair fires, with the page's guard.
func TestReportAlertsNow(t *testing.T) {
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	series := func(perSlot, badLastHour float64) Series {
		h := Series{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}, Excluded: map[time.Time]float64{}, End: end, Period: 5 * time.Minute}
		for at := end.Add(-72 * time.Hour); at.Before(end); at = at.Add(5 * time.Minute) {
			h.Total[at] = perSlot
			if !at.Before(end.Add(-time.Hour)) {
				h.Bad[at] = badLastHour
			}
		}
		return h
	}
	firing := func(st Status) (out []string) {
		for _, a := range st.Alerts {
			if a.Firing {
				out = append(out, a.Severity+" "+a.Long+"/"+a.Short)
			}
		}
		return out
	}
	// ttfb at 20× (20 % bad) for the last hour: the 1 h page fires.
	st := Compute(specs[0], series(500, 100), 28*24*time.Hour)
	if !st.Page || st.Ticket || fmt.Sprint(firing(st)) != "[page 1h/5m]" || len(st.Alerts) != 4 {
		t.Errorf("20× for an hour: page %v ticket %v firing %v", st.Page, st.Ticket, firing(st))
	}
	var buf bytes.Buffer
	if err := PrintTable(&buf, []Status{st}); err != nil || !strings.Contains(buf.String(), "FIRING") {
		t.Errorf("table %q", buf.String())
	}
	// completeness with one bad event in the last hour among 12: 83× over
	// the budget, and one bad stream: the guard keeps the page quiet.
	c := Compute(specs[1], series(1, 1.0/12), 28*24*time.Hour)
	if c.Page || c.Alerts[0].BurnLong < 13.44 {
		t.Errorf("one bad stream: page %v alerts %+v", c.Page, c.Alerts[0])
	}
	buf.Reset()
	if err := PrintTable(&buf, []Status{c}); err != nil || !strings.Contains(buf.String(), "the page needs 5") {
		t.Errorf("table %q", buf.String())
	}
}

// Throttling is retried with back-off until CloudWatch answers.
func TestReportRetriesThrottling(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 37, 23, 0, time.UTC)
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(t, now, now.Truncate(5*time.Minute), 4)
	f.throttle = 4
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var waits int
	cw := cloudwatch.New(cloudwatch.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: retryer(backoffFunc(func(attempt int, err error) (time.Duration, error) {
			waits++
			return 0, nil
		}))})
	h, err := Fetch(context.Background(), cw, specs[:1], "Streamlens", "pricing", now, 72*time.Hour)
	if err != nil {
		t.Fatalf("after 4 throttles: %v", err)
	}
	if waits < 4 || len(h[0].Total) == 0 {
		t.Errorf("%d back-offs, %d periods", waits, len(h[0].Total))
	}
	f.throttle = 100
	if _, err := Fetch(context.Background(), cw, specs[:1], "Streamlens", "pricing", now, 72*time.Hour); err == nil || !strings.Contains(err.Error(), "Throttling") {
		t.Errorf("endless throttling: %v", err)
	}
}

type backoffFunc func(int, error) (time.Duration, error)

func (f backoffFunc) BackoffDelay(attempt int, err error) (time.Duration, error) {
	return f(attempt, err)
}

// The OpenSLO file says what slos.json says; what OpenSLO can say and
// streamlens cannot is refused with the reason.
func TestOpenSLOInput(t *testing.T) {
	fromJSON, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := Load("slos.openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", fromJSON) != fmt.Sprintf("%+v", fromYAML) {
		t.Errorf("JSON %+v\nOpenSLO %+v", fromJSON, fromYAML)
	}
	b, _ := os.ReadFile("slos.openslo.yaml")
	doc := string(b)[strings.Index(string(b), "apiVersion"):strings.Index(string(b), "---")]
	for why, bad := range map[string]string{
		"good count":      strings.Replace(doc, "bad:", "good:", 1),
		"calendar window": strings.Replace(doc, "isRolling: true", "isRolling: false", 1),
		"time slices":     strings.Replace(doc, "budgetingMethod: Occurrences", "budgetingMethod: Timeslices", 1),
		"other source":    strings.Replace(doc, "type: CloudWatch", "type: Prometheus", 1),
		"unknown metric":  strings.Replace(doc, "metricName: TTFBBudgetBreach", "metricName: Nope", 1),
		"hours":           strings.Replace(doc, "duration: 28d", "duration: 12h", 1),
	} {
		if _, err := ParseOpenSLO([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", why)
		}
	}
}

// FuzzParseOpenSLO: any input is refused with an error or read into specs
// that pass the same checks as the JSON ones, and the generator can use
// (every spec has its paging pair).
func FuzzParseOpenSLO(f *testing.F) {
	b, _ := os.ReadFile("slos.openslo.yaml")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := ParseOpenSLO(b)
		if err != nil {
			return
		}
		if _, err := check(specs); err != nil {
			t.Errorf("accepted specs that fail the checks: %v", err)
		}
		for _, s := range specs {
			if len(s.Windows()) == 0 {
				t.Errorf("%s: no burn-rate window", s.Name)
			}
		}
	})
}

// Excluded events (a caller gone, a stream not judged) come out of both
// counts: in the report, and in the alarms' metric math.
func TestExcludedEventsLeaveBothCounts(t *testing.T) {
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	c := specs[1]
	if c.Name != "completeness" || len(c.SLI.Exclude) != 2 {
		t.Fatalf("%+v", c)
	}
	end := time.Date(2026, 11, 22, 12, 35, 0, 0, time.UTC)
	h := Series{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}, Excluded: map[time.Time]float64{}, End: end}
	at := end.Add(-30 * time.Minute)
	h.Total[at], h.Bad[at], h.Excluded[at] = 1000, 3, 2 // 2 of the 3 truncations are callers gone
	st := Compute(c, h, 28*24*time.Hour)
	if st.Total != 998 || st.Bad != 1 || math.Abs(st.Burn["1h"]-(1.0/998)/0.001) > 1e-9 {
		t.Errorf("%+v", st)
	}
	if got := c.BurnExpression("bad", "total", c.ExcludeIDs("")...); got !=
		"IF(total - (FILL(x0, 0) + FILL(x1, 0)) > 0, ((bad - (FILL(x0, 0) + FILL(x1, 0))) / (total - (FILL(x0, 0) + FILL(x1, 0)))) / 0.001, 0)" {
		t.Errorf("expression %s", got)
	}
	a := Module(specs)["resource"].(map[string]any)["aws_cloudwatch_metric_alarm"].(map[string]any)["completeness_burn_1h_13_44x"].(map[string]any)
	q := a["metric_query"].([]any)
	if len(q) != 5 || q[2].(map[string]any)["metric"].(map[string]any)["metric_name"] != "TruncationByCaller" {
		t.Errorf("queries %v", q)
	}
}

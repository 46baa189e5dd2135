package slo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
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
	series   map[string]map[int64]float64 // "Metric/Stat" → epoch seconds → value
	requests int
	pages    map[bool]int // requests for the first page (false) and the second (true)
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
	v, err := cbor.Decode(body)
	if err != nil {
		t.Fatalf("request body is not CBOR: %v", err)
	}
	in := asMap(t, v, "request")
	start, end := epoch(t, in["StartTime"]), epoch(t, in["EndTime"])
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
		if str(metric["Namespace"]) != "Streamlens" || str(d0["Name"]) != "FunctionName" || str(d0["Value"]) != "pricing" || ms["Period"] != cbor.Uint(3600) {
			t.Errorf("query %v", q)
		}
		key := str(metric["MetricName"]) + "/" + str(ms["Stat"])
		var ts, vals cbor.List
		for sec := start; sec < end; sec += 3600 {
			// First page: the first half of the window; second page: the rest.
			if (sec < (start+end)/2) == page2 {
				continue
			}
			if x, ok := f.series[key][sec]; ok {
				ts = append(ts, cbor.Tag{ID: 1, Value: cbor.Float64(sec)})
				vals = append(vals, cbor.Float64(x))
			}
		}
		results = append(results, cbor.Map{"Id": q["Id"], "Label": cbor.String(key), "StatusCode": cbor.String("Complete"),
			"Timestamps": ts, "Values": vals})
	}
	out := cbor.Map{"MetricDataResults": results, "Messages": cbor.List{}}
	if !page2 {
		out["NextToken"] = cbor.String("page-2")
	}
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	_, _ = w.Write(cbor.Encode(out))
}

func TestReportAgainstCloudWatchWireProtocol(t *testing.T) {
	end := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	window := 28 * 24 * time.Hour
	start := end.Add(-window)
	f := &fakeCloudWatch{t: t, series: map[string]map[int64]float64{
		"TTFBBudgetBreach/Sum": {}, "TTFBBudgetBreach/SampleCount": {},
	}}
	// 1000 streams an hour for 28 days; 5 over budget an hour, except the last
	// 6 hours: 50 an hour.
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		f.series["TTFBBudgetBreach/SampleCount"][h.Unix()] = 1000
		bad := 5.0
		if !h.Before(end.Add(-6 * time.Hour)) {
			bad = 50
		}
		f.series["TTFBBudgetBreach/Sum"][h.Unix()] = bad
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cw := cloudwatch.New(cloudwatch.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	specs, err := Load("slos.json")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Fetch(context.Background(), cw, specs[:1], "Streamlens", "pricing", end, window)
	if err != nil {
		t.Fatal(err)
	}
	// Both pages, each at least once: the SDK may retry a request on a slow
	// machine, which is not what this test is about.
	if f.pages[false] == 0 || f.pages[true] == 0 {
		t.Errorf("%d requests, pages %v: want both pages read", f.requests, f.pages)
	}
	st := Compute(specs[0], h[0], end, window)
	hours := 28.0 * 24
	wantBad := 5*(hours-6) + 50*6
	if st.Total != 1000*hours || st.Bad != wantBad {
		t.Fatalf("total %v bad %v, want %v %v", st.Total, st.Bad, 1000*hours, wantBad)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(st.Attainment, 1-wantBad/(1000*hours)) || !near(st.BudgetLeft, 1-(wantBad/(1000*hours))/0.01) {
		t.Errorf("attainment %v budget left %v", st.Attainment, st.BudgetLeft)
	}
	// 5 % bad over the last hours against a 1 % budget: 5× burn; 72 h mixes.
	if !near(st.Burn["1h"], 5) || !near(st.Burn["6h"], 5) || !near(st.Burn["72h"], (50*6+5*66)/(1000*72.0)/0.01) {
		t.Errorf("burn %v", st.Burn)
	}
	var buf bytes.Buffer
	if err := PrintTable(&buf, []Status{st}); err != nil || !strings.Contains(buf.String(), "ttfb") || !strings.Contains(buf.String(), "5.00×") {
		t.Errorf("table %q %v", buf.String(), err)
	}
	if b, err := json.Marshal(st); err != nil || !strings.Contains(string(b), `"budget_left"`) {
		t.Errorf("json %s %v", b, err)
	}
}

func TestComputeWithoutEvents(t *testing.T) {
	s := Spec{Name: "x", Objective: 0.999, WindowDays: 28}
	st := Compute(s, Hourly{Bad: map[time.Time]float64{}, Total: map[time.Time]float64{}}, time.Now(), 28*24*time.Hour)
	if st.Attainment != 1 || st.BudgetLeft != 1 || st.Burn["1h"] != 0 {
		t.Errorf("%+v", st)
	}
}

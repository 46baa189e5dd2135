package e2e

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
	"github.com/streamlens/streamlens/slo"
)

// sliEvents is what the SLO spec's queries read from the documents: the
// statistic (Sum or SampleCount) of one metric over every document.
func sliEvents(ds []doc, q slo.Query) float64 {
	var n float64
	for _, d := range ds {
		for _, v := range d.values(q.Metric) {
			if q.Stat == "SampleCount" {
				n++
			} else {
				n += v
			}
		}
	}
	return n
}

// burns is each SLO's burn rate over the documents, as the burn-rate alarms
// compute it from the same queries.
func burns(t *testing.T, ds []doc) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile("../../slo/slos.json")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := slo.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, s := range specs {
		var ex float64
		for _, q := range s.SLI.Exclude {
			ex += sliEvents(ds, q)
		}
		out[s.Name] = s.Burn(sliEvents(ds, s.SLI.Bad), sliEvents(ds, s.SLI.Total), ex)
	}
	return out
}

// pageBurn is the fastest page's burn factor of a 28-day SLO (the 1 h / 5 min
// pair): the rate at which an incident pages.
const pageBurn = 13.44

// An outage before the first byte (a dependency down: the handler fails
// before its stream starts) reaches both SLOs as a truncation incident does:
// every invocation's record is a bad event, with the platform's status and
// error type, although the function never sent a single event.
func TestOutageBeforeTheFirstByteBurnsBothSLOs(t *testing.T) {
	e := start(t, nil)
	for i := 0; i < 20; i++ {
		if res, _ := e.invoke(t, "down=1"); res.Status != "error" {
			t.Fatalf("%+v, want the handler's error", res)
		}
	}
	healthy, _ := e.invoke(t, "instruments=5")
	e.sb.Close()
	ds := e.log.waitDocs(t, "21 invocation records", func(ds []doc) bool { return len(invocationDocs(ds)) == 21 })
	failed, healthyOutcomes := 0, 0
	for _, d := range ds {
		if _, ok := d["StreamTruncated"]; ok && d.str("RequestId") == healthy.RequestID {
			healthyOutcomes++
		}
	}
	if healthyOutcomes != 1 {
		t.Errorf("the healthy invocation counts as %d outcomes, want 1 (its stream's)", healthyOutcomes)
	}
	for _, d := range invocationDocs(ds) {
		if d.str("RequestId") == healthy.RequestID {
			continue
		}
		if d.num("FailedBeforeFirstByte") != 1 || d.num("StreamTruncated") != 1 || d.num("TTFBBudgetBreach") != 1 ||
			d.str("TruncationReason") != "runtime-error" || d.str("InvocationStatus") != "error" || d.str("ErrorType") == "" {
			t.Errorf("record of a failed invocation: %v", d)
		}
		failed++
	}
	if failed != 20 {
		t.Errorf("%d outcomes of failed invocations, want 20", failed)
	}
	for name, b := range burns(t, ds) {
		if b < pageBurn {
			t.Errorf("SLO %s burns at %.1f×, under the page's %.2f×: the outage pages nobody", name, b, pageBurn)
		}
		t.Logf("figure: SLO %s burns at %.0f× with 20 of 21 invocations failing before the first byte", name, b)
	}
}

// A stream that hangs to its timeout is a service truncation stamped when it
// ended, not when it started: a burn window that ends now sees it.
func TestHungStreamLandsWhereTheAlarmLooks(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.Timeout = 1500 * time.Millisecond })
	res, _ := e.invoke(t, "instruments=5&hang_after=2")
	if res.Status != "timeout" {
		t.Fatalf("%+v", res)
	}
	d := e.onlyStream(t)
	written := time.Now()
	aws, _ := d["_aws"].(map[string]any)
	ts, _ := aws["Timestamp"].(float64)
	stamped := time.UnixMilli(int64(ts))
	if d.str("TruncationReason") != "runtime-timeout" || d.num("StreamTruncated") != 1 {
		t.Errorf("%v", d)
	}
	// Stamped at the timeout: within the last minute, and after the start.
	if age := written.Sub(stamped); age < 0 || age > time.Minute || stamped.Before(written.Add(-res.Duration)) {
		t.Errorf("stamped %v before it was read, the stream lasted %v", age, res.Duration)
	}
}

// Lambda Managed Instances: no runtimeDone, so platform.report judges. A
// stream whose code hangs past the timeout is truncated at its report with
// the report's status, not parked until spin-down; one whose code finishes
// after the timeout (its code runs on) is still a timeout, not complete.
func TestManagedInstancesJudgedAtTheReport(t *testing.T) {
	e := start(t, func(c *sandbox.Config) { c.MaxConcurrency = 4; c.Timeout = time.Second })
	var wg sync.WaitGroup
	var hung, late sandbox.Result
	wg.Add(2)
	go func() { defer wg.Done(); hung, _ = e.invoke(t, "instruments=5&hang_after=2") }()
	go func() { defer wg.Done(); late, _ = e.invoke(t, "instruments=4&delay_ms=400") }()
	wg.Wait()
	if hung.Status != "timeout" || late.Status != "timeout" {
		t.Fatalf("%+v %+v, want two timeouts", hung, late)
	}
	ds := e.log.waitDocs(t, "both streams judged before any shutdown", func(ds []doc) bool { return len(streamDocs(ds)) == 2 })
	for _, d := range streamDocs(ds) {
		if d.str("TruncationReason") != "runtime-timeout" || d.num("StreamTruncated") != 1 || d["TruncationUnobserved"] != nil {
			t.Errorf("stream of %s: %v", d.str("RequestId"), d)
		}
	}
	e.sb.Close()
	ds = e.log.waitDocs(t, "2 invocation records", func(ds []doc) bool { return len(invocationDocs(ds)) == 2 })
	for _, d := range invocationDocs(ds) {
		if d.str("InvocationStatus") != "timeout" || d["RuntimeDoneMissing"] != nil || d["ResponseLatency"] == nil {
			t.Errorf("record %v", d)
		}
	}
}

// Lambda Managed Instances at 128 invocations at once: every invocation's
// record is written, none lost to a bound meant for made-up request ids.
func TestManagedInstancesLoseNoRecord(t *testing.T) {
	const concurrency, total = 128, 600
	e := start(t, func(c *sandbox.Config) { c.MaxConcurrency = concurrency; c.Timeout = 10 * time.Second })
	var wg sync.WaitGroup
	ids := make(chan string, total)
	work := make(chan struct{}, total)
	for i := 0; i < total; i++ {
		work <- struct{}{}
	}
	close(work)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				res, _ := e.invoke(t, "instruments=3&delay_ms=0")
				if res.Status != "success" {
					t.Errorf("%+v", res)
				}
				ids <- res.RequestID
			}
		}()
	}
	wg.Wait()
	close(ids)
	e.sb.Close()
	ds := e.log.waitDocs(t, fmt.Sprintf("%d invocation records", total), func(ds []doc) bool { return len(invocationDocs(ds)) >= total })
	got := map[string]bool{}
	reported := 0
	for _, d := range invocationDocs(ds) {
		got[d.str("RequestId")] = true
		if _, ok := d["ResponseLatency"]; ok {
			reported++ // its platform.report arrived: the record has the platform's word
		}
	}
	lost := 0
	for id := range ids {
		if !got[id] {
			lost++
		}
	}
	if lost != 0 || len(streamDocs(ds)) != total {
		t.Errorf("%d of %d invocation records lost, %d stream documents", lost, total, len(streamDocs(ds)))
	}
	t.Logf("figure: Managed Instances, %d at once × %d: %d records lost, %d with their platform.report", concurrency, total, lost, reported)
}

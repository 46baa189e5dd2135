package e2e

import (
	"context"
	"io"
	"math"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/probe"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// BenchmarkScenarioProbeVsCurl: the probe's first byte against curl's
// time_starttransfer on the same function URL, requests interleaved one by
// one (each on a fresh connection, as both make them). The goal: p50 within
// 0.5 ms. Run with -benchtime=1x.
func BenchmarkScenarioProbeVsCurl(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skip("SKIPPED LOUDLY: curl is not on this machine: the probe is not compared with it")
	}
	sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Timeout: 10 * time.Second, InitType: "provisioned-concurrency",
		Log: io.Discard, Env: []string{"STREAMLENS_ADDR=off"}})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	srv := httptest.NewServer(sb.URLHandler())
	defer srv.Close()
	url := srv.URL + "/?instruments=5&delay_ms=0&first_delay_ms=5"
	for b.Loop() {
		var withProbe, withCurl []float64
		for i := 0; i < 60; i++ {
			r, err := probe.Run(context.Background(), probe.Config{URL: url})
			if err != nil || r.Truncated {
				b.Fatalf("probe: %v %+v", err, r)
			}
			out, err := exec.Command(curl, "-s", "-N", "-o", "/dev/null", "-w", "%{time_starttransfer}", url).Output()
			if err != nil {
				b.Fatalf("curl: %v", err)
			}
			s, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				b.Fatalf("curl said %q", out)
			}
			if i < 10 {
				continue // both warm up
			}
			withProbe = append(withProbe, float64(r.TTFB)/float64(time.Millisecond))
			withCurl = append(withCurl, s*1000)
		}
		p, c := median(withProbe), median(withCurl)
		b.ReportMetric(p, "probe-ttfb-p50-ms")
		b.ReportMetric(c, "curl-ttfb-p50-ms")
		b.ReportMetric(math.Abs(p-c), "abs-diff-p50-ms")
	}
}

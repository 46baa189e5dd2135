package e2e

import (
	"encoding/json"
	"io"
	"math"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/probe"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// BenchmarkScenarioProbeVsCurl: the probe's first byte against curl's
// time_starttransfer on the same function URL, as a user compares them:
// each a command of its own, a fresh process a request (each on a fresh
// connection), interleaved one by one. The goal: p50 within 0.5 ms. Run
// with -benchtime=1x.
//
// A process per request is the case that matters: a probe measured warm,
// inside a long-lived process, read 0.5 ms earlier than curl while the
// command read 0.9–1 ms later, before it warmed itself up (probe.Run).
func BenchmarkScenarioProbeVsCurl(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skip("SKIPPED LOUDLY: curl is not on this machine: the probe is not compared with it")
	}
	probeBin := filepath.Join(b.TempDir(), "probe")
	build := exec.Command("go", "build", "-o", probeBin, "./cmd/probe")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build probe: %v\n%s", err, out)
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
			out, err := exec.Command(probeBin, "-json", url).Output()
			if err != nil {
				b.Fatalf("probe: %v: %s", err, out)
			}
			var r probe.Result
			if err := json.Unmarshal(out, &r); err != nil || r.Truncated {
				b.Fatalf("probe said %s (%v)", out, err)
			}
			out, err = exec.Command(curl, "-s", "-N", "-o", "/dev/null", "-w", "%{time_starttransfer}", url).Output()
			if err != nil {
				b.Fatalf("curl: %v", err)
			}
			s, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
			if err != nil {
				b.Fatalf("curl said %q", out)
			}
			if i < 10 {
				continue // the function and the sandbox warm up
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

package e2e

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/benchround"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// overheadRound runs n invocations of a bundle of instruments chunks with
// extension ext (default configuration, OTLP off: no collector), after warm
// unmeasured ones (page faults, first-time paths), and returns each
// measured one's post-runtime time as the sandbox measured it (report −
// runtimeDone) and the extension process's CPU time per invocation, and
// the user-space part of that CPU over all n invocations (clock ticks).
func overheadRound(b *testing.B, ext string, n, instruments, warm int) (post []time.Duration, cpuPerInvoke, user time.Duration) {
	b.Helper()
	sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Extensions: []string{ext}, Timeout: 10 * time.Second,
		Freeze: true, InitType: "provisioned-concurrency", Log: io.Discard,
		Env: []string{"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(freeUDPPort(b)), "STREAMLENS_OTLP=off"}})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	ev := []byte(`{"queryStringParameters":{"instruments":"` + strconv.Itoa(instruments) + `","delay_ms":"0"}}`)
	pid := sb.Extensions()[0].PID
	var cpu0, user0 time.Duration
	for i := 0; i < warm+n; i++ {
		if i == warm {
			cpu0, user0 = procCPU(pid), procUser(pid)
		}
		res, err := sb.Invoke(b.Context(), ev, io.Discard)
		if err != nil || res.Status != "success" {
			b.Fatalf("invocation %d: %+v %v", i, res, err)
		}
		if i >= warm {
			post = append(post, res.PostRuntime())
		}
	}
	return post, (procCPU(pid) - cpu0) / time.Duration(n), procUser(pid) - user0
}

// procUser is a process's user-space CPU time, all threads, from
// /proc/PID/stat: in clock ticks (10 ms), so only a sum over many
// invocations says anything.
func procUser(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // from field 3, the state
	if len(f) < 12 {
		return 0
	}
	ticks, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	return time.Duration(ticks) * 10 * time.Millisecond
}

// procCPU is a process's CPU time, summed over its threads from
// /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat counts 10 ms ticks,
// too coarse for a baseline of ~0.1 ms per invocation). Threads that exited
// are not counted; a Go process keeps its threads.
func procCPU(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

func pct(d []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
}

// BenchmarkScenarioPostRuntime: what streamlens adds to an invocation after
// the runtime finished (platform.report − runtimeDone, measured by the strict
// sandbox) and its CPU per invocation, against a minimal extension, in rounds
// that alternate the two so machine noise hits both. Ratios are per round;
// min/median/max over the rounds. Run with -benchtime=1x.
func BenchmarkScenarioPostRuntime(b *testing.B) {
	dir := b.TempDir()
	sl := filepath.Join(dir, "a", "streamlens")
	minext := filepath.Join(dir, "b", "minext")
	buildTo(b, sl, "./cmd/streamlens", "CGO_ENABLED=0")
	buildTo(b, minext, "./internal/e2e/testdata/minext", "CGO_ENABLED=0")
	const rounds, n = 5, 200
	for b.Loop() {
		var sPost, mPost []time.Duration
		var p50, p99, cpu []float64
		var sCPU, mCPU time.Duration
		for r := 0; r < rounds; r++ {
			sp, sc, _ := overheadRound(b, sl, n, 50, 0)
			mp, mc, _ := overheadRound(b, minext, n, 50, 0)
			sPost, mPost = append(sPost, sp...), append(mPost, mp...)
			sCPU, mCPU = sCPU+sc, mCPU+mc
			p50 = append(p50, pct(sp, 0.5)/pct(mp, 0.5))
			p99 = append(p99, pct(sp, 0.99)/pct(mp, 0.99))
			cpu = append(cpu, float64(sc+time.Microsecond)/float64(mc+time.Microsecond))
		}
		b.ReportMetric(pct(sPost, 0.5), "post-runtime-p50-ms")
		b.ReportMetric(pct(sPost, 0.99), "post-runtime-p99-ms")
		b.ReportMetric(pct(mPost, 0.5), "baseline-post-runtime-p50-ms")
		b.ReportMetric(pct(mPost, 0.99), "baseline-post-runtime-p99-ms")
		b.ReportMetric(float64(sCPU.Microseconds())/1000/rounds, "cpu-ms/invoke")
		b.ReportMetric(float64(mCPU.Microseconds())/1000/rounds, "baseline-cpu-ms/invoke")
		for name, v := range map[string][]float64{"p50": p50, "p99": p99, "cpu": cpu} {
			benchround.Spread(b, v, name+"/baseline-")
		}
	}
}

// BenchmarkScenarioCPUPerEvent: the extension's CPU for one more chunk
// event — the slope between invocations of 50 and of 500 instruments, in
// interleaved rounds — against decoding and applying one event alone
// (BenchmarkIngest): what a chunk costs the extension beyond the fixed
// cost of an invocation (event/next, telemetry, the flush). -benchtime=1x.
func BenchmarkScenarioCPUPerEvent(b *testing.B) {
	const rounds, n = 5, 100
	for b.Loop() {
		var slopes []float64
		var userSmall, userLarge time.Duration
		for r := 0; r < rounds; r++ {
			_, small, us := overheadRound(b, bins.extension, n, 50, 10)
			_, large, ul := overheadRound(b, bins.extension, n, 500, 10)
			slopes = append(slopes, float64((large-small).Nanoseconds())/450)
			userSmall, userLarge = userSmall+us, userLarge+ul
		}
		benchround.Spread(b, slopes, "ns/event-")
		// The extension's own code, without the system's share (wake-ups,
		// scheduling, the reads themselves): summed over every round, since
		// user time comes in 10 ms ticks.
		b.ReportMetric(float64((userLarge-userSmall).Nanoseconds())/(450*rounds*n), "user-ns/event")
	}
}

package e2e

import (
	"io"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/benchround"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// ttfbConfig is one way of running the pricing function.
type ttfbConfig struct {
	name     string
	ext      string   // extension executable; "" none
	clientOn bool     // the function's streamlens client sends (else STREAMLENS_ADDR=off)
	env      []string // more environment
}

// ttfbSandbox starts the pricing function as c says, capped like a 128 MB
// function when capped.
func ttfbSandbox(b *testing.B, c ttfbConfig, capped bool) *sandbox.Sandbox {
	b.Helper()
	cfg := sandbox.Config{Function: bins.function, Timeout: 10 * time.Second, Freeze: true, InitType: "provisioned-concurrency",
		Log: io.Discard, CapResources: capped, MemoryMB: 128, Env: []string{"STREAMLENS_ADDR=off"}}
	if c.ext != "" {
		cfg.Extensions = []string{c.ext}
	}
	if c.clientOn {
		// OTLP off: no collector here (spans go out after the next first
		// chunk, not before it, in any case).
		cfg.Env = []string{"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(freeUDPPort(b)), "STREAMLENS_OTLP=off"}
	}
	cfg.Env = append(cfg.Env, c.env...)
	sb, err := sandbox.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	return sb
}

// ttfbRound invokes sb n times (a 50-instrument bundle) and returns each
// invocation's time to first byte as the platform sees it (invoke → first
// response byte).
func ttfbRound(b *testing.B, sb *sandbox.Sandbox, n int) []time.Duration {
	ev := []byte(`{"queryStringParameters":{"instruments":"50","delay_ms":"0"}}`)
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		res, err := sb.Invoke(b.Context(), ev, io.Discard)
		if err != nil || res.Status != "success" {
			b.Fatalf("invocation %d: %+v %v", i, res, err)
		}
		out = append(out, res.ResponseLatency)
	}
	return out
}

// BenchmarkScenarioTTFB: the time to first byte streamlens (client and
// extension) adds to a streaming function, against the same function with
// the client off and no extension, in rounds that alternate the
// configurations (all environments exist throughout, the idle ones frozen),
// uncapped and capped like a 128 MB function (7 % of a core, where cgroups
// allow). Ratios of p50 and p99 per round; min/median/max over the rounds.
// -benchtime=1x.
//
// Beside them, what bounds any extension: floorext (testdata) registers and
// asks next again with blocking system calls under SCHED_IDLE, the least an
// extension woken by INVOKE can do; registered for SHUTDOWN only it is
// never woken by an invocation, and what it costs is that of one more
// process frozen and thawed with the function.
func BenchmarkScenarioTTFB(b *testing.B) {
	minext := filepath.Join(b.TempDir(), "minext")
	buildTo(b, minext, "./internal/e2e/testdata/minext", "CGO_ENABLED=0")
	floorext := filepath.Join(b.TempDir(), "floorext")
	buildTo(b, floorext, "./internal/e2e/testdata/floorext", "CGO_ENABLED=0")
	none := ttfbConfig{name: "none"}
	full := ttfbConfig{name: "streamlens", ext: bins.extension, clientOn: true}
	floor := ttfbConfig{name: "floor-extension", ext: floorext}
	for _, capped := range []bool{false, true} {
		// Uncapped, a round's p99 is the 5th slowest of 400 invocations: as
		// the 3rd slowest of 200 it swung between 0.8 and 1.5 of none's.
		name, configs, n := "uncapped", []ttfbConfig{none, full, floor,
			{name: "client-only", clientOn: true}, {name: "minimal-extension", ext: minext},
			{name: "shutdown-only-extension", ext: floorext, env: []string{"FLOOREXT_EVENTS=SHUTDOWN"}},
			{name: "streamlens-normal-priority", ext: bins.extension, clientOn: true, env: []string{"STREAMLENS_SCHED_IDLE=off"}}}, 400
		if capped {
			// 7 % of a core: fewer invocations, and only the ones that decide.
			name, configs, n = "capped128", []ttfbConfig{none, full, floor}, 100
		}
		b.Run(name, func(b *testing.B) {
			const rounds = 5
			for b.Loop() {
				sbs := make([]*sandbox.Sandbox, len(configs))
				for i, c := range configs {
					sbs[i] = ttfbSandbox(b, c, capped)
					ttfbRound(b, sbs[i], 20) // warm: first invocations pay for page faults
				}
				p50 := make([][]float64, len(configs))
				p99 := make([][]float64, len(configs))
				for r := 0; r < rounds; r++ {
					for i := range configs {
						t := ttfbRound(b, sbs[i], n)
						p50[i], p99[i] = append(p50[i], pct(t, 0.5)), append(p99[i], pct(t, 0.99))
					}
				}
				// Each configuration against none, and streamlens against the
				// floor under it (configs[1] against configs[2] in both lists).
				spread := func(i, base int, suffix string) {
					for _, q := range []struct {
						name string
						v    [][]float64
					}{{"p50", p50}, {"p99", p99}} {
						ratios := make([]float64, rounds)
						for r := range ratios {
							ratios[r] = q.v[i][r] / q.v[base][r]
						}
						benchround.Spread(b, ratios, configs[i].name+"-"+q.name+"/"+suffix+"/")
					}
				}
				for i, c := range configs {
					b.ReportMetric(median(p50[i]), c.name+"-p50-ms")
					b.ReportMetric(median(p99[i]), c.name+"-p99-ms")
					if i > 0 {
						spread(i, 0, "none")
					}
				}
				spread(1, 2, "floor")
			}
		})
	}
}

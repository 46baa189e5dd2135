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
	ext      string // extension executable; "" none
	clientOn bool   // the function's streamlens client sends (else STREAMLENS_ADDR=off)
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
// the client off and no extension, in rounds that alternate the two (both
// environments exist throughout, the idle one frozen), uncapped and capped
// like a 128 MB function (7 % of a core, where cgroups allow). Ratios of
// p50 and p99 per round; min/median/max over the rounds. -benchtime=1x.
func BenchmarkScenarioTTFB(b *testing.B) {
	minext := filepath.Join(b.TempDir(), "minext")
	buildTo(b, minext, "./internal/e2e/testdata/minext", "CGO_ENABLED=0")
	none := ttfbConfig{name: "none"}
	full := ttfbConfig{name: "streamlens", ext: bins.extension, clientOn: true}
	for _, capped := range []bool{false, true} {
		name, configs, n := "uncapped", []ttfbConfig{none, full,
			{name: "client-only", clientOn: true}, {name: "minimal-extension", ext: minext}}, 200
		if capped {
			// 7 % of a core: fewer invocations, and only the two that decide.
			name, configs, n = "capped128", []ttfbConfig{none, full}, 100
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
				for i, c := range configs {
					b.ReportMetric(median(p50[i]), c.name+"-p50-ms")
					b.ReportMetric(median(p99[i]), c.name+"-p99-ms")
					if i == 0 {
						continue
					}
					for _, q := range []struct {
						name string
						v    [][]float64
					}{{"p50", p50}, {"p99", p99}} {
						ratios := make([]float64, rounds)
						for r := range ratios {
							ratios[r] = q.v[i][r] / q.v[0][r]
						}
						benchround.Spread(b, ratios, c.name+"-"+q.name+"/none/")
					}
				}
			}
		})
	}
}

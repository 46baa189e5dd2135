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

// nodeTTFBConfig is one way of running the Node pricing function
// (examples/node-pricing zero-code.handler, which has no streamlens code).
type nodeTTFBConfig struct {
	name    string
	ext     bool // the streamlens extension runs beside the function
	wrapper bool // AWS_LAMBDA_EXEC_WRAPPER: the layer's exec wrapper preloads auto.js
}

// nodeTTFBSandbox starts the Node function as c says, under AWS's RIC, with
// the layer's files laid out as Lambda unpacks them (optDir).
func nodeTTFBSandbox(b *testing.B, ric, opt string, c nodeTTFBConfig) *sandbox.Sandbox {
	b.Helper()
	fn, err := filepath.Abs("../../examples/node-pricing/bootstrap")
	if err != nil {
		b.Fatal(err)
	}
	cfg := sandbox.Config{Function: fn, Timeout: 10 * time.Second, InitTimeout: 10 * time.Second, Freeze: true,
		InitType: "provisioned-concurrency", Log: io.Discard, MemoryMB: 128,
		Env: []string{"_HANDLER=zero-code.handler", "LAMBDA_TASK_ROOT=" + filepath.Dir(fn), "STREAMLENS_NODE_RIC=" + ric,
			// OTLP off: no collector here.
			"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(freeUDPPort(b)), "STREAMLENS_OTLP=off"}}
	if c.ext {
		cfg.Extensions = []string{bins.extension}
	}
	if c.wrapper {
		cfg.Env = append(cfg.Env, "AWS_LAMBDA_EXEC_WRAPPER="+filepath.Join(opt, "streamlens-node"),
			"STREAMLENS_NODE_AUTO="+filepath.Join(opt, "streamlens/node/auto.js"))
	}
	sb, err := sandbox.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	return sb
}

// BenchmarkScenarioNodeTTFB: the caller's time to first byte (invoke →
// first response byte, as the platform sees it) of a Node streaming function
// measured zero-code (the layer's exec wrapper, auto.js, and the extension)
// against the same function uninstrumented (no wrapper, no extension), and
// against the extension alone (no wrapper: what the wrapper itself adds is
// zero-code / extension-only). Interleaved rounds (internal/benchround's
// method: every environment exists throughout, the idle ones frozen, each
// round runs each configuration in turn), uncapped; ratios of the p50 per
// round, min/median/max over the rounds. A 5-instrument bundle with
// delay_ms=0: the first quote waits one setTimeout(0), so the first byte
// is about the function's own minimum (each quote waits one more: 50
// would make the run ten times longer for the same first byte). Skips loudly without node or the
// RIC. -benchtime=1x.
func BenchmarkScenarioNodeTTFB(b *testing.B) {
	ric := nodeRIC(b)
	opt := optDir(b)
	configs := []nodeTTFBConfig{{name: "none"}, {name: "zero-code", ext: true, wrapper: true}, {name: "extension-only", ext: true}}
	const rounds, n = 5, 200
	ev := []byte(`{"queryStringParameters":{"instruments":"5","delay_ms":"0"}}`)
	round := func(sb *sandbox.Sandbox, n int) []time.Duration {
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
	for b.Loop() {
		sbs := make([]*sandbox.Sandbox, len(configs))
		for i, c := range configs {
			sbs[i] = nodeTTFBSandbox(b, ric, opt, c)
			round(sbs[i], 30) // warm: the first invocations pay for V8's compilation and page faults
		}
		p50 := make([][]float64, len(configs))
		for r := 0; r < rounds; r++ {
			for i := range configs {
				p50[i] = append(p50[i], pct(round(sbs[i], n), 0.5))
			}
		}
		ratio := func(i, base int) {
			v := make([]float64, rounds)
			for r := range v {
				v[r] = p50[i][r] / p50[base][r]
			}
			benchround.Spread(b, v, configs[i].name+"-p50/"+configs[base].name+"/")
		}
		for i, c := range configs {
			b.ReportMetric(median(p50[i]), c.name+"-p50-ms")
		}
		ratio(1, 0) // zero-code / none: the goal, ≤ 1.03
		ratio(2, 0) // extension-only / none
		ratio(1, 2) // zero-code / extension-only: the wrapper and auto.js alone
	}
}

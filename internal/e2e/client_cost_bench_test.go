package e2e

import (
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/benchround"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// BenchmarkScenarioClientCost: what the Go client costs the function — the
// pricing function with its client on (events in the ring: the default
// beside the extension), on over datagrams (STREAMLENS_RING_DIR=off, what
// it was before rings), and off (STREAMLENS_ADDR=off), the extension
// attached to all three. At the example's cadence (2 ms per instrument, 50
// instruments) and back to back (0 ms). Per round, each configuration's
// mean stream time (invoke → the caller's response ended) and the
// function process's CPU per invocation, as ratios to "off";
// min/median/max over interleaved rounds; beside them the extension's CPU
// per invocation in each configuration. -benchtime=1x.
func BenchmarkScenarioClientCost(b *testing.B) {
	type config struct {
		name string
		env  []string
	}
	configs := []config{
		{"off", []string{"STREAMLENS_ADDR=off"}},
		{"ring", nil},
		{"datagram", []string{"STREAMLENS_RING_DIR=off"}},
	}
	for _, cadence := range []struct {
		name  string
		delay string
		n     int
	}{{"cadence-2ms", "2", 20}, {"back-to-back", "0", 100}} {
		b.Run(cadence.name, func(b *testing.B) {
			const rounds = 5
			ev := []byte(`{"queryStringParameters":{"instruments":"50","delay_ms":"` + cadence.delay + `"}}`)
			for b.Loop() {
				sbs := make([]*sandbox.Sandbox, len(configs))
				for i, c := range configs {
					port := strconv.Itoa(freeUDPPort(b))
					sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Extensions: []string{bins.extension},
						Timeout: 10 * time.Second, Freeze: true, InitType: "provisioned-concurrency", Log: io.Discard,
						Env: append([]string{"STREAMLENS_ADDR=127.0.0.1:" + port, "STREAMLENS_OTLP=off"}, c.env...)})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { sb.Close() })
					sbs[i] = sb
					for range 5 { // warm: page faults, first-time paths
						sb.Invoke(b.Context(), ev, io.Discard)
					}
				}
				stream := make([][]float64, rounds)        // [round][config] mean ms
				cpu := make([][]float64, rounds)           // [round][config] ms per invocation
				ext := make([]time.Duration, len(configs)) // the extension's CPU, all rounds
				for r := range rounds {
					stream[r], cpu[r] = make([]float64, len(configs)), make([]float64, len(configs))
					for i, sb := range sbs {
						pid, epid := sb.RuntimePID(), sb.Extensions()[0].PID
						c0, e0 := procCPU(pid), procCPU(epid)
						var total time.Duration
						for k := 0; k < cadence.n; k++ {
							res, err := sb.Invoke(b.Context(), ev, io.Discard)
							if err != nil || res.Status != "success" {
								b.Fatalf("%s: invocation %d: %+v %v", configs[i].name, k, res, err)
							}
							total += res.ResponseEnd
						}
						stream[r][i] = float64(total.Microseconds()) / 1000 / float64(cadence.n)
						cpu[r][i] = float64((procCPU(pid) - c0).Microseconds()) / 1000 / float64(cadence.n)
						ext[i] += procCPU(epid) - e0
					}
				}
				for i, c := range configs {
					st, cp := make([]float64, rounds), make([]float64, rounds)
					for r := range rounds {
						st[r], cp[r] = stream[r][i], cpu[r][i]
					}
					b.ReportMetric(median(st), c.name+"-stream-ms")
					b.ReportMetric(median(cp), c.name+"-cpu-ms")
					// What reading the events costs the extension: a wake-up
					// per datagram, or two bells and a ring read per stream.
					b.ReportMetric(float64(ext[i].Microseconds())/1000/float64(rounds*cadence.n), c.name+"-ext-cpu-ms")
					if i == 0 {
						continue
					}
					for r := range rounds {
						st[r], cp[r] = stream[r][i]/stream[r][0], cpu[r][i]/cpu[r][0]
					}
					benchround.Spread(b, st, c.name+"-stream/off/")
					benchround.Spread(b, cp, c.name+"-cpu/off/")
				}
			}
		})
	}
}

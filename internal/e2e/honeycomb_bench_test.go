package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/benchround"
	"github.com/streamlens/streamlens/internal/sandbox"
)

// honeycombExtName is the file name of Honeycomb's extension in its layer
// (/opt/extensions/honeycomb-lambda-extension): its Lambda-Extension-Name.
const honeycombExtName = "honeycomb-lambda-extension"

// buildHoneycomb builds Honeycomb's Lambda extension (testdata/honeycomb, a
// module of its own: the upstream source, its receiver port made
// configurable) into dir, and returns its path and how long the build took.
// A registry that refuses its modules is no failure of streamlens: the
// benchmark skips, loudly; a copy that does not compile from modules that
// were had is a failure of this benchmark.
func buildHoneycomb(b *testing.B, dir string) (string, time.Duration) {
	b.Helper()
	src, err := filepath.Abs(filepath.Join("testdata", "honeycomb"))
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "honeycomb", honeycombExtName)
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -X main.version=e2e", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	msg, err := cmd.CombinedOutput()
	took := time.Since(t0)
	if err == nil {
		return out, took
	}
	dl := exec.Command("go", "mod", "download")
	dl.Dir = src
	if dlOut, dlErr := dl.CombinedOutput(); dlErr != nil {
		b.Skipf("SKIPPED LOUDLY: Honeycomb's Lambda extension cannot be built here: its modules could not be had (go mod download in %s: %v):\n%s",
			src, dlErr, dlOut)
	}
	b.Fatalf("go build %s: %v\n%s", src, err, msg)
	return "", 0
}

// honeycombAPI stands in for Honeycomb's batch endpoint
// (POST /1/batch/<dataset>, msgpack, zstd): it takes each batch whole and
// answers 200 with a JSON array, as the API does. It counts the batches and
// their bytes, so that the benchmark can tell the extension did send.
type honeycombAPI struct {
	srv            *httptest.Server
	batches, bytes atomic.Int64
	bad            atomic.Int64 // requests that were not a batch with the key
}

func newHoneycombAPI(b *testing.B, key, dataset string) *honeycombAPI {
	h := &honeycombAPI{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/1/batch/"+dataset || r.Header.Get("X-Honeycomb-Team") != key {
			h.bad.Add(1)
			http.Error(w, `{"error":"unknown"}`, http.StatusBadRequest)
			return
		}
		h.batches.Add(1)
		h.bytes.Add(n)
		// One status per event in the real API; the events are not
		// decoded here (zstd), and libhoney reads what there is.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	b.Cleanup(h.srv.Close)
	return h
}

// BenchmarkScenarioExtensionCPUvsHoneycomb: the extension's CPU per
// invocation, against a real published extension's and the minimal one's,
// at the example's cadence (the pricing function, 50 instruments, 2 ms
// apart): (a) streamlens, its client on (the default: events in the ring),
// (b) Honeycomb's Lambda extension (testdata/honeycomb: Telemetry API
// subscriber, batches to a local stand-in of Honeycomb's API), the
// streamlens client off, (c) the minimal extension (testdata/minext), the
// client off. All three environments exist throughout; each round runs
// each in turn (interleaved), and the ratios streamlens/honeycomb and
// streamlens/minimal are per round, min/median/max over the rounds.
// The sandbox produces platform telemetry only (docs/sandbox.md): what
// Honeycomb's extension does per invocation here is three platform events
// and a flush, not the function's log lines. -benchtime=1x.
func BenchmarkScenarioExtensionCPUvsHoneycomb(b *testing.B) {
	dir := b.TempDir()
	hcExt, took := buildHoneycomb(b, dir)
	b.Logf("Honeycomb's extension built in %v", took.Round(time.Millisecond))
	minExt := filepath.Join(dir, "minimal", "minext")
	buildTo(b, minExt, "./internal/e2e/testdata/minext", "CGO_ENABLED=0")

	const key, dataset = "e2e-key", "streamlens-e2e"
	api := newHoneycombAPI(b, key, dataset)
	type config struct {
		name string
		ext  string
		env  []string
	}
	configs := []config{
		{"streamlens", bins.extension, []string{"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(freeUDPPort(b)),
			"STREAMLENS_TELEMETRY_ADDR=sandbox.localdomain:" + strconv.Itoa(freeTCPPort(b))}},
		{"honeycomb", hcExt, []string{"STREAMLENS_ADDR=off", "LIBHONEY_API_KEY=" + key, "LIBHONEY_DATASET=" + dataset,
			"LIBHONEY_API_HOST=" + api.srv.URL, "HONEYCOMB_E2E_TELEMETRY_PORT=" + strconv.Itoa(freeTCPPort(b))}},
		{"minimal", minExt, []string{"STREAMLENS_ADDR=off"}},
	}
	const rounds, n, warm = 5, 20, 5
	ev := []byte(`{"queryStringParameters":{"instruments":"50","delay_ms":"2"}}`)
	for b.Loop() {
		sbs := make([]*sandbox.Sandbox, len(configs))
		logs := make([]*logBuf, len(configs))
		for i, c := range configs {
			logs[i] = &logBuf{}
			sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Extensions: []string{c.ext},
				Timeout: 10 * time.Second, Freeze: true, InitType: "provisioned-concurrency", Log: logs[i],
				Env: append([]string{"STREAMLENS_OTLP=off"}, c.env...)})
			if err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			b.Cleanup(func() { sb.Close() })
			sbs[i] = sb
			for range warm { // page faults, first-time paths, the init's telemetry
				if res, err := sb.Invoke(b.Context(), ev, io.Discard); err != nil || res.Status != "success" {
					b.Fatalf("%s: warm invocation: %+v %v\n%s", c.name, res, err, logs[i].String())
				}
			}
		}
		batches0, bytes0 := api.batches.Load(), api.bytes.Load()
		cpu := make([][]float64, rounds) // [round][config] ms per invocation
		for r := range rounds {
			cpu[r] = make([]float64, len(configs))
			for i, sb := range sbs {
				pid := sb.Extensions()[0].PID
				c0 := procCPU(pid)
				for k := range n {
					res, err := sb.Invoke(b.Context(), ev, io.Discard)
					if err != nil || res.Status != "success" {
						b.Fatalf("%s: round %d, invocation %d: %+v %v", configs[i].name, r, k, res, err)
					}
				}
				cpu[r][i] = float64((procCPU(pid) - c0).Microseconds()) / 1000 / n
			}
		}
		// Honeycomb's extension must have done its work: the measured
		// invocations' events reached its API as batches. Its last
		// invocation's events may still be buffered (1 s), not earlier ones.
		batches, sent := api.batches.Load()-batches0, api.bytes.Load()-bytes0
		if batches == 0 || api.bad.Load() != 0 {
			b.Fatalf("Honeycomb's extension sent %d batches (%d refused) in %d invocations; its log:\n%s",
				batches, api.bad.Load(), rounds*n, logs[1].String())
		}
		if s := logs[1].String(); strings.Contains(s, "Could not subscribe") {
			b.Fatalf("Honeycomb's extension could not subscribe to the Telemetry API:\n%s", s)
		}
		b.ReportMetric(float64(batches)/(rounds*n), "honeycomb-batches/invoke")
		b.ReportMetric(float64(sent)/(rounds*n), "honeycomb-bytes/invoke")
		for i, c := range configs {
			abs := make([]float64, rounds)
			for r := range rounds {
				abs[r] = cpu[r][i]
			}
			b.ReportMetric(median(abs), c.name+"-ext-cpu-ms")
		}
		for _, base := range []struct {
			i    int
			name string
		}{{1, "honeycomb"}, {2, "minimal"}} {
			ratios := make([]float64, rounds)
			for r := range rounds {
				ratios[r] = cpu[r][0] / cpu[r][base.i]
			}
			benchround.Spread(b, ratios, fmt.Sprintf("ext-cpu/%s/", base.name))
		}
	}
}

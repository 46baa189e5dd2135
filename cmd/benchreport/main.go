// Command benchreport reads `go test -bench` output (from `make bench`) and
// prints each goal of the benchmark issue as `figure: value (goal)`, with every
// ratio taken between benchmarks of the same run.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// parse returns benchmark name (without the -cpu suffix) → unit → value.
func parse(r io.Reader) (map[string]map[string]float64, error) {
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		vals := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			vals[f[i+1]] = v
		}
		out[m[1]] = vals
	}
	return out, sc.Err()
}

type figure struct {
	name  string
	value float64
	unit  string
	goal  string
	ok    func(float64) bool
}

func figures(b map[string]map[string]float64) []figure {
	get := func(bench, unit string) float64 {
		if v, ok := b[bench][unit]; ok {
			return v
		}
		return math.NaN()
	}
	le := func(x float64) func(float64) bool { return func(v float64) bool { return v <= x } }
	ge := func(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
	info := func(float64) bool { return true }
	// spread is a ratio measured in interleaved rounds: its median against
	// the goal, then its min and max.
	spread := func(name, bench, key, unit, goal string, ok func(float64) bool) []figure {
		return []figure{{name + ", median of rounds", get(bench, key+"/median"), unit, goal, ok},
			{"  … min of rounds", get(bench, key+"/min"), unit, "info", info},
			{"  … max of rounds", get(bench, key+"/max"), unit, "info", info}}
	}
	var out []figure
	add := func(f ...figure) { out = append(out, f...) }
	add(spread("client emit per chunk event / bare loopback sendto", "BenchmarkClientRatios", "emit/sendto", "×", "≤ 1.2", le(1.2))...)
	add(spread("client chunk write incl. payload SHA-256 / bare sendto", "BenchmarkClientRatios", "chunk/sendto", "×", "≤ 1.2", le(1.2))...)
	add(spread("  … with one datagram per event (STREAMLENS_COALESCE=1)", "BenchmarkClientRatios", "chunk-uncoalesced/sendto", "×", "info", info)...)
	add(spread("  … over a connected unix socket / over UDP, one datagram per event", "BenchmarkClientRatios", "unix/udp-uncoalesced", "×", "info", info)...)
	add(figure{"  … … unix sends refused (queue of 10 datagrams full) in that run", 100 * get("BenchmarkClientRatios", "unix-dropped-share"), "%", "info", info})
	add(figure{"client per chunk with a ring, no payload hash (reserve, encode, commit)", get("BenchmarkClientRatios", "ring-emit/emit-ns"), "ns", "≤ 100", le(100)},
		figure{"  … with the payload's SHA-256 (the default)", get("BenchmarkClientRatios", "ring-chunk/chunk-ns"), "ns", "info", info})
	add(spread("  … ring / datagrams, no payload hash", "BenchmarkClientRatios", "ring-emit/emit", "×", "info", info)...)
	add(figure{"client allocations per chunk, ring", get("BenchmarkChunkRing", "allocs/op"), "allocs", "0", le(0)})
	for _, c := range []struct{ sub, name string }{{"cadence-2ms", "at the example's 2 ms per instrument"}, {"back-to-back", "back to back"}} {
		b := "BenchmarkScenarioClientCost/" + c.sub
		add(spread("function stream time, client with a ring / client off, "+c.name, b, "ring-stream/off", "×", "≤ 1.01", le(1.01))...)
		add(spread("function CPU, client with a ring / client off, "+c.name, b, "ring-cpu/off", "×", "≤ 1.05", le(1.05))...)
		add(figure{"  … function CPU, client over datagrams (STREAMLENS_RING_DIR=off) / client off, median of rounds", get(b, "datagram-cpu/off/median"), "×", "info", info},
			figure{"  … function CPU per invocation, client off", get(b, "off-cpu-ms"), "ms", "info", info},
			figure{"  … extension CPU per invocation, events in the ring", get(b, "ring-ext-cpu-ms"), "ms", "info", info},
			figure{"  … … events over datagrams", get(b, "datagram-ext-cpu-ms"), "ms", "info", info})
	}
	const hc = "BenchmarkScenarioExtensionCPUvsHoneycomb"
	add(spread("extension CPU per invocation at 2 ms per instrument / Honeycomb's Lambda extension, same run", hc, "ext-cpu/honeycomb", "×", "≤ 1.5", le(1.5))...)
	add(figure{"  … streamlens (client on, events in the ring)", get(hc, "streamlens-ext-cpu-ms"), "ms", "info", info},
		figure{"  … Honeycomb's extension", get(hc, "honeycomb-ext-cpu-ms"), "ms", "info", info},
		figure{"  … / the minimal extension, median of rounds", get(hc, "ext-cpu/minimal/median"), "×", "info", info})
	add(figure{"client Start (stream state, id, start event encoded; sent with the first chunk)", get("BenchmarkStart", "start-ns") / 1000, "µs", "≤ 2", le(2)},
		figure{"  … allocations, Start and End", get("BenchmarkStart", "allocs/op"), "allocs", "≤ 1", le(1)})
	const ttfbU, ttfbC = "BenchmarkScenarioTTFB/uncapped", "BenchmarkScenarioTTFB/capped128"
	ratio := func(bench, key string) float64 { return get(bench, key+"/median") }
	add(spread("TTFB p50 with streamlens (client + extension) / without, uncapped", ttfbU, "streamlens-p50/none", "×", "≤ 1.05", le(1.05))...)
	add(spread("TTFB p99 with streamlens / without, uncapped", ttfbU, "streamlens-p99/none", "×", "≤ 1.10", le(1.10))...)
	add(figure{"  … TTFB p50 without / with streamlens, uncapped (median of rounds)", get(ttfbU, "none-p50-ms"), "ms", "info", info},
		figure{"  … … with streamlens", get(ttfbU, "streamlens-p50-ms"), "ms", "info", info},
		figure{"  … p50 with the floor extension (INVOKE; blocking syscalls, SCHED_IDLE) / without", ratio(ttfbU, "floor-extension-p50/none"), "×", "info", info},
		figure{"  … p50 with streamlens / with the floor extension, median of rounds", ratio(ttfbU, "streamlens-p50/floor"), "×", "info", info},
		figure{"  … p50 with an extension registered for SHUTDOWN only (frozen and thawed, never woken) / without", ratio(ttfbU, "shutdown-only-extension-p50/none"), "×", "info", info},
		figure{"  … p50 with streamlens at normal priority (STREAMLENS_SCHED_IDLE=off) / without", ratio(ttfbU, "streamlens-normal-priority-p50/none"), "×", "info", info},
		figure{"  … p50 with the minimal net/http extension (register, next) / without", ratio(ttfbU, "minimal-extension-p50/none"), "×", "info", info},
		figure{"  … p50 with the client alone (no extension) / without", ratio(ttfbU, "client-only-p50/none"), "×", "info", info})
	add(spread("TTFB p50 with streamlens / without, capped like a 128 MB function", ttfbC, "streamlens-p50/none", "×", "≤ 1.05", le(1.05))...)
	add(spread("TTFB p99 with streamlens / without, capped like a 128 MB function", ttfbC, "streamlens-p99/none", "×", "≤ 1.10", le(1.10))...)
	add(figure{"  … p50 with the floor extension / without, capped", ratio(ttfbC, "floor-extension-p50/none"), "×", "info", info},
		figure{"  … p50 with streamlens / with the floor extension, capped, median of rounds", ratio(ttfbC, "streamlens-p50/floor"), "×", "info", info})
	const probeCurl = "BenchmarkScenarioProbeVsCurl"
	add(figure{"probe TTFB p50 against curl's time_starttransfer p50, same URL, each a command (a process a request), interleaved", get(probeCurl, "abs-diff-p50-ms"), "ms", "≤ 0.5", le(0.5)},
		figure{"  … probe TTFB p50", get(probeCurl, "probe-ttfb-p50-ms"), "ms", "info", info},
		figure{"  … curl time_starttransfer p50", get(probeCurl, "curl-ttfb-p50-ms"), "ms", "info", info})
	const nodeTTFB = "BenchmarkScenarioNodeTTFB"
	add(spread("Node TTFB p50 zero-code (exec wrapper + extension) / uninstrumented", nodeTTFB, "zero-code-p50/none", "×", "≤ 1.03", le(1.03))...)
	add(figure{"  … Node TTFB p50 uninstrumented, median of rounds", get(nodeTTFB, "none-p50-ms"), "ms", "info", info},
		figure{"  … … zero-code", get(nodeTTFB, "zero-code-p50-ms"), "ms", "info", info},
		figure{"  … p50 with the extension alone (no wrapper) / uninstrumented", ratio(nodeTTFB, "extension-only-p50/none"), "×", "info", info},
		figure{"  … p50 zero-code / extension alone: the wrapper and auto.js", ratio(nodeTTFB, "zero-code-p50/extension-only"), "×", "info", info})
	add([]figure{
		{"client allocations per chunk", get("BenchmarkChunk", "allocs/op"), "allocs", "0", le(0)},
		{"chunk write p99, extension dead / alive", get("BenchmarkChunkP99", "dead/alive-p99"), "×", "≤ 1.05", le(1.05)},
		{"chunk write p99, socket buffer full / alive", get("BenchmarkChunkP99", "full/alive-p99"), "×", "≤ 1.05", le(1.05)},
		{"extension ingest, decode+apply on one core", get("BenchmarkIngest", "events/s"), "events/s", "≥ 300000", ge(300000)},
		{"extension ingest through the UDP socket (sender on the same machine)", get("BenchmarkIngestSocket", "events/s"), "events/s", "info", info},
		{"events lost at 50k events/s for 10 s", get("BenchmarkScenarioSustained50k", "lost"), "events", "0", le(0)},
		{"extension cold start, exec → registered", get("BenchmarkScenarioColdStart", "register-ms"), "ms", "≤ 10", le(10)},
		{"  … relative to a minimal extension", get("BenchmarkScenarioColdStart", "register/baseline"), "×", "info", info},
		{"post-runtime time added, p50 (report − runtimeDone, strict sandbox)", get("BenchmarkScenarioPostRuntime", "post-runtime-p50-ms"), "ms", "≤ 1", le(1)},
		{"post-runtime time added, p99", get("BenchmarkScenarioPostRuntime", "post-runtime-p99-ms"), "ms", "≤ 3", le(3)},
		{"  … p50 / minimal extension, median of rounds", get("BenchmarkScenarioPostRuntime", "p50/baseline-median"), "×", "info", info},
		{"  … p99 / minimal extension, median of rounds", get("BenchmarkScenarioPostRuntime", "p99/baseline-median"), "×", "info", info},
		{"extension CPU per 50-chunk invocation", get("BenchmarkScenarioPostRuntime", "cpu-ms/invoke"), "ms", "info", info},
		{"  … / minimal extension, median of rounds (min–max in out/bench.txt)", get("BenchmarkScenarioPostRuntime", "cpu/baseline-median"), "×", "≤ 3", le(3)},
		{"extension CPU per additional chunk event (slope from 50- to 500-chunk invocations), median of rounds", get("BenchmarkScenarioCPUPerEvent", "ns/event-median"), "ns", "info", info},
		{"  … / decode + apply of one event (BenchmarkIngest)", get("BenchmarkScenarioCPUPerEvent", "ns/event-median") / get("BenchmarkIngest", "ns/op"), "×", "≤ 3", le(3)},
		{"  … decode + apply of one event (BenchmarkIngest, one core)", get("BenchmarkIngest", "ns/op"), "ns", "info", info},
		{"  … of the slope, user space only (utime over every round)", get("BenchmarkScenarioCPUPerEvent", "user-ns/event"), "ns", "info", info},
		{"  … … / decode + apply of one event", get("BenchmarkScenarioCPUPerEvent", "user-ns/event") / get("BenchmarkIngest", "ns/op"), "×", "info", info},
		{"  … its value aggregated per instrument and written (BenchmarkTake)", get("BenchmarkTake", "ns/value"), "ns", "info", info},
		{"extension RSS after 10k streams", get("BenchmarkScenarioRSS10k", "rss-MB"), "MB", "≤ 20", le(20)},
		{"  … streams flushed in that run", get("BenchmarkScenarioRSS10k", "bench-streams-flushed"), "streams", "10000", ge(10000)},
		{"stripped binary linux/amd64", get("BenchmarkScenarioSizes", "amd64-binary-MB"), "MB", "info", info},
		{"layer zip linux/amd64", get("BenchmarkScenarioSizes", "amd64-zip-MB"), "MB", "info", info},
		{"stripped binary linux/arm64", get("BenchmarkScenarioSizes", "arm64-binary-MB"), "MB", "info", info},
		{"layer zip linux/arm64", get("BenchmarkScenarioSizes", "arm64-zip-MB"), "MB", "info", info},
		{"end-of-invocation flush, 50-instrument bundle", get("BenchmarkFlush50", "ns/op") / 1e6, "ms", "≤ 1", le(1)},
		{"EMF written per 50-chunk stream, all in (one stream an invocation: its document, which is its invocation's outcome too, and its share of the others)", get("BenchmarkEMFBytesPerStream", "emf-bytes/stream"), "bytes", "≤ 1200", le(1200)},
		{"  … the stream's document, with its invocation's outcome", get("BenchmarkEMFBytesPerStream", "stream-doc-bytes"), "bytes", "info", info},
		{"  … invocation records of their own (the cold start's), per stream", get("BenchmarkEMFBytesPerStream", "invocation-doc-bytes"), "bytes", "info", info},
		{"  … its share of the platform document (runtimeDone and report figures)", get("BenchmarkEMFBytesPerStream", "platform-bytes/stream"), "bytes", "info", info},
		{"  … its share of the per-instrument documents", get("BenchmarkEMFBytesPerStream", "instrument-bytes/stream"), "bytes", "info", info},
		{"  … its share of the counters documents", get("BenchmarkEMFBytesPerStream", "counters-bytes/stream"), "bytes", "info", info},
		{"  … CloudWatch Logs ingestion per million streams, at $0.50/GB", get("BenchmarkEMFBytesPerStream", "$-logs/M-streams"), "$", "info", info},
		{"custom metrics those documents create (50 instruments)", get("BenchmarkEMFBytesPerStream", "custom-metrics"), "metrics", "info", info},
		{"  … per month, at $0.30 a metric", get("BenchmarkEMFBytesPerStream", "$-metrics/month"), "$", "info", info},
		{"  … $ per million streams at 1 M streams a month (logs + custom metrics)",
			get("BenchmarkEMFBytesPerStream", "$-logs/M-streams") + get("BenchmarkEMFBytesPerStream", "$-metrics/month"), "$", "info", info},
		{"custom metrics from 6,001 distinct instrument names (cap 100)", get("BenchmarkCardinality", "custom-metrics/6001-names"), "metrics", "≤ 206 (2 × (100 names + other + function) + 2 counts)", le(206)},
		{"span export of a 50-chunk stream, live collector", get("BenchmarkSpanExport/live", "ms/flush"), "ms", "info", info},
		{"  … OTLP request size of that span", get("BenchmarkSpanExport/live", "bytes/span"), "bytes", "info", info},
		{"span export, gzip (OTEL_EXPORTER_OTLP_COMPRESSION=gzip)", get("BenchmarkSpanExport/live-gzip", "ms/flush"), "ms", "info", info},
		{"  … gzipped request size", get("BenchmarkSpanExport/live-gzip", "gzip-bytes/span"), "bytes", "info", info},
		{"span export, collector refusing connections", get("BenchmarkSpanExport/refused", "ms/flush"), "ms", "≤ 25 (the OTLP timeout)", le(25)},
		{"span export, collector accepting but never answering", get("BenchmarkSpanExport/hanging", "ms/flush"), "ms", "≤ 30 (timeout 25 + 5)", le(30)},
	}...)
	add(spread("EMF encode speed-up over prozz/aws-embedded-metrics-golang, both with fresh buffers", "BenchmarkEncodeRatios", "prozz/fresh", "×", "≥ 3", ge(3))...)
	add(spread("  … this encoder reusing its buffer, as the extension does", "BenchmarkEncodeRatios", "prozz/reused", "×", "info", info)...)
	return out
}

func main() {
	md := flag.Bool("md", false, "print a Markdown table")
	flag.Parse()
	b, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	missed := 0
	if *md {
		fmt.Println("| figure | value | goal | |")
		fmt.Println("|---|---|---|---|")
	}
	for _, f := range figures(b) {
		verdict := "ok"
		switch {
		case math.IsNaN(f.value):
			verdict = "not measured"
			missed++
		case f.goal == "info":
			verdict = ""
		case !f.ok(f.value):
			verdict = "MISSED"
			missed++
		}
		val := strconv.FormatFloat(f.value, 'g', 4, 64) + " " + f.unit
		if *md {
			fmt.Printf("| %s | %s | %s | %s |\n", strings.TrimSpace(strings.TrimPrefix(f.name, "  …")), val, f.goal, verdict)
		} else {
			fmt.Printf("%s: %s (%s) %s\n", f.name, val, f.goal, verdict)
		}
	}
	if missed > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: %d goals missed or not measured\n", missed)
	}
}

// Command demo drives `make demo`: it starts the sandbox command with the
// pricing function and the streamlens extension, fires a mix of invocations
// over HTTP (some truncated on purpose), shuts the sandbox down, and prints a
// summary next to the raw EMF lines; it also writes an HTML dashboard preview.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/streamlens/streamlens/internal/summary"
	m "github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/slo"
)

type call struct {
	query string
	note  string
}

// plan is the demo's traffic: mostly healthy bundles, and the failures
// streamlens exists to see (all of which return HTTP 200).
// invokeAll invokes the function at base once per call, in order, and
// prints each response as the caller saw it (label before its number, the
// query padded to width).
func invokeAll(base string, calls []call, label string, width int) error {
	for i, c := range calls {
		line, err := invoke(base + "?" + c.query)
		if err != nil {
			return err
		}
		note := ""
		if c.note != "" {
			note = "  ← " + c.note
		}
		fmt.Printf("  %s#%02d %-*s %s%s\n", label, i+1, width, c.query, line, note)
	}
	return nil
}

// stop sends the sandbox SIGTERM — SHUTDOWN for the extension, which
// flushes what it still holds — and waits for it to exit.
func stop(sb *exec.Cmd) error {
	_ = sb.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- sb.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("sandbox did not shut down")
	}
}

func plan(n int) []call {
	var out []call
	for i := 0; len(out) < n; i++ {
		switch {
		case i%13 == 7:
			out = append(out, call{"instruments=50&delay_ms=2&fail_after=20&bundle=EQ-EU-50", "feed lost after 20 quotes"})
		case i%17 == 11:
			out = append(out, call{"instruments=30&delay_ms=2&hang_after=12&bundle=EQ-US-30", "hangs until the timeout"})
		case i%11 == 3:
			out = append(out, call{"instruments=50&delay_ms=1&first_delay_ms=150&bundle=EQ-EU-50", "cold model cache: slow first quote"})
		case i%19 == 5:
			out = append(out, call{"instruments=40&delay_ms=2&crash_after=25&bundle=EQ-ASIA-40", "process crashes"})
		case i%5 == 0:
			out = append(out, call{"instruments=200&delay_ms=1&bundle=EQ-GLOBAL-200", ""})
		default:
			out = append(out, call{fmt.Sprintf("instruments=50&delay_ms=%d&bundle=EQ-EU-50", 1+i%4), ""})
		}
	}
	return out
}

func main() {
	bin := flag.String("bin", "bin", "directory with sandbox, bootstrap and extensions/streamlens")
	out := flag.String("out", "out", "directory for the log stream and the HTML preview")
	n := flag.Int("n", 36, "number of invocations")
	spec := flag.String("spec", "slo/slos.json", "SLO spec file")
	flag.Parse()
	if err := run(*bin, *out, *spec, *n); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func freeUDP() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer pc.Close()
	return pc.LocalAddr().String(), nil
}

func run(bin, outDir, specPath string, n int) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	addr, err := freePort()
	if err != nil {
		return err
	}
	logPath := filepath.Join(outDir, "log-stream.txt")
	udp, err := freeUDP()
	if err != nil {
		return err
	}
	// The demo brings its own OTLP receiver: the default endpoint,
	// localhost:4318, may belong to another program (or to nobody).
	rcv, err := startReceiver()
	if err != nil {
		return err
	}
	defer rcv.close()
	sb := exec.Command(filepath.Join(bin, "sandbox"), "-function", filepath.Join(bin, "bootstrap"),
		"-extension", filepath.Join(bin, "extensions", "streamlens"), "-listen", addr, "-timeout", "2s", "-log", logPath,
		"-env", "STREAMLENS_ADDR="+udp, "-env", "STREAMLENS_OTLP_ENDPOINT="+rcv.url)
	sb.Stderr = os.Stderr
	if err := sb.Start(); err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	defer sb.Process.Kill()
	base := "http://" + addr + "/"
	if err := waitListening(addr); err != nil {
		return err
	}

	fmt.Printf("streamlens demo: %d invocations of the pricing function through %s\n\n", n, base)
	if err := invokeAll(base, plan(n), "", 46); err != nil {
		return err
	}
	// SHUTDOWN: the extension flushes what is still open before it exits.
	if err := stop(sb); err != nil {
		return err
	}

	f, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	s, err := summary.Read(f)
	if err != nil {
		return err
	}
	specs, err := slo.Load(specPath)
	if err != nil {
		return err
	}
	printRaw(s)
	printSummary(s, specs)
	wf := rcv.waterfall()
	rcv.print(wf)
	htmlPath := filepath.Join(outDir, "dashboard.html")
	if err := os.WriteFile(htmlPath, summary.HTML(s, specs, wf), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nlog stream: %s\ndashboard preview: %s\n", logPath, htmlPath)
	// After the Go function's part, which it leaves as it was (the
	// dashboard is the Go function's): skipped loudly without node and
	// the RIC.
	runNode(bin, outDir, rcv.url)
	return nil
}

func waitListening(addr string) error {
	for i := 0; i < 500; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("sandbox did not listen on %s", addr)
}

// invoke streams one response like a client would and describes it.
func invoke(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var first time.Duration
	quotes, complete := 0, false
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if line != "" && first == 0 {
			first = time.Since(start)
		}
		if strings.Contains(line, `"instrument"`) {
			quotes++
		}
		if strings.Contains(line, "BUNDLE_COMPLETE") {
			complete = true
		}
		if err != nil {
			break
		}
	}
	_, _ = io.Copy(io.Discard, r)
	end := "truncated"
	if complete {
		end = "complete"
	}
	return fmt.Sprintf("HTTP %d %3d quotes %-9s first byte %6.1f ms, total %7.1f ms", resp.StatusCode, quotes, end,
		ms(first), ms(time.Since(start))), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// printRaw shows one whole stream document, indented, and where the rest
// are: a reader sees every field CloudWatch gets.
func printRaw(s *summary.Summary) {
	if len(s.EMFLines) == 0 {
		return
	}
	// A truncated stream shows the most: its reason and status.
	doc := s.EMFLines[0]
	for _, l := range s.EMFLines {
		if strings.Contains(l, `"TruncationReason"`) {
			doc = l
			break
		}
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, []byte(doc), "  ", "  ") != nil {
		pretty.WriteString(doc)
	}
	// Arrays of values on one line each: a chunk's latency per line would
	// push everything else off the screen.
	flat := numberArray.ReplaceAllStringFunc(pretty.String(), func(a string) string {
		return "[" + strings.Join(strings.Fields(strings.Trim(a, "[]")), " ") + "]"
	})
	fmt.Printf("\nOne stream's EMF document, as written to the log stream (one line there; %d such documents in all):\n  %s\n",
		len(s.EMFLines), flat)
}

// numberArray is a JSON array of numbers, as json.Indent lays it out.
var numberArray = regexp.MustCompile(`\[[0-9.,\s-]+\]`)

// counts writes a count map as "a 2, b 1", largest first.
func counts(c map[string]int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return c[keys[i]] > c[keys[j]] || c[keys[i]] == c[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

func printSummary(s *summary.Summary, specs []slo.Spec) {
	v := s.Values
	// Counts of nothing are 0 in a printed summary (what FILL does in the
	// dashboard's metric math); a percentile of nothing stays no data.
	st := func(v []float64, stat string) float64 {
		if x := summary.Stat(v, stat); !math.IsNaN(x) || stat != "Sum" && stat != "SampleCount" {
			return x
		}
		return 0
	}
	fmt.Println("\nSummary")
	fmt.Printf("  streams             %d (%d invocations, %.0f cold starts)\n", s.Streams(), len(v[m.ColdStart]), st(v[m.ColdStart], "Sum"))
	fmt.Printf("  TTFB (business)     p50 %.1f ms   p90 %.1f ms   p99 %.1f ms   (%.0f over the budget)\n",
		st(v[m.TimeToFirstByte], "p50"), st(v[m.TimeToFirstByte], "p90"), st(v[m.TimeToFirstByte], "p99"), st(v[m.TTFBBudgetBreach], "Sum"))
	fmt.Printf("  TTFB (platform)     p50 %.1f ms   p99 %.1f ms\n", st(v[m.ResponseLatency], "p50"), st(v[m.ResponseLatency], "p99"))
	fmt.Printf("  chunk latency       p50 %.1f ms   p99 %.1f ms\n", st(v[m.ChunkLatency], "p50"), st(v[m.ChunkLatency], "p99"))
	fmt.Printf("  truncation rate     %.1f %% (%d of %d: %s) — every one of them was HTTP 200\n", 100*s.TruncationRate(), s.Truncated(), s.Streams(), counts(s.TruncReasons))
	fmt.Printf("  chunks              %.0f delivered; %.0f missing from the %.0f streams that fell short of the count they announced\n",
		st(v[m.ChunksDelivered], "Sum"), st(v[m.ChunksMissing], "Sum"), st(v[m.ChunksMissing], "SampleCount"))
	for t, vals := range s.ByDim[m.DimInitType+"/"+m.InitDuration] {
		fmt.Printf("  init (%s)    %d inits, p50 %.1f ms\n", t, len(vals), st(vals, "p50"))
	}
	fmt.Printf("  dropped / malformed %.0f / %.0f events;  integrity mismatches %.0f\n", st(v[m.DroppedEvents], "Sum"), st(v[m.MalformedEvents], "Sum"), st(v[m.IntegrityMismatch], "Sum"))
	fmt.Println("\nSLOs over this run (slo/slos.json)")
	for _, sp := range specs {
		bad, total := st(v[sp.SLI.Bad.Metric], sp.SLI.Bad.Stat), st(v[sp.SLI.Total.Metric], sp.SLI.Total.Stat)
		for _, x := range sp.SLI.Exclude { // not the service's: out of both counts
			bad, total = bad-st(v[x.Metric], x.Stat), total-st(v[x.Metric], x.Stat)
		}
		att, left := 1.0, 1-sp.Burn(bad, total, 0)
		if total > 0 {
			att = 1 - bad/total
		}
		fmt.Printf("  %-13s objective %.4g %%: attainment %.2f %% (%.0f bad of %.0f), error budget left %.0f %%\n", sp.Name, 100*sp.Objective, 100*att, bad, total, 100*left)
	}
}

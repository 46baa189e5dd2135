package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamlens/streamlens/internal/layer"
	"github.com/streamlens/streamlens/internal/sandbox"
	"github.com/streamlens/streamlens/protocol"
)

func buildTo(b *testing.B, out, pkg string, env ...string) {
	b.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", pkg, err, msg)
	}
}

// registerTimes starts the environment n times and returns the sorted times
// from exec to register of its only extension.
func registerTimes(b *testing.B, ext string, n int) []time.Duration {
	var out []time.Duration
	for i := 0; i < n; i++ {
		sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Extensions: []string{ext}, InitType: "provisioned-concurrency",
			Env: []string{"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(freeUDPPort(b)), "STREAMLENS_OTLP=off"}})
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, sb.Extensions()[0].Register)
		sb.Close()
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func freeUDPPort(b testing.TB) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// BenchmarkScenarioColdStart: exec → registered for the stripped streamlens
// extension, against the smallest extension that registers (same run, same
// sandbox). Run with -benchtime=1x.
func BenchmarkScenarioColdStart(b *testing.B) {
	dir := b.TempDir()
	sl := filepath.Join(dir, "a", "streamlens")
	minext := filepath.Join(dir, "b", "minext")
	buildTo(b, sl, "./cmd/streamlens", "CGO_ENABLED=0")
	buildTo(b, minext, "./internal/e2e/testdata/minext", "CGO_ENABLED=0")
	for b.Loop() {
		var s, m []time.Duration
		for round := 0; round < 5; round++ { // interleaved, so noise hits both
			s = append(s, registerTimes(b, sl, 4)...)
			m = append(m, registerTimes(b, minext, 4)...)
		}
		med := func(d []time.Duration) float64 {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return float64(d[len(d)/2].Microseconds()) / 1000
		}
		b.ReportMetric(med(s), "register-ms")
		b.ReportMetric(med(m), "baseline-register-ms")
		b.ReportMetric(med(s)/med(m), "register/baseline")
	}
}

// BenchmarkScenarioSizes: the stripped extension binary and its layer zip for
// both architectures.
func BenchmarkScenarioSizes(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		for _, arch := range []string{"amd64", "arm64"} {
			bin := filepath.Join(dir, arch, "streamlens")
			buildTo(b, bin, "./cmd/streamlens", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			data, err := os.ReadFile(bin)
			if err != nil {
				b.Fatal(err)
			}
			var zip bytes.Buffer
			if err := layer.Write(&zip, "streamlens", data); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(data))/1e6, arch+"-binary-MB")
			b.ReportMetric(float64(zip.Len())/1e6, arch+"-zip-MB")
		}
	}
}

// BenchmarkScenarioRSS10k: 10,000 complete 50-instrument streams through the
// real extension process (500 per invocation, 20 invocations), then its
// resident memory. Run with -benchtime=1x.
func BenchmarkScenarioRSS10k(b *testing.B) {
	for b.Loop() {
		counter := &countingWriter{}
		port := freeUDPPort(b)
		sb, err := sandbox.Start(sandbox.Config{Function: bins.function, Extensions: []string{bins.extension}, Timeout: 30 * time.Second,
			Env: []string{"STREAMLENS_ADDR=127.0.0.1:" + strconv.Itoa(port), "STREAMLENS_OTLP=off"}, Log: counter})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			b.Fatal(err)
		}
		const perInv, invs = 500, 20
		for inv := 0; inv < invs; inv++ {
			done := make(chan error, 1)
			go func() {
				_, err := sb.Invoke(b.Context(), []byte(`{"queryStringParameters":{"instruments":"1","delay_ms":"1000"}}`), &bytes.Buffer{})
				done <- err
			}()
			time.Sleep(50 * time.Millisecond) // the INVOKE has reached the extension
			sendStreams(conn, inv*perInv, perInv)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		pid := sb.Extensions()[0].PID
		rss, hwm := procMem(pid, "VmRSS:"), procMem(pid, "VmHWM:")
		b.ReportMetric(rss, "rss-MB")
		b.ReportMetric(hwm, "peak-rss-MB")
		conn.Close()
		// Streams that ended after the last boundary are written at SHUTDOWN:
		// count once it is over, so the figure is "none lost".
		sb.Close()
		b.ReportMetric(float64(counter.streams()), "bench-streams-flushed")
	}
	runtime.GC()
}

// sendStreams sends n complete streams, packing events into datagrams of up to
// 6 KiB (the protocol allows several lines per datagram), paced so a default
// socket buffer keeps up.
func sendStreams(conn net.Conn, first, n int) {
	var dg []byte
	flush := func() {
		if len(dg) > 0 {
			_, _ = conn.Write(dg)
			dg = dg[:0]
			time.Sleep(150 * time.Microsecond)
		}
	}
	for i := first; i < first+n; i++ {
		h := protocol.Header{StreamID: fmt.Sprintf("0193a6f2-7c1e-7b3a-9d4e-%012d", i), RequestID: "bench", TimeNs: time.Now().UnixNano()}
		lines := [][]byte{protocol.AppendStart(nil, h, protocol.Start{Expected: 50, BundleID: "EQ-EU-50"})}
		for c := 0; c < 50; c++ {
			h.Seq++
			h.TimeNs += 1e6
			lines = append(lines, protocol.AppendChunk(nil, h, protocol.Chunk{Instrument: "INST" + strconv.Itoa(c), Bytes: 190}))
		}
		h.Seq++
		lines = append(lines, protocol.AppendEnd(nil, h, protocol.End{Delivered: 50, Expected: 50, Bytes: 9500, Status: protocol.StatusComplete}))
		for _, l := range lines {
			if len(dg)+len(l) > 6<<10 {
				flush()
			}
			dg = append(dg, l...)
		}
	}
	flush()
}

func procMem(pid int, key string) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// countingWriter counts complete-stream documents in the log without keeping it.
type countingWriter struct {
	mu sync.Mutex
	n  int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	// Only the benchmark's own streams (request id "bench"), complete.
	for _, line := range bytes.Split(p, []byte("\n")) {
		if bytes.Contains(line, []byte(`"RequestId":"bench","StreamStatus":"complete"`)) {
			c.n++
		}
	}
	c.mu.Unlock()
	return len(p), nil
}

func (c *countingWriter) streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

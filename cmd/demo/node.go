package main

// The Node.js part of the demo: after the Go function, a few invocations of
// examples/node-pricing's zero-code handler (no streamlens code in it; the
// layer's exec wrapper preloads clients/node/auto.js) run by AWS's own Node
// runtime interface client in the same sandbox, and the streams the
// extension recorded for them. It needs node and the RIC
// (scripts/need-node-ric.sh installs it into bin/node-ric); without them it
// says so loudly and the rest of the demo is unchanged.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// nodePlan: healthy bundles and the three ways a Node stream ends early.
var nodePlan = []call{
	{"instruments=20&delay_ms=2&bundle=EQ-NODE-20", ""},
	{"instruments=50&delay_ms=1&bundle=EQ-NODE-50", ""},
	{"instruments=20&delay_ms=2&throw_after=8&bundle=EQ-NODE-20", "handler throws after 8 quotes"},
	{"instruments=20&delay_ms=2&fail_after=5&bundle=EQ-NODE-20", "stream destroyed: the runtime exits"},
	{"instruments=20&delay_ms=2&bundle=EQ-NODE-20", ""},
	{"instruments=20&delay_ms=2&hang_after=6&bundle=EQ-NODE-20", "hangs until the timeout"},
}

// nodeSetup finds what the Node demo needs from the repository root (the
// parent of bin); "" and why not when something is missing.
func nodeSetup(bin string) (ric, root, why string) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", "", "node is not on this machine"
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return "", "", err.Error()
	}
	root = filepath.Dir(absBin)
	ric = filepath.Join(absBin, "node-ric", "node_modules", "aws-lambda-ric", "index.mjs")
	// The native addon is what a finished install has (need-node-ric.sh
	// checks the same).
	if _, err := os.Stat(filepath.Join(filepath.Dir(ric), "rapid-client.node")); err != nil {
		return "", "", "aws-lambda-ric is not installed in " + filepath.Join(bin, "node-ric") + " (run scripts/need-node-ric.sh)"
	}
	for _, f := range []string{"examples/node-pricing/bootstrap", "layer/streamlens-node", "clients/node/auto.js"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			return "", "", f + " is not under " + root
		}
	}
	return ric, root, ""
}

// runNode runs the Node function zero-code through its own sandbox and
// prints its invocations and streams. A failure here is reported, not
// returned: the Go part of the demo has already run and been printed.
func runNode(bin, outDir, otlpURL string) {
	ric, root, why := nodeSetup(bin)
	if why != "" {
		fmt.Println()
		fmt.Println("###########################################################################")
		fmt.Println("## SKIPPED: the Node.js function (examples/node-pricing, zero-code):")
		fmt.Println("## " + why)
		fmt.Println("###########################################################################")
		return
	}
	logPath := filepath.Join(outDir, "node-log-stream.txt")
	if err := nodeRun(bin, root, ric, logPath, otlpURL); err != nil {
		fmt.Fprintln(os.Stderr, "demo: the Node.js function:", err)
		fmt.Println("\n## FAILED: the Node.js function (examples/node-pricing):", err)
		return
	}
	fmt.Printf("\nNode log stream: %s\n", logPath)
}

func nodeRun(bin, root, ric, logPath, otlpURL string) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	udp, err := freeUDP()
	if err != nil {
		return err
	}
	sb := exec.Command(filepath.Join(bin, "sandbox"), "-function", filepath.Join(root, "examples", "node-pricing", "bootstrap"),
		"-extension", filepath.Join(bin, "extensions", "streamlens"), "-listen", addr, "-timeout", "2s", "-log", logPath,
		"-env", "STREAMLENS_ADDR="+udp, "-env", "STREAMLENS_OTLP_ENDPOINT="+otlpURL,
		// What Lambda's managed Node runtime gets from the function's
		// configuration and the layer: the handler, and the exec wrapper
		// that preloads the zero-code instrumentation.
		"-env", "_HANDLER=zero-code.handler",
		"-env", "LAMBDA_TASK_ROOT="+filepath.Join(root, "examples", "node-pricing"),
		"-env", "STREAMLENS_NODE_RIC="+ric,
		"-env", "AWS_LAMBDA_EXEC_WRAPPER="+filepath.Join(root, "layer", "streamlens-node"),
		"-env", "STREAMLENS_NODE_AUTO="+filepath.Join(root, "clients", "node", "auto.js"))
	sb.Stderr = os.Stderr
	if err := sb.Start(); err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	defer sb.Process.Kill()
	if err := waitListening(addr); err != nil {
		return err
	}
	base := "http://" + addr + "/"
	fmt.Printf("\nThe same pricing model in Node.js (examples/node-pricing zero-code.handler: no streamlens code,\n"+
		"the layer's exec wrapper preloads the instrumentation), run by aws-lambda-ric through %s\n\n", base)
	if err := invokeAll(base, nodePlan, "node ", 62); err != nil {
		return err
	}
	if err := stop(sb); err != nil {
		return err
	}
	streams, err := nodeStreams(logPath)
	if err != nil {
		return err
	}
	if len(streams) != len(nodePlan) {
		fmt.Printf("\n  ## %d stream documents for %d invocations\n", len(streams), len(nodePlan))
	}
	fmt.Println("\nNode.js streams, as the extension recorded them (zero-code: every write is a chunk, BUNDLE_COMPLETE included)")
	fmt.Printf("  %-36s %-9s %6s %7s %9s  %s\n", "request", "status", "chunks", "bytes", "TTFB", "truncation")
	for _, s := range streams {
		ttfb := "-"
		if v, ok := s["TimeToFirstByte"].(float64); ok {
			ttfb = fmt.Sprintf("%.1f ms", v)
		}
		reason, _ := s["TruncationReason"].(string)
		if reason == "" {
			reason = "-"
		}
		status, _ := s["StreamStatus"].(string)
		rid, _ := s["RequestId"].(string)
		fmt.Printf("  %-36s %-9s %6.0f %7.0f %9s  %s\n", rid, status, num(s, "ChunksDelivered"), num(s, "StreamBytes"), ttfb, reason)
	}
	return nil
}

func num(d map[string]any, k string) float64 {
	v, _ := d[k].(float64)
	return v
}

// nodeStreams reads the stream documents (those with StreamTruncated and a
// QuoteId) of a log stream, in order.
func nodeStreams(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"_aws"`) {
			continue
		}
		var d map[string]any
		if json.Unmarshal([]byte(line), &d) != nil {
			continue
		}
		if _, ok := d["StreamTruncated"]; ok && d["QuoteId"] != nil {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

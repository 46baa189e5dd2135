// Command streamlens is the Lambda extension. Lambda starts it from
// /opt/extensions/streamlens; configuration is STREAMLENS_* environment
// variables (see the README). `streamlens decode ADDR` is a test mode that
// prints the events it decodes as JSON lines.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/lifecycle"
)

const usage = `streamlens is an AWS Lambda extension: Lambda starts it from
/opt/extensions/streamlens (the layer), with AWS_LAMBDA_RUNTIME_API set, and it
is configured by STREAMLENS_* environment variables (see the README).

usage:
  streamlens               run as the extension (inside a Lambda execution environment)
  streamlens decode ADDR   listen on ADDR (IP:port, or unix:/path) and print each
                           event the function's client sends as a JSON line
`

func main() {
	ignoreSIGPIPE()
	// A sidecar lives in the function's memory budget: trade some GC CPU at
	// flush time for a small heap (RSS after 10k streams: 53 MB with Go's
	// defaults and the upstream OTLP exporter, ~19 MB now; bench/RESULTS.md),
	// unless the operator set the Go runtime's own knobs.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(14 << 20) // soft: GC works harder near it, nothing fails
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: the extension shares the function's CPU (under 1,769 MB a
		// function has less than one vCPU), and with two the scheduler hands
		// work between threads: 50 futex and 41 nanosleep calls per 50-chunk
		// invocation against 9 and 19 with one (strace -c), and less of the
		// function's CPU taken.
		runtime.GOMAXPROCS(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch {
	case len(os.Args) == 3 && os.Args[1] == "decode":
		if err := decode(ctx, os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "streamlens decode:", err)
			os.Exit(1)
		}
		return
	case len(os.Args) > 1 || os.Getenv("AWS_LAMBDA_RUNTIME_API") == "":
		// Run by hand, not by Lambda: say what this program is.
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cfg, cfgErr := config.FromEnv(os.Getenv, os.Args[0])
	if err := lifecycle.Run(ctx, cfg, cfgErr, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "streamlens:", err)
		os.Exit(1)
	}
}

// ignoreSIGPIPE keeps a closed stdout or stderr from killing the extension.
// Go kills a program that writes to a broken pipe on fd 1 or 2 with
// SIGPIPE unless the signal is ignored or notified (os/signal, "SIGPIPE");
// the extension's stdout is the function's log stream, and losing it must
// not take the extension (and with it the function's invocations) down:
// the write fails with EPIPE instead, which the writers handle. Ignore, not
// Notify: nothing is to be done when it comes, and the extension starts no
// child that would inherit the disposition.
func ignoreSIGPIPE() { signal.Ignore(syscall.SIGPIPE) }

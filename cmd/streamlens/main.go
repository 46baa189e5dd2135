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
	"runtime/debug"
	"syscall"

	"github.com/streamlens/streamlens/extension"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// A sidecar in someone else's memory budget: trade a little CPU at
		// flush time for half the heap headroom (RSS ~16 MB instead of ~18 MB
		// after 10k streams, see bench/RESULTS.md).
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if len(os.Args) == 3 && os.Args[1] == "decode" {
		if err := decode(ctx, os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "streamlens decode:", err)
			os.Exit(1)
		}
		return
	}
	cfg, cfgErr := extension.ConfigFromEnv(os.Getenv, os.Args[0])
	if err := extension.Run(ctx, cfg, cfgErr, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "streamlens:", err)
		os.Exit(1)
	}
}

// Command streamlens is the Lambda extension. Lambda starts it from
// /opt/extensions/streamlens; configuration is STREAMLENS_* environment
// variables (see the README).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamlens/streamlens/extension"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, cfgErr := extension.ConfigFromEnv(os.Getenv, os.Args[0])
	if err := extension.Run(ctx, cfg, cfgErr, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "streamlens:", err)
		os.Exit(1)
	}
}

//go:build unix

// Command sandbox runs a local Lambda execution environment around a function
// binary and extension binaries, and serves it like a function URL in
// RESPONSE_STREAM mode:
//
//	sandbox -function bin/bootstrap -extension bin/extensions/streamlens -listen 127.0.0.1:9000
//	curl -N 'http://127.0.0.1:9000/?instruments=50&delay_ms=20'
//
// The processes' stdout and stderr (the log stream) go to -log (default
// stdout). SIGINT or SIGTERM shuts the environment down (SHUTDOWN, spindown).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/streamlens/streamlens/internal/sandbox"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var exts, env list
	fn := flag.String("function", "", "function executable (bootstrap)")
	flag.Var(&exts, "extension", "extension executable (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE for every process (repeatable)")
	listen := flag.String("listen", "127.0.0.1:9000", "function URL address")
	name := flag.String("name", "pricing", "function name")
	timeout := flag.Duration("timeout", 3*time.Second, "function timeout")
	initType := flag.String("init-type", "on-demand", "on-demand or provisioned-concurrency")
	freeze := flag.Bool("freeze", true, "freeze processes between invocations")
	logPath := flag.String("log", "", "log stream file (default stdout)")
	invokeMode := flag.String("invoke-mode", sandbox.ModeStream, "function URL invoke mode: RESPONSE_STREAM or BUFFERED")
	tracing := flag.String("tracing", "passthrough", "tracing mode: passthrough (Lambda's default) or active")
	telemetry := flag.String("telemetry", sandbox.TelemetryOn, "on, or unsupported (answer subscriptions like the emulator behind sam local)")
	maxConc := flag.Int("max-concurrency", 1, "over 1: a Lambda Managed Instances environment running that many invocations at once")
	memory := flag.Int("memory", 0, "function memory in MB; when set, CPU (memory/1769 of a core) and memory are capped like Lambda's where cgroups allow (default: 128 reported, uncapped)")
	flag.Parse()
	mode := map[string]string{"passthrough": sandbox.TracingPassThrough, "active": sandbox.TracingActive}[strings.ToLower(*tracing)]
	if mode == "" {
		fmt.Fprintln(os.Stderr, "sandbox: -tracing wants passthrough or active")
		os.Exit(2)
	}
	if *fn == "" {
		fmt.Fprintln(os.Stderr, "sandbox: -function is required")
		os.Exit(2)
	}
	var log io.Writer = os.Stdout
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
			os.Exit(1)
		}
		defer f.Close()
		log = f
	}
	sb, err := sandbox.Start(sandbox.Config{Function: *fn, Extensions: exts, Env: env, FunctionName: *name,
		Timeout: *timeout, InitType: *initType, Freeze: *freeze, Log: log, InvokeMode: *invokeMode, Tracing: mode,
		Telemetry: *telemetry, MaxConcurrency: *maxConc, MemoryMB: *memory, CapResources: *memory > 0})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		sb.Close()
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: sb.URLHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "sandbox: function URL http://%s/ (runtime API %s)\n", ln.Addr(), sb.RuntimeAPI())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := sb.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
	}
}

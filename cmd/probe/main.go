// Command probe is the caller's view of a streaming function: `curl -N -w`,
// complete. It sends N requests to a function URL, one at a time on a fresh
// connection each, and prints for each the connection phases, the first
// byte, the first useful chunk, every chunk's arrival and the total, the end
// marker and its SHA-256, Lambda's error trailers and the traceparent it
// sent (the function's spans join that trace). -sigv4 REGION signs each
// request for an AWS_IAM function URL with the default credentials. It
// exits 1 when any response was truncated, 2 when a request failed.
//
// While a request runs, a live view (progress and a chunk timeline) is
// redrawn on stderr when stderr is a terminal (-live). Each result can also
// be written as a CloudWatch EMF line (-emf) and exported as the caller's
// client span over OTLP/HTTP (when OTEL_EXPORTER_OTLP_ENDPOINT or another
// endpoint variable is set). docs/probe.md has every flag and variable.
//
//	probe [flags] URL
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/streamlens/streamlens/internal/probe"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr, isTerminal(os.Stderr)))
}

// run is the command, apart from the process: its exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, stderrTTY bool) int {
	settings, envErr := probe.SettingsFromEnv(getenv)
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "the function URL, with its query (or give it as the argument)")
	n := fs.Int("n", 1, "requests, one after another")
	envelope := fs.String("envelope", settings.Envelope, "how the body is read: pricing (quote lines, BUNDLE_COMPLETE with its SHA-256 checked), lines, raw (STREAMLENS_PROBE_ENVELOPE)")
	region := fs.String("sigv4", "", "sign for an AWS_IAM function URL in this region, with the default credentials")
	asJSON := fs.Bool("json", false, "one JSON result per request")
	leave := fs.Int("leave-after", 0, "go away after this many chunks, as a caller that gives up (the span's caller_left event; the function's span says how long it went on); 0: read to the end")
	live := fs.String("live", envOr(getenv, "STREAMLENS_PROBE_LIVE", "auto"), "live view on stderr while a request runs: auto (when stderr is a terminal), on, off (STREAMLENS_PROBE_LIVE)")
	emfOut := fs.String("emf", getenv("STREAMLENS_PROBE_EMF"), "write each result as a CloudWatch EMF line to this file (- for stdout; appended); empty: none (STREAMLENS_PROBE_EMF)")
	name := fs.String("name", settings.Name, "the probe's name, its Probe dimension and span attribute (STREAMLENS_PROBE_NAME); default: the URL's host")
	namespace := fs.String("namespace", settings.Namespace, "CloudWatch namespace of the EMF lines (STREAMLENS_NAMESPACE)")
	timeout := fs.Duration("timeout", settings.Timeout, "one request's whole time (STREAMLENS_PROBE_TIMEOUT_MS)")
	var hs headers
	fs.Var(&hs, "H", "a request header, 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *url == "" && fs.NArg() > 0 {
		*url = fs.Arg(0)
	}
	if *url == "" {
		fmt.Fprintln(stderr, "probe: give the URL (probe [flags] URL)")
		return 2
	}
	if envErr != nil {
		// Fell back to the defaults: said, and the probe goes on.
		fmt.Fprintln(stderr, "probe:", envErr)
	}
	if *name == "" {
		*name = probe.DefaultName(*url)
	}
	cfg := probe.Config{URL: *url, Envelope: *envelope, Header: http.Header{}, LeaveAfter: *leave}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(stderr, "probe: -H %q: want 'Name: value'\n", h)
			return 2
		}
		cfg.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if *region != "" {
		sign, err := probe.SigV4(ctx, *region)
		if err != nil {
			fmt.Fprintln(stderr, "probe:", err)
			return 2
		}
		cfg.Sign = sign
	}
	var view *probe.Live
	switch *live {
	case "on":
		view = probe.NewLive(stderr, *name)
	case "auto":
		if stderrTTY && getenv("TERM") != "dumb" {
			view = probe.NewLive(stderr, *name)
		}
	case "off":
	default:
		fmt.Fprintf(stderr, "probe: -live %q: want auto, on or off\n", *live)
		return 2
	}
	if view != nil {
		cfg.Progress = view.Progress
	}
	var emfW io.Writer
	switch *emfOut {
	case "":
	case "-":
		emfW = stdout
	default:
		f, err := os.OpenFile(*emfOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "probe: -emf:", err)
			return 2
		}
		defer f.Close()
		emfW = f
	}
	// Spans: only when an endpoint is configured; a bad variable is said
	// and the export goes on with its default, as the extension does.
	otlp, err := probe.OTLPFromEnv(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	enc := probe.EMF{Namespace: *namespace, Probe: *name}

	code := 0
	for i := 0; i < *n; i++ {
		if view != nil {
			view.Begin()
		}
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		r, err := probe.Run(rctx, cfg)
		cancel()
		if view != nil {
			view.End()
		}
		// A failed request is reported too: to the caller it is the worst
		// truncation, and the canary's alarm must see it.
		if emfW != nil && (err == nil || r.Err != nil) {
			line, eerr := enc.Append(nil, r)
			if eerr != nil {
				fmt.Fprintln(stderr, eerr)
			}
			if _, werr := emfW.Write(line); werr != nil {
				fmt.Fprintln(stderr, "probe: -emf:", werr)
			}
		}
		if otlp != nil && (err == nil || r.Err != nil) {
			if xerr := otlp.Export(ctx, r, *name); xerr != nil {
				fmt.Fprintln(stderr, xerr)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if r.Truncated {
			code = 1
		}
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
			continue
		}
		printResult(stdout, r)
	}
	return code
}

func envOr(getenv func(string) string, name, def string) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	return def
}

// isTerminal reports whether f is a terminal (a character device): the
// live view's cursor movements are for a terminal, not a file or a pipe.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printResult writes one result as a reader wants it: the phases, then the
// chunk timeline.
func printResult(w io.Writer, r probe.Result) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	verdict := "complete"
	if r.Truncated {
		verdict = "TRUNCATED: " + r.Reason
	}
	fmt.Fprintf(w, "status %d  dns %s  connect %s  tls %s  ttfb %s  first useful %s  total %s  %d chunks, %d bytes  %s\n",
		r.Status, ms(r.DNS), ms(r.Connect), ms(r.TLS), ms(r.TTFB), ms(r.FirstUseful), ms(r.Total), len(r.Chunks), r.Bytes, verdict)
	if r.SHA256OK != nil {
		fmt.Fprintf(w, "  end marker: sha256 %s\n", map[bool]string{true: "matches", false: "DOES NOT match"}[*r.SHA256OK])
	}
	if r.ErrorType != "" {
		fmt.Fprintf(w, "  error: %s %s\n", r.ErrorType, r.ErrorBody)
	}
	fmt.Fprintf(w, "  traceparent %s\n", r.TraceParent)
	for i, c := range r.Chunks {
		if i == 5 && len(r.Chunks) > 10 {
			fmt.Fprintf(w, "  … %d more\n", len(r.Chunks)-10)
		}
		if i >= 5 && i < len(r.Chunks)-5 {
			continue
		}
		fmt.Fprintf(w, "  chunk %3d at %10s  %6d bytes\n", i+1, ms(c.At), c.Bytes)
	}
}

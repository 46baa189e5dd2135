// Package config reads the extension's configuration from STREAMLENS_*
// environment variables.
package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/protocol"
)

// Config is the extension's configuration. Every field comes from one
// environment variable; the README lists them with their defaults.
type Config struct {
	RuntimeAPI         string         // AWS_LAMBDA_RUNTIME_API
	Name               string         // the executable's file name (Lambda-Extension-Name)
	FunctionName       string         // STREAMLENS_FUNCTION_NAME, else AWS_LAMBDA_FUNCTION_NAME
	Addr               protocol.Addr  // STREAMLENS_ADDR
	RingDir            string         // STREAMLENS_RING_DIR; "" when off
	AllowNonLoopback   bool           // STREAMLENS_ALLOW_NON_LOOPBACK
	Namespace          string         // STREAMLENS_NAMESPACE
	TTFBThreshold      time.Duration  // STREAMLENS_TTFB_THRESHOLD_MS
	Telemetry          bool           // STREAMLENS_TELEMETRY
	TelemetryAddr      string         // STREAMLENS_TELEMETRY_ADDR
	TelemetryBuffer    time.Duration  // STREAMLENS_TELEMETRY_BUFFER_MS
	RuntimeDoneWait    time.Duration  // STREAMLENS_RUNTIME_DONE_WAIT_MS
	Quiet              time.Duration  // STREAMLENS_QUIET_MS; 0: the lifecycle's default
	StartWait          time.Duration  // STREAMLENS_START_WAIT_MS
	DeadlineMargin     time.Duration  // STREAMLENS_DEADLINE_MARGIN_MS
	MaxOpenStreams     int            // STREAMLENS_MAX_OPEN_STREAMS
	MaxChunksPerStream int            // STREAMLENS_MAX_CHUNKS_PER_STREAM
	MemoryLimit        int            // STREAMLENS_MEMORY_LIMIT_MB, in bytes
	IdleLimit          time.Duration  // STREAMLENS_IDLE_LIMIT_MS
	InstrumentMetrics  bool           // STREAMLENS_INSTRUMENT_METRICS
	MaxInstruments     int            // STREAMLENS_MAX_INSTRUMENTS
	InstrumentAllow    *regexp.Regexp // STREAMLENS_INSTRUMENT_ALLOW, matched whole; nil: any name
	Version            string         // AWS_LAMBDA_FUNCTION_VERSION when STREAMLENS_VERSION_DIMENSION=on, else ""
	ShutdownMargin     time.Duration  // STREAMLENS_SHUTDOWN_MARGIN_MS
	OTLP               OTLP           // STREAMLENS_OTLP*, STREAMLENS_TRACES_* and the standard OTEL_* variables (otel.go)
	SpanMaxEvents      int            // STREAMLENS_SPAN_MAX_EVENTS
	StdoutWait         time.Duration  // STREAMLENS_STDOUT_WAIT_MS
	StdoutBuffer       int            // STREAMLENS_STDOUT_BUFFER_KB, in bytes
	Strict             bool           // STREAMLENS_STRICT: a bad value fails init instead of falling back
	SchedIdle          bool           // STREAMLENS_SCHED_IDLE: the extension's threads run under SCHED_IDLE
}

// FromEnv reads the configuration. A bad STREAMLENS_* value falls back to
// its default in the returned Config, and the error lists every bad variable
// at once, each naming its variable: the caller reports them and goes on
// (the function must not fail for its observability), or fails init when
// STREAMLENS_STRICT=on (Config.Strict), for CI and staging. Only a missing
// AWS_LAMBDA_RUNTIME_API (not in a Lambda sandbox) leaves nothing to run.
//
// Every value is read with its leading and trailing spaces trimmed: a value
// pasted into a console ("on ", " 250") means what it says, and a value of
// spaces only is unset, as an empty one.
func FromEnv(getenv func(string) string, executable string) (Config, error) {
	raw := getenv
	getenv = func(name string) string { return strings.TrimSpace(raw(name)) }
	c := Config{
		RuntimeAPI:   getenv("AWS_LAMBDA_RUNTIME_API"),
		Name:         filepath.Base(executable),
		FunctionName: getenv("STREAMLENS_FUNCTION_NAME"),
		Namespace:    metrics.DefaultNamespace,
	}
	var errs []error
	bad := func(name, val, why string) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, val, why))
	}
	if c.FunctionName != "" && !emf.ValidDimensionValue(c.FunctionName) {
		// The FunctionName dimension of every metric: CloudWatch would drop
		// them all without a word.
		bad("STREAMLENS_FUNCTION_NAME", c.FunctionName, "want 1 to 1024 printable ASCII characters, not only spaces (a CloudWatch dimension value)")
		c.FunctionName = ""
	}
	if c.FunctionName == "" {
		c.FunctionName = getenv("AWS_LAMBDA_FUNCTION_NAME")
	}
	if c.FunctionName == "" {
		c.FunctionName = "unknown"
	}
	str := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	ms := func(name string, def, min, max int) time.Duration {
		if v := getenv(name); v != "" {
			return parseMs(name, v, time.Duration(def)*time.Millisecond, min, max, bad)
		}
		return time.Duration(def) * time.Millisecond
	}
	num := func(name string, def, min, max int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			bad(name, v, fmt.Sprintf("want a whole number from %d to %d", min, max))
			return def
		}
		return n
	}
	flag := func(name string, def bool) bool { return parseFlag(name, getenv(name), def, bad) }

	if c.RuntimeAPI == "" {
		errs = append(errs, errors.New("AWS_LAMBDA_RUNTIME_API is not set: not running in a Lambda sandbox"))
	}
	c.Strict = flag("STREAMLENS_STRICT", false)
	c.Addr, _ = protocol.ParseAddr(protocol.DefaultAddr)
	addr := str("STREAMLENS_ADDR", protocol.DefaultAddr)
	c.AllowNonLoopback = flag("STREAMLENS_ALLOW_NON_LOOPBACK", false)
	if a, err := protocol.ParseAddr(addr); err != nil {
		bad("STREAMLENS_ADDR", addr, err.Error())
	} else if a.Network == "udp" && !a.UDP.Addr().IsLoopback() && !c.AllowNonLoopback {
		bad("STREAMLENS_ADDR", addr, "not a loopback address: events would be accepted from the network (set STREAMLENS_ALLOW_NON_LOOPBACK=on to insist)")
	} else {
		c.Addr = a
	}
	switch dir := str("STREAMLENS_RING_DIR", protocol.DefaultRingDir()); {
	case dir == "off":
	case !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/":
		bad("STREAMLENS_RING_DIR", dir, "want an absolute path (a directory the extension creates), or off")
		c.RingDir = protocol.DefaultRingDir()
	default:
		c.RingDir = dir
	}
	if ns := str("STREAMLENS_NAMESPACE", metrics.DefaultNamespace); validNamespace(ns) {
		c.Namespace = ns
	} else {
		// CloudWatch drops every metric of an invalid namespace without a
		// word: refused here, where it can be said.
		bad("STREAMLENS_NAMESPACE", ns, "want 1 to 255 of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/ or :")
	}
	c.TTFBThreshold = ms("STREAMLENS_TTFB_THRESHOLD_MS", 100, 1, 900_000)
	c.IdleLimit = ms("STREAMLENS_IDLE_LIMIT_MS", 30_000, 0, 900_000)
	c.Telemetry = flag("STREAMLENS_TELEMETRY", true)
	c.TelemetryAddr = str("STREAMLENS_TELEMETRY_ADDR", defaultTelemetryAddr)
	if _, _, err := SplitHostPort(c.TelemetryAddr); err != nil {
		bad("STREAMLENS_TELEMETRY_ADDR", c.TelemetryAddr, "want host:port")
		c.TelemetryAddr = defaultTelemetryAddr
	}
	c.TelemetryBuffer = ms("STREAMLENS_TELEMETRY_BUFFER_MS", 25, 25, 30_000) // the API's minimum is 25
	c.RuntimeDoneWait = ms("STREAMLENS_RUNTIME_DONE_WAIT_MS", 500, 0, 60_000)
	c.StartWait = ms("STREAMLENS_START_WAIT_MS", 20, 0, 10_000)
	c.Quiet = ms("STREAMLENS_QUIET_MS", 0, 0, 900_000)
	c.DeadlineMargin = ms("STREAMLENS_DEADLINE_MARGIN_MS", 100, 10, 10_000)
	c.MaxOpenStreams = num("STREAMLENS_MAX_OPEN_STREAMS", 1024, 1, 1_000_000)
	c.MaxChunksPerStream = num("STREAMLENS_MAX_CHUNKS_PER_STREAM", 2000, 1, 1_000_000)
	c.MemoryLimit = num("STREAMLENS_MEMORY_LIMIT_MB", DefaultMemoryLimitMB(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")), 8, 10_240) << 20
	c.InstrumentMetrics = flag("STREAMLENS_INSTRUMENT_METRICS", true)
	c.MaxInstruments = num("STREAMLENS_MAX_INSTRUMENTS", 100, 1, 10_000)
	if v := getenv("STREAMLENS_INSTRUMENT_ALLOW"); v != "" {
		re, err := regexp.Compile(`^(?:` + v + `)$`)
		if err != nil {
			bad("STREAMLENS_INSTRUMENT_ALLOW", v, "want a regular expression (RE2): "+err.Error())
		}
		c.InstrumentAllow = re
	}
	if flag("STREAMLENS_VERSION_DIMENSION", false) {
		c.Version = getenv("AWS_LAMBDA_FUNCTION_VERSION")
		if c.Version != "" && !emf.ValidDimensionValue(c.Version) {
			bad("AWS_LAMBDA_FUNCTION_VERSION", c.Version, "not a valid CloudWatch dimension value: no Version dimension")
			c.Version = ""
		}
	}
	c.ShutdownMargin = ms("STREAMLENS_SHUTDOWN_MARGIN_MS", 200, 0, 2000)
	c.OTLP = otlpFromEnv(getenv, c.FunctionName, bad)
	c.SpanMaxEvents = num("STREAMLENS_SPAN_MAX_EVENTS", 128, 0, 10_000)
	c.StdoutWait = ms("STREAMLENS_STDOUT_WAIT_MS", 50, 0, 10_000)
	c.StdoutBuffer = num("STREAMLENS_STDOUT_BUFFER_KB", 4096, 64, 1<<20) << 10
	c.SchedIdle = flag("STREAMLENS_SCHED_IDLE", true)
	return c, errors.Join(errs...)
}

const defaultTelemetryAddr = "sandbox.localdomain:4243"

// DefaultMemoryLimitMB is the extension's memory ceiling for a function of
// functionMB (AWS_LAMBDA_FUNCTION_MEMORY_SIZE): an eighth of it, from 24 to
// 256 MB (24 when unknown). The extension shares the function's memory; the
// ceiling is what it keeps of per-chunk detail, whatever the input.
func DefaultMemoryLimitMB(functionMB string) int {
	mb, err := strconv.Atoi(functionMB)
	if err != nil || mb <= 0 {
		return 24
	}
	return min(max(mb/8, 24), 256)
}

// validNamespace applies CloudWatch's namespace rules, which are stricter
// than the EMF specification's: printable ASCII of a few kinds, at least
// one non-space, at most 255, not AWS/ (reserved for AWS services) and not
// a leading colon (PutMetricData's namespace pattern is [^:].*).
func validNamespace(ns string) bool {
	if len(ns) == 0 || len(ns) > 255 || strings.TrimSpace(ns) == "" || strings.HasPrefix(ns, "AWS/") || strings.HasPrefix(ns, ":") {
		return false
	}
	for _, r := range ns {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_/#: ", r)
		if !ok {
			return false
		}
	}
	return true
}

// SplitHostPort is net.SplitHostPort with the port checked as a number.
func SplitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}

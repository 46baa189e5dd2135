// Command canary is the probe as a Lambda function: invoked on a schedule
// (EventBridge Scheduler, deploy/canary), it probes a configured URL as a
// caller does, one request or a few one after another, and writes each
// result to stdout as a CloudWatch EMF line, which CloudWatch Logs turns
// into the Caller* metrics under the canary's own dimension (Probe=<name>).
// With an OTLP endpoint configured it also exports each probe's client span,
// whose traceparent the probed function's spans join.
//
// The canary's requests are real invocations of the probed function: they
// also keep a low-traffic function's SLO windows fed at night, when real
// callers are too few for a window to judge (docs/probe.md).
//
// Configuration (docs/probe.md lists every variable with its default):
// STREAMLENS_CANARY_URL (required), STREAMLENS_CANARY_PROBES,
// STREAMLENS_CANARY_SIGV4, STREAMLENS_PROBE_NAME, STREAMLENS_PROBE_ENVELOPE,
// STREAMLENS_PROBE_TIMEOUT_MS, STREAMLENS_NAMESPACE, and the standard
// OTEL_EXPORTER_OTLP_* variables.
//
// Build with -tags lambda.norpc, GOOS=linux, as bootstrap (provided.al2023).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/streamlens/streamlens/internal/probe"
)

// maxProbes bounds the requests of one invocation: a canary is a trickle of
// traffic, not a load test.
const maxProbes = 20

// deadlineMargin is kept free at the end of an invocation so that a probe
// cut by the function's timeout is still written out (its EMF line, its
// span): a canary that dies with its verdict unsaid looks silent, not
// failing.
const deadlineMargin = 1500 * time.Millisecond

type canary struct {
	url      string
	name     string
	probes   int
	settings probe.Settings
	region   string // sign for AWS_IAM in this region; "" unsigned
	otlp     *probe.OTLP
	out      io.Writer // the EMF lines: stdout in Lambda
	logf     func(format string, args ...any)
	fatal    error // nothing to probe: every invocation fails with it

	signOnce sync.Once
	sign     func(*http.Request) error
	signErr  error
}

// newCanary reads the configuration. Bad values fall back to their defaults
// and are logged once; only a missing URL leaves nothing to do.
func newCanary(getenv func(string) string, out io.Writer, logf func(string, ...any)) *canary {
	get := func(n string) string { return strings.TrimSpace(getenv(n)) }
	s, err := probe.SettingsFromEnv(getenv)
	if err != nil {
		logf("canary: %v", err)
	}
	c := &canary{url: get("STREAMLENS_CANARY_URL"), settings: s, name: s.Name, probes: 1, out: out, logf: logf}
	if c.url == "" {
		c.fatal = errors.New("canary: STREAMLENS_CANARY_URL is not set: nothing to probe")
	}
	if c.name == "" {
		c.name = probe.DefaultName(c.url)
	}
	if v := get("STREAMLENS_CANARY_PROBES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxProbes {
			logf("canary: STREAMLENS_CANARY_PROBES=%q: want a whole number from 1 to %d; 1 is used", v, maxProbes)
		} else {
			c.probes = n
		}
	}
	switch v := get("STREAMLENS_CANARY_SIGV4"); strings.ToLower(v) {
	case "", "on":
		// The canary's role signs, as a caller of an AWS_IAM function URL
		// must; a URL with auth NONE ignores the signature.
		c.region = get("AWS_REGION")
		if c.region == "" {
			logf("canary: STREAMLENS_CANARY_SIGV4 is on but AWS_REGION is not set: requests go unsigned")
		}
	case "off":
	default:
		c.region = v // a region of its own: the URL's function is elsewhere
	}
	o, err := probe.OTLPFromEnv(getenv)
	if err != nil {
		logf("%v", err)
	}
	c.otlp = o
	return c
}

// Summary is what an invocation returns: Scheduler ignores it, a test
// invocation in the console shows it.
type Summary struct {
	Probe     string   `json:"probe"`
	Probes    int      `json:"probes"`
	Truncated int      `json:"truncated"`
	Reasons   []string `json:"reasons,omitempty"`
}

// handle probes the URL c.probes times, one after another. The event is
// not read: the schedule's input is whatever it is. A truncation is a
// metric, not an invocation error: an error would make Scheduler retry
// (more probes of a function already failing) and count the probe's
// verdict as the canary's own failure.
func (c *canary) handle(ctx context.Context, _ json.RawMessage) (Summary, error) {
	sum := Summary{Probe: c.name}
	if c.fatal != nil {
		return sum, c.fatal
	}
	cfg := probe.Config{URL: c.url, Envelope: c.settings.Envelope, Header: http.Header{"User-Agent": {"streamlens-canary"}}}
	if c.region != "" {
		c.signOnce.Do(func() { c.sign, c.signErr = probe.SigV4(ctx, c.region) })
		if c.signErr != nil {
			// Unsigned, an AWS_IAM URL answers 403: a truncation the
			// metrics show, and this line says why.
			c.logf("canary: %v: requests go unsigned", c.signErr)
		}
		cfg.Sign = c.sign
	}
	work := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, dl.Add(-deadlineMargin))
		defer cancel()
	}
	enc := probe.EMF{Namespace: c.settings.Namespace, Probe: c.name}
	for i := 0; i < c.probes && work.Err() == nil; i++ {
		pctx, cancel := context.WithTimeout(work, c.settings.Timeout)
		r, err := probe.Run(pctx, cfg)
		cancel()
		if err != nil && r.Err == nil {
			// Not a request that failed but one never made (a URL that
			// does not parse): nothing a caller felt, said in the log.
			c.logf("canary: %v", err)
			return sum, fmt.Errorf("canary: %w", err)
		}
		sum.Probes++
		if r.Truncated {
			sum.Truncated++
			sum.Reasons = append(sum.Reasons, r.Reason)
		}
		line, err := enc.Append(nil, r)
		if err != nil {
			c.logf("canary: %v", err)
		}
		// One write per line: Lambda makes a log event of each line, and
		// CloudWatch a metric of each event.
		if _, err := c.out.Write(line); err != nil {
			c.logf("canary: stdout: %v", err)
		}
		if c.otlp != nil {
			// The span gets the invocation's time left, not the probes':
			// a span export cut by the margin is the least loss.
			if err := c.otlp.Export(ctx, r, c.name); err != nil {
				c.logf("%v", err)
			}
		}
	}
	return sum, nil
}

func main() {
	logger := log.New(os.Stderr, "", 0)
	c := newCanary(os.Getenv, os.Stdout, logger.Printf)
	lambda.Start(c.handle)
}

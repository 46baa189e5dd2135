// Command slo reports SLO attainment, error budget left and burn rates from
// CloudWatch, and replays alarm scenarios against the generated alarms:
//
//	slo report --function pricing --region eu-west-1 [--since 28d] [--json]
//	slo replay -scenario file.json [-var name=value] [-spec slos.json] [-json]
//
// Credentials come from the standard AWS chain (environment, shared config,
// SSO, instance/task role). --endpoint (or AWS_ENDPOINT_URL_CLOUDWATCH)
// points it at another CloudWatch endpoint.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"

	"github.com/streamlens/streamlens/metrics"
	"github.com/streamlens/streamlens/slo"
)

const usage = `usage:
  slo report --function NAME [--region R] [--since 28d] [--end TIME] [--spec FILE] [--json]
  slo replay -scenario FILE [-scenario FILE …] [-var name=value …] [-spec FILE] [-tf DIR] [-json]`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "report":
		err = report(context.Background(), os.Args[2:])
	case "replay":
		err = runReplay(os.Args[2:], os.Stdout)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "slo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// parseSince accepts Go durations and whole days ("28d").
func parseSince(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 455 {
			return 0, fmt.Errorf("--since %q: want 1d..455d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Hour {
		return 0, fmt.Errorf("--since %q: want a duration of at least 1h, or days like 28d", s)
	}
	return d, nil
}

func report(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	function := fs.String("function", "", "Lambda function name (FunctionName dimension)")
	region := fs.String("region", "", "AWS region (default: from the AWS config chain)")
	since := fs.String("since", "", "window to report on, e.g. 28d or 72h (default: each SLO's window)")
	specPath := fs.String("spec", "", "SLO spec file (default: the shipped slo/slos.json, embedded)")
	endFlag := fs.String("end", "", "report as of this time (RFC 3339, e.g. 2026-12-07T06:00:00Z; default: now)")
	namespace := fs.String("namespace", metrics.DefaultNamespace, "CloudWatch namespace")
	endpoint := fs.String("endpoint", "", "CloudWatch endpoint URL override")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *function == "" {
		return errors.New("--function is required")
	}
	specs, err := loadSpecs(*specPath)
	if err != nil {
		return err
	}
	end := time.Now() // Fetch ends the window on the last period boundary
	if *endFlag != "" {
		if end, err = time.Parse(time.RFC3339, *endFlag); err != nil {
			return fmt.Errorf("--end: %w", err)
		}
	}
	var opts []func(*config.LoadOptions) error
	if *region != "" {
		opts = append(opts, config.WithRegion(*region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("AWS config: %w", err)
	}
	cw := cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		if *endpoint != "" {
			o.BaseEndpoint = aws.String(*endpoint)
		}
		// GetMetricData is throttled per account (50 TPS by default); a
		// report reads all pages, so it backs off and retries rather than
		// fail on the first throttle.
		o.Retryer = slo.Retryer()
	})
	var window time.Duration
	if *since != "" {
		if window, err = parseSince(*since); err != nil {
			return err
		}
	}
	var sts []slo.Status
	for _, s := range specs {
		w := window
		if w == 0 {
			w = time.Duration(s.WindowDays) * 24 * time.Hour
		}
		h, err := slo.Fetch(ctx, cw, []slo.Spec{s}, *namespace, *function, end, w)
		if err != nil {
			return err
		}
		sts = append(sts, slo.Compute(s, h[0], w))
	}
	if err := slo.CheckData(sts, *function, *namespace, cfg.Region, window); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sts)
	}
	return slo.PrintTable(os.Stdout, sts)
}

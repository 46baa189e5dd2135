// Package cwcheck checks EMF lines against what CloudWatch accepts, which is
// stricter than the EMF specification: it is the tests' independent judge of
// the encoder (it shares no code with emf/), and it names the custom metrics
// a line creates, for the cost figures.
package cwcheck

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Limits, from the CloudWatch EMF specification and the PutMetricData
// quotas that metrics extracted from logs are held to.
const (
	maxNamespace      = 255
	maxMetricName     = 255
	maxDimensionName  = 255
	maxDimensionValue = 1024
	maxDimensionsKeys = 30
	maxMetrics        = 100 // per directive
	maxValues         = 100 // per metric
	minAbs, maxAbs    = 8.515920e-109, 1.174271e+108
	past, future      = 14 * 24 * time.Hour, 2 * time.Hour
)

var units = map[string]bool{}

func init() {
	for _, u := range strings.Fields(`Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes
		Bits Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second
		Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second
		Terabits/Second Count/Second None`) {
		units[u] = true
	}
}

// Check validates one EMF line as CloudWatch would at now, and returns the
// custom metrics it creates ("namespace|metric|dim=value,…"). Any error
// means CloudWatch would drop metrics of the line, silently.
func Check(line []byte, now time.Time) ([]string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(line, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var meta struct {
		Timestamp         *float64
		CloudWatchMetrics []struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct{ Name, Unit string }
		}
	}
	raw, ok := doc["_aws"]
	if !ok {
		return nil, nil // a plain log line: no metrics
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("_aws: %w", err)
	}
	if meta.Timestamp == nil || *meta.Timestamp != math.Trunc(*meta.Timestamp) {
		return nil, fmt.Errorf("_aws.Timestamp: want whole milliseconds")
	}
	if ts := time.UnixMilli(int64(*meta.Timestamp)); ts.Before(now.Add(-past)) || ts.After(now.Add(future)) {
		return nil, fmt.Errorf("timestamp %v: more than 14 days old or 2 hours ahead", ts)
	}
	var out []string
	for _, d := range meta.CloudWatchMetrics {
		if err := namespace(d.Namespace); err != nil {
			return nil, err
		}
		if len(d.Metrics) == 0 || len(d.Metrics) > maxMetrics {
			return nil, fmt.Errorf("%d metrics in a directive", len(d.Metrics))
		}
		var sets [][]string
		for _, set := range d.Dimensions {
			if len(set) > maxDimensionsKeys {
				return nil, fmt.Errorf("dimension set of %d keys", len(set))
			}
			var kv []string
			for _, k := range set {
				if k == "" || len(k) > maxDimensionName || !printableASCII(k) || strings.TrimSpace(k) == "" {
					return nil, fmt.Errorf("dimension name %q", k)
				}
				var v string
				if err := json.Unmarshal(doc[k], &v); err != nil {
					return nil, fmt.Errorf("dimension %s: not a string member", k)
				}
				if err := dimensionValue(v); err != nil {
					return nil, fmt.Errorf("dimension %s: %w", k, err)
				}
				kv = append(kv, k+"="+v)
			}
			sort.Strings(kv)
			sets = append(sets, kv)
		}
		for _, m := range d.Metrics {
			if m.Name == "" || len(m.Name) > maxMetricName || !printableASCII(m.Name) {
				return nil, fmt.Errorf("metric name %q", m.Name)
			}
			if m.Unit != "" && !units[m.Unit] {
				return nil, fmt.Errorf("metric %s: unit %q", m.Name, m.Unit)
			}
			if err := values(doc[m.Name]); err != nil {
				return nil, fmt.Errorf("metric %s: %w", m.Name, err)
			}
			for _, kv := range sets {
				out = append(out, d.Namespace+"|"+m.Name+"|"+strings.Join(kv, ","))
			}
		}
	}
	return out, nil
}

func namespace(ns string) error {
	if ns == "" || len(ns) > maxNamespace || strings.HasPrefix(ns, "AWS/") || strings.TrimSpace(ns) == "" {
		return fmt.Errorf("namespace %q", ns)
	}
	for _, r := range ns {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_/#: ", r)) {
			return fmt.Errorf("namespace %q: character %q", ns, r)
		}
	}
	return nil
}

// dimensionValue: 1 to 1,024 ASCII characters, no control characters, not
// only whitespace.
func dimensionValue(v string) error {
	switch {
	case v == "" || len(v) > maxDimensionValue:
		return fmt.Errorf("value of %d bytes", len(v))
	case !printableASCII(v):
		return fmt.Errorf("value %q: not printable ASCII", v)
	case strings.TrimSpace(v) == "":
		return fmt.Errorf("value %q: only whitespace", v)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// values: a number or an array of 1 to 100 numbers, each 0 or within
// CloudWatch's magnitude range.
func values(raw json.RawMessage) error {
	if raw == nil {
		return fmt.Errorf("no member")
	}
	var vs []float64
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &vs); err != nil {
			return fmt.Errorf("not an array of numbers: %w", err)
		}
		if len(vs) == 0 || len(vs) > maxValues {
			return fmt.Errorf("%d values", len(vs))
		}
	} else {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("not a number: %w", err)
		}
		vs = []float64{v}
	}
	for _, v := range vs {
		if a := math.Abs(v); v != 0 && (a < minAbs || a > maxAbs) {
			return fmt.Errorf("value %g out of CloudWatch's range", v)
		}
	}
	return nil
}

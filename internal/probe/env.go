package probe

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/streamlens/streamlens/metrics"
)

// Settings are the probe's own variables, read alike by the command (as its
// flags' defaults) and by the canary. A bad value falls back to its
// default, and the error names it.
type Settings struct {
	Name      string        // STREAMLENS_PROBE_NAME: the Probe dimension; "" is DefaultName(url)
	Namespace string        // STREAMLENS_NAMESPACE: default metrics.DefaultNamespace
	Envelope  string        // STREAMLENS_PROBE_ENVELOPE: pricing (default), lines or raw
	Timeout   time.Duration // STREAMLENS_PROBE_TIMEOUT_MS: one request's whole time; default 30 s
}

// DefaultTimeout bounds one probe unless STREAMLENS_PROBE_TIMEOUT_MS says:
// longer than any healthy stream of the pricing function, shorter than a
// stream hung until the function's timeout (the caller's worst case).
const DefaultTimeout = 30 * time.Second

// SettingsFromEnv reads the settings.
func SettingsFromEnv(getenv func(string) string) (Settings, error) {
	get := func(n string) string { return strings.TrimSpace(getenv(n)) }
	s := Settings{Name: get("STREAMLENS_PROBE_NAME"), Namespace: metrics.DefaultNamespace, Envelope: Pricing, Timeout: DefaultTimeout}
	var errs []error
	if v := get("STREAMLENS_NAMESPACE"); v != "" {
		s.Namespace = v
	}
	switch v := get("STREAMLENS_PROBE_ENVELOPE"); v {
	case "":
	case Pricing, Lines, Raw:
		s.Envelope = v
	default:
		errs = append(errs, fmt.Errorf("STREAMLENS_PROBE_ENVELOPE=%q: want pricing, lines or raw; pricing is used", v))
	}
	if v := get("STREAMLENS_PROBE_TIMEOUT_MS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 900_000 {
			errs = append(errs, fmt.Errorf("STREAMLENS_PROBE_TIMEOUT_MS=%q: want whole milliseconds from 1 to 900000; %d is used", v, DefaultTimeout.Milliseconds()))
		} else {
			s.Timeout = time.Duration(n) * time.Millisecond
		}
	}
	return s, errors.Join(errs...)
}

// DefaultName is the probe's name for a URL when none is given: its host
// (a function URL's host names one function), else "probe".
func DefaultName(u string) string {
	if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
		return p.Hostname()
	}
	return "probe"
}

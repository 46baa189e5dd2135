package probe

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/streamlens/streamlens/emf"
	"github.com/streamlens/streamlens/metrics"
)

// EMF writes results as CloudWatch embedded-metric documents: the caller's
// side of a stream, under the probe's own dimension (metrics.DimProbe), so
// that CloudWatch makes metrics of the lines the canary prints (or of a
// file the command writes, shipped by whatever ships logs).
type EMF struct {
	Namespace string // metrics.DefaultNamespace when ""
	Probe     string // the Probe dimension's value; made valid for CloudWatch
}

// units are the metrics' units, from their one definition.
var units = func() map[string]emf.Unit {
	u := map[string]emf.Unit{}
	for _, d := range metrics.ProbeDefs() {
		u[d.Name] = d.Unit
	}
	return u
}()

// Append appends r as one EMF document (one line) to dst. A result without
// a response (r.Err) is written as truncated, with no timings but its
// phases: to a caller, a request that failed is the worst truncation.
func (e EMF) Append(dst []byte, r Result) ([]byte, error) {
	ns := e.Namespace
	if ns == "" {
		ns = metrics.DefaultNamespace
	}
	name, _ := emf.DimensionValue(e.Probe)
	ts := r.Start
	if ts.IsZero() {
		ts = time.Now()
	}
	verdict := "complete"
	if r.Truncated {
		verdict = "truncated"
	}
	d := emf.Document{
		Namespace:  ns,
		Timestamp:  ts,
		Dimensions: [][]string{{metrics.DimProbe}},
		Properties: []emf.Property{
			{Key: metrics.DimProbe, Value: name},
			{Key: metrics.PropHTTPStatus, Value: r.Status},
			{Key: metrics.PropProbeVerdict, Value: verdict},
			{Key: metrics.PropTraceParent, Value: r.TraceParent},
		},
	}
	if r.URL != "" {
		d.Properties = append(d.Properties, emf.Property{Key: metrics.PropProbeURL, Value: RedactURL(r.URL)})
	}
	if r.Reason != "" {
		d.Properties = append(d.Properties, emf.Property{Key: metrics.PropTruncateReason, Value: r.Reason})
	}
	if r.ErrorType != "" {
		d.Properties = append(d.Properties, emf.Property{Key: metrics.PropErrorType, Value: r.ErrorType})
	}
	add := func(metric string, v float64) {
		d.Metrics = append(d.Metrics, emf.Metric{Name: metric, Unit: units[metric], Values: []float64{v}})
	}
	// A phase not taken is absent, not 0 ms: a reused connection did not
	// connect in no time.
	for _, p := range []struct {
		metric string
		d      time.Duration
	}{{metrics.CallerDNS, r.DNS}, {metrics.CallerConnect, r.Connect}, {metrics.CallerTLS, r.TLS}} {
		if p.d > 0 {
			add(p.metric, ms(p.d))
		}
	}
	if r.Status != 0 {
		// Only a response has a first byte, a body and an end: a failed
		// request's time to its failure is no response time.
		add(metrics.CallerTimeToFirstByte, ms(r.TTFB))
		if r.FirstUseful > 0 {
			add(metrics.CallerFirstUsefulChunk, ms(r.FirstUseful))
		}
		add(metrics.CallerResponseTime, ms(r.Total))
		add(metrics.CallerChunks, float64(len(r.Chunks)))
		add(metrics.CallerBytes, float64(r.Bytes))
	}
	add(metrics.CallerTruncated, b2f(r.Truncated))
	if r.SHA256OK != nil {
		add(metrics.CallerIntegrityMismatch, b2f(!*r.SHA256OK))
	}
	out, err := emf.Append(dst, &d)
	if err != nil {
		return out, fmt.Errorf("probe: emf: %w", err)
	}
	return out, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// credentialKeys are the query keys whose values the semantic conventions
// for url.full say to redact (presigned URLs' signatures), compared without
// case; other query values stay, since they say what was asked for
// (instruments=50).
var credentialKeys = []string{"awsaccesskeyid", "signature", "sig", "x-goog-signature",
	"x-amz-signature", "x-amz-credential", "x-amz-security-token"}

// RedactURL returns u fit for a log line, a metric's property or a span:
// its userinfo and the values of credential query keys become REDACTED.
// What does not parse is not shown at all.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(a URL that does not parse, not shown)"
	}
	if p.User != nil {
		p.User = url.User("REDACTED")
	}
	if p.RawQuery != "" {
		parts := strings.Split(p.RawQuery, "&")
		for i, part := range parts {
			k, _, ok := strings.Cut(part, "=")
			key, _ := url.QueryUnescape(k)
			for _, c := range credentialKeys {
				if ok && strings.EqualFold(key, c) {
					parts[i] = k + "=REDACTED"
				}
			}
		}
		p.RawQuery = strings.Join(parts, "&")
	}
	return p.String()
}

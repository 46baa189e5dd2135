package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// OTLP is the span export's configuration. Lambda gives every extension the
// function's environment, so the standard OTEL_* variables a function's own
// OpenTelemetry SDK reads are honoured here too, as the OpenTelemetry
// specification defines them; a STREAMLENS_* variable wins where both say
// the same thing.
type OTLP struct {
	On bool // STREAMLENS_OTLP, else not OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none
	// Protocol is ProtocolHTTP (the default) or ProtocolGRPC, from
	// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL.
	Protocol string
	// URL is, for http/protobuf, the full traces URL (…/v1/traces); for
	// grpc, the collector's endpoint (scheme and host: the gRPC method is
	// the path).
	URL         string
	Headers     []KV // OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, values decoded
	Gzip        bool // OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION=gzip
	Timeout     time.Duration
	CACert      string // OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE: a PEM file
	ClientCert  string // …CLIENT_CERTIFICATE
	ClientKey   string // …CLIENT_KEY
	ServiceName string // OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES, else the function name
	Resource    []KV   // OTEL_RESOURCE_ATTRIBUTES
	Sampler     Sampler
}

// KV is one key=value pair of a list variable.
type KV struct{ Key, Value string }

// Sampler says which finished streams get a span. Streams that failed are
// kept whatever the sampler says when KeepFailed: the extension knows how a
// stream ended before it exports, which a head sampler in the function
// cannot.
type Sampler struct {
	ParentBased bool    // a sampled/unsampled parent decides for its healthy streams
	Ratio       float64 // the share of healthy streams kept without a deciding parent, by trace id
	KeepFailed  bool    // STREAMLENS_TRACES_KEEP_FAILED
}

// The OTLP protocols streamlens speaks (OTEL_EXPORTER_OTLP_PROTOCOL's values).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

const (
	defaultOTLPEndpoint = "http://localhost:4318"
	// defaultGRPCEndpoint is the specification's default for grpc.
	defaultGRPCEndpoint = "http://localhost:4317"
	// defaultSampleRatio keeps one healthy stream in ten: failing ones are
	// all kept, so the healthy ones are for comparison, not for counting
	// (the EMF metrics count every stream).
	defaultSampleRatio = 0.1
)

// otlpFromEnv reads the span export's configuration; bad reports a bad
// value, which then falls back to its default.
func otlpFromEnv(getenv func(string) string, functionName string, bad func(name, val, why string)) OTLP {
	// signal returns the traces-specific variable, else the generic one,
	// with the name it came from.
	signal := func(suffix string) (string, string) {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + suffix); v != "" {
			return "OTEL_EXPORTER_OTLP_TRACES_" + suffix, v
		}
		return "OTEL_EXPORTER_OTLP_" + suffix, getenv("OTEL_EXPORTER_OTLP_" + suffix)
	}
	o := OTLP{On: true, Protocol: ProtocolHTTP, URL: defaultOTLPEndpoint + "/v1/traces", Timeout: 25 * time.Millisecond}
	// The protocol first: it decides the default endpoint and whether
	// v1/traces is appended to a base URL.
	if name, v := signal("PROTOCOL"); v != "" {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case ProtocolHTTP:
		case ProtocolGRPC:
			o.Protocol, o.URL = ProtocolGRPC, defaultGRPCEndpoint
		default:
			bad(name, v, "want grpc or http/protobuf (http/json is not supported): http/protobuf is used")
		}
	}
	// base is the URL of a base endpoint: v1/traces appended for
	// http/protobuf; for grpc the endpoint as it is, as the specification
	// says (the gRPC method is the path).
	base := joinTracesPath
	if o.Protocol == ProtocolGRPC {
		base = func(v string) string { return v }
	}

	// OTEL_SDK_DISABLED is read even when STREAMLENS_OTLP decides, so that a
	// value the specification does not know is reported either way.
	sdkDisabled := otelBool("OTEL_SDK_DISABLED", getenv("OTEL_SDK_DISABLED"), bad)
	switch v := getenv("STREAMLENS_OTLP"); {
	case v != "":
		o.On = parseFlag("STREAMLENS_OTLP", v, true, bad)
	case sdkDisabled:
		o.On = false
	case strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none"):
		o.On = false
	}

	// Endpoint: STREAMLENS_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_ENDPOINT are
	// base URLs (v1/traces is appended); the traces-specific one is used as
	// it is.
	if v := getenv("STREAMLENS_OTLP_ENDPOINT"); v != "" {
		if validHTTPURL(v) {
			o.URL = base(v)
		} else {
			// An endpoint may carry a credential: shown redacted.
			bad("STREAMLENS_OTLP_ENDPOINT", RedactURL(v), "want an http:// or https:// URL (the collector's OTLP/HTTP base)")
		}
	} else if v := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		if validHTTPURL(v) {
			o.URL = v
		} else {
			bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", RedactURL(v), "want an http:// or https:// URL")
		}
	} else if v := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		if validHTTPURL(v) {
			o.URL = base(v)
		} else {
			bad("OTEL_EXPORTER_OTLP_ENDPOINT", RedactURL(v), "want an http:// or https:// URL")
		}
	}
	if name, v := signal("HEADERS"); v != "" {
		// A bad entry is dropped and reported, and the others are sent, as
		// the OpenTelemetry SDKs do: one typo must not take every
		// credential with it. Values may be credentials: never echoed.
		h, errs := parseList(v)
		for _, err := range errs {
			bad(name, "(not shown)", err.Error()+": this header is not sent")
		}
		for _, kv := range h {
			switch {
			case !httpguts.ValidHeaderFieldName(kv.Key):
				bad(name, "(not shown)", fmt.Sprintf("%q is not a valid HTTP header name: this header is not sent", kv.Key))
			case !httpguts.ValidHeaderFieldValue(kv.Value):
				bad(name, "(not shown)", fmt.Sprintf("the value of %q is not a valid HTTP header value: this header is not sent", kv.Key))
			default:
				o.Headers = append(o.Headers, kv)
			}
		}
	}
	if name, v := signal("COMPRESSION"); v != "" {
		switch strings.ToLower(v) {
		case "gzip":
			o.Gzip = true
		case "none":
		default:
			bad(name, v, "want gzip or none")
		}
	}
	if v := getenv("STREAMLENS_OTLP_TIMEOUT_MS"); v != "" {
		o.Timeout = parseMs("STREAMLENS_OTLP_TIMEOUT_MS", v, o.Timeout, 1, 60_000, bad)
	} else if name, v := signal("TIMEOUT"); v != "" {
		o.Timeout = parseMs(name, v, o.Timeout, 1, 60_000, bad)
	}
	_, o.CACert = signal("CERTIFICATE")
	certName, cert := signal("CLIENT_CERTIFICATE")
	keyName, key := signal("CLIENT_KEY")
	switch {
	case cert != "" && key != "":
		o.ClientCert, o.ClientKey = cert, key
	case cert != "":
		// Half a pair, either half: no client certificate, and the spans
		// go without one (a collector that wants one refuses them, which
		// is counted); the same whichever half is missing.
		bad(certName, cert, "a client certificate without its key ("+keyName+" is not set): no client certificate is used")
	case key != "":
		bad(keyName, key, "a client key without its certificate ("+certName+" is not set): no client certificate is used")
	}

	if v := getenv("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		r, errs := parseList(v)
		for _, err := range errs {
			bad("OTEL_RESOURCE_ATTRIBUTES", v, err.Error()+": this attribute is left out")
		}
		o.Resource = r
	}
	o.ServiceName = functionName
	for _, kv := range o.Resource {
		if kv.Key == "service.name" && kv.Value != "" {
			o.ServiceName = kv.Value
		}
	}
	if v := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); v != "" {
		o.ServiceName = v
	}

	o.Sampler = samplerFromEnv(getenv, bad)
	return o
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER(_ARG), STREAMLENS_TRACES_SAMPLE_RATIO
// and STREAMLENS_TRACES_KEEP_FAILED. Unset, healthy streams follow a
// deciding parent and are otherwise kept one in ten.
func samplerFromEnv(getenv func(string) string, bad func(name, val, why string)) Sampler {
	s := Sampler{ParentBased: true, Ratio: defaultSampleRatio, KeepFailed: true}
	if v := getenv("STREAMLENS_TRACES_KEEP_FAILED"); v != "" {
		s.KeepFailed = parseFlag("STREAMLENS_TRACES_KEEP_FAILED", v, true, bad)
	}
	ratioArg := func() float64 {
		v := getenv("OTEL_TRACES_SAMPLER_ARG")
		if v == "" {
			return 1 // the specification's default for the ratio samplers
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 || r > 1 {
			bad("OTEL_TRACES_SAMPLER_ARG", v, "want a ratio from 0 to 1")
			return 1
		}
		return r
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))); v {
	case "":
	case "always_on":
		s = Sampler{Ratio: 1, KeepFailed: s.KeepFailed}
	case "always_off":
		s = Sampler{Ratio: 0, KeepFailed: s.KeepFailed}
	case "traceidratio":
		s = Sampler{Ratio: ratioArg(), KeepFailed: s.KeepFailed}
	case "parentbased_always_on":
		s = Sampler{ParentBased: true, Ratio: 1, KeepFailed: s.KeepFailed}
	case "parentbased_always_off":
		s = Sampler{ParentBased: true, Ratio: 0, KeepFailed: s.KeepFailed}
	case "parentbased_traceidratio":
		s = Sampler{ParentBased: true, Ratio: ratioArg(), KeepFailed: s.KeepFailed}
	default:
		bad("OTEL_TRACES_SAMPLER", v, "want always_on, always_off, traceidratio or their parentbased_ forms")
	}
	if v := getenv("STREAMLENS_TRACES_SAMPLE_RATIO"); v != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 || r > 1 {
			bad("STREAMLENS_TRACES_SAMPLE_RATIO", v, "want a ratio from 0 to 1")
		} else {
			s.Ratio = r
		}
	}
	return s
}

func validHTTPURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// joinTracesPath appends v1/traces to a base URL, as the specification says
// for OTEL_EXPORTER_OTLP_ENDPOINT (a path of its own is kept before it).
func joinTracesPath(base string) string {
	return strings.TrimSuffix(base, "/") + "/v1/traces"
}

// parseList reads a list of key=value pairs separated by commas, values
// percent-decoded (the W3C Baggage format OTEL_EXPORTER_OTLP_HEADERS and
// OTEL_RESOURCE_ATTRIBUTES use). A bad item is left out with an error of
// its own, and the others are kept, as the OpenTelemetry SDKs do. An error
// names the item by its place and key, never shows its value (a header's
// may be a credential), nor an item that is not key=value (it may be one).
func parseList(v string) ([]KV, []error) {
	var out []KV
	var errs []error
	for i, item := range strings.Split(v, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, val, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("item %d is not key=value", i+1))
			continue
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			errs = append(errs, fmt.Errorf("item %d (%s): bad percent-encoding", i+1, k))
			continue
		}
		out = append(out, KV{k, dec})
	}
	return out, errs
}

// otelBool reads a boolean OTEL_* variable as the OpenTelemetry
// specification defines them: only "true", in any case, is true; "false"
// and unset are false; anything else ("1", "yes", "on") is false too, and
// reported, since whoever set it surely meant something else.
func otelBool(name, v string, bad func(name, val, why string)) bool {
	switch {
	case strings.EqualFold(v, "true"):
		return true
	case v == "" || strings.EqualFold(v, "false"):
		return false
	}
	bad(name, v, "want true or false (the OpenTelemetry specification's booleans): read as false")
	return false
}

// RedactURL returns u fit to print: its userinfo becomes REDACTED, and so
// does every query value (an api_key=… parameter), for an endpoint may
// carry a credential in either. What cannot be parsed is not shown at all.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(a URL that does not parse, not shown)"
	}
	if p.User != nil {
		p.User = url.User("REDACTED")
	}
	if i := strings.LastIndexByte(p.Opaque, '@'); i >= 0 {
		// "user:pass@host" without a scheme parses as scheme "user" and
		// an opaque "pass@host": both halves are the userinfo.
		p.Scheme, p.Opaque = "", "REDACTED"+p.Opaque[i:]
	}
	if p.RawQuery != "" {
		parts := strings.Split(p.RawQuery, "&")
		for i, part := range parts {
			if k, _, ok := strings.Cut(part, "="); ok {
				parts[i] = k + "=REDACTED"
			} else {
				parts[i] = "REDACTED" // a bare token may be the credential itself
			}
		}
		p.RawQuery = strings.Join(parts, "&")
	}
	if p.Fragment != "" {
		p.Fragment = "REDACTED"
	}
	return p.String()
}

func parseFlag(name, v string, def bool, bad func(name, val, why string)) bool {
	switch strings.ToLower(v) {
	case "":
		return def
	case "1", "true", "on", "yes":
		return true
	case "0", "false", "off", "no":
		return false
	}
	bad(name, v, "want on or off")
	return def
}

func parseMs(name, v string, def time.Duration, min, max int, bad func(name, val, why string)) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < min || n > max {
		bad(name, v, fmt.Sprintf("want whole milliseconds from %d to %d", min, max))
		return def
	}
	return time.Duration(n) * time.Millisecond
}

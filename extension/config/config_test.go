package config

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":       "127.0.0.1:9001",
		"STREAMLENS_ADDR":              "nonsense",
		"STREAMLENS_TTFB_THRESHOLD_MS": "-3",
		"STREAMLENS_TELEMETRY":         "maybe",
	}
	_, err := FromEnv(func(k string) string { return env[k] }, "/opt/extensions/streamlens")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, v := range []string{"STREAMLENS_ADDR", "STREAMLENS_TTFB_THRESHOLD_MS", "STREAMLENS_TELEMETRY"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "STREAMLENS_ADDR": "10.0.0.5:9126"}
	if _, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback address: %v", err)
	}
	env["STREAMLENS_ALLOW_NON_LOOPBACK"] = "on"
	if _, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err != nil {
		t.Errorf("explicit override refused: %v", err)
	}
	c, err := FromEnv(func(k string) string { return map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1"}[k] }, "/opt/extensions/streamlens")
	if err != nil || c.Name != "streamlens" || c.Addr.String() != protocol.DefaultAddr || c.TTFBThreshold != 100*time.Millisecond || !c.Telemetry || !c.SchedIdle {
		t.Errorf("defaults %+v %v", c, err)
	}
}

// A bad value falls back to its default (the caller reports it and goes
// on); only STREAMLENS_STRICT=on makes the caller fail instead.
func TestBadValuesFallBackToTheirDefaults(t *testing.T) {
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":       "127.0.0.1:9001",
		"STREAMLENS_ADDR":              "10.0.0.5:9126",
		"STREAMLENS_TTFB_THRESHOLD_MS": "fast",
		"STREAMLENS_TELEMETRY":         "maybe",
		"STREAMLENS_OTLP_ENDPOINT":     "collector:1234",
		"STREAMLENS_TELEMETRY_ADDR":    "nowhere",
		"STREAMLENS_SCHED_IDLE":        "low",
	}
	c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
	if err == nil || c.Strict {
		t.Fatalf("err %v strict %v", err, c.Strict)
	}
	if c.Addr.String() != protocol.DefaultAddr || c.TTFBThreshold != 100*time.Millisecond || !c.Telemetry ||
		c.OTLP.URL != defaultOTLPEndpoint+"/v1/traces" || c.TelemetryAddr != "sandbox.localdomain:4243" || !c.SchedIdle {
		t.Errorf("not the defaults: %+v", c)
	}
	for _, ns := range []string{"AWS/Lambda", "Streamélens", ":x", ":", "tab\there", strings.Repeat("n", 256)} {
		env := map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "STREAMLENS_NAMESPACE": ns}
		c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
		if err == nil || !strings.Contains(err.Error(), "STREAMLENS_NAMESPACE") || c.Namespace != "Streamlens" {
			t.Errorf("namespace %q: %v, kept %q", ns, err, c.Namespace)
		}
	}
	env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "AWS_LAMBDA_FUNCTION_NAME": "pricing", "STREAMLENS_FUNCTION_NAME": "café"}
	if c, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err == nil || !strings.Contains(err.Error(), "STREAMLENS_FUNCTION_NAME") || c.FunctionName != "pricing" {
		t.Errorf("function name café: %v, kept %q", err, c.FunctionName)
	}
	env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "STREAMLENS_NAMESPACE": "Pricing/Streams #1: eu-west", "STREAMLENS_STRICT": "on"}
	if c, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err != nil || c.Namespace != env["STREAMLENS_NAMESPACE"] || !c.Strict {
		t.Errorf("a valid namespace refused: %v %+v", err, c)
	}
}

func otlpOf(t *testing.T, env map[string]string) (OTLP, error) {
	t.Helper()
	env["AWS_LAMBDA_RUNTIME_API"] = "x:1"
	env["AWS_LAMBDA_FUNCTION_NAME"] = "pricing"
	c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
	return c.OTLP, err
}

// The standard OTEL_* variables are honoured as the specification defines
// them; a STREAMLENS_* variable wins where both are set.
func TestOTelVariables(t *testing.T) {
	o, err := otlpOf(t, map[string]string{})
	if err != nil || !o.On || o.URL != defaultOTLPEndpoint+"/v1/traces" || o.Gzip || o.Timeout != 25*time.Millisecond ||
		o.ServiceName != "pricing" || o.Sampler != (Sampler{ParentBased: true, Ratio: 0.1, KeepFailed: true}) {
		t.Errorf("defaults: %+v %v", o, err)
	}
	o, err = otlpOf(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    "https://otlp.example.com/base/",
		"OTEL_EXPORTER_OTLP_HEADERS":     "x-api-key=abc%3D%3D, x-team = pricing",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
		"OTEL_EXPORTER_OTLP_TIMEOUT":     "500",
		"OTEL_EXPORTER_OTLP_CERTIFICATE": "/opt/ca.pem",
		"OTEL_SERVICE_NAME":              "pricing-svc",
		"OTEL_RESOURCE_ATTRIBUTES":       "service.name=ignored,deployment.environment.name=prod",
		"OTEL_TRACES_SAMPLER":            "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":        "0.5",
	})
	if err != nil || o.URL != "https://otlp.example.com/base/v1/traces" || !o.Gzip || o.Timeout != 500*time.Millisecond ||
		o.CACert != "/opt/ca.pem" || o.ServiceName != "pricing-svc" || len(o.Headers) != 2 ||
		o.Headers[0] != (KV{"x-api-key", "abc=="}) || o.Headers[1] != (KV{"x-team", "pricing"}) ||
		len(o.Resource) != 2 || o.Sampler != (Sampler{Ratio: 0.5, KeepFailed: true}) {
		t.Errorf("generic variables: %+v %v", o, err)
	}
	// Signal-specific variables win over generic ones, and the traces
	// endpoint is used as it is; STREAMLENS_* wins over both.
	o, err = otlpOf(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":           "http://generic",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":    "http://traces/custom/path",
		"OTEL_EXPORTER_OTLP_COMPRESSION":        "gzip",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
		"OTEL_EXPORTER_OTLP_TIMEOUT":            "500",
		"STREAMLENS_OTLP_TIMEOUT_MS":            "40",
		"OTEL_TRACES_SAMPLER":                   "parentbased_always_off",
		"STREAMLENS_TRACES_SAMPLE_RATIO":        "0.2",
		"STREAMLENS_TRACES_KEEP_FAILED":         "off",
	})
	if err != nil || o.URL != "http://traces/custom/path" || o.Gzip || o.Timeout != 40*time.Millisecond ||
		o.Sampler != (Sampler{ParentBased: true, Ratio: 0.2}) {
		t.Errorf("precedence: %+v %v", o, err)
	}
	o, _ = otlpOf(t, map[string]string{"STREAMLENS_OTLP_ENDPOINT": "http://mine", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://theirs/v1/traces"})
	if o.URL != "http://mine/v1/traces" {
		t.Errorf("STREAMLENS_OTLP_ENDPOINT does not win: %s", o.URL)
	}
	for env, on := range map[[2]string]bool{
		{"OTEL_SDK_DISABLED", "true"}: false, {"OTEL_SDK_DISABLED", "false"}: true, {"OTEL_TRACES_EXPORTER", "none"}: false,
	} {
		o, _ := otlpOf(t, map[string]string{env[0]: env[1]})
		if o.On != on {
			t.Errorf("%s=%s: on %v", env[0], env[1], o.On)
		}
		o, _ = otlpOf(t, map[string]string{env[0]: env[1], "STREAMLENS_OTLP": "on"})
		if !o.On {
			t.Errorf("%s=%s with STREAMLENS_OTLP=on: off", env[0], env[1])
		}
	}
}

// Bad OTEL_* values fall back and are reported like STREAMLENS_* ones; a
// header list, which may hold a credential, is never echoed.
func TestBadOTelValuesFallBack(t *testing.T) {
	o, err := otlpOf(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":    "collector",
		"OTEL_EXPORTER_OTLP_HEADERS":     "authorization=Bearer%20s3cret,broken",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
		"OTEL_EXPORTER_OTLP_PROTOCOL":    "http/json", // grpc is supported since issue #28
		"OTEL_TRACES_SAMPLER":            "xray",
		"OTEL_EXPORTER_OTLP_CLIENT_KEY":  "/opt/key.pem",
	})
	// The bad header entry is dropped, not the good one with it.
	if err == nil || o.URL != defaultOTLPEndpoint+"/v1/traces" || len(o.Headers) != 1 || o.Headers[0] != (KV{"authorization", "Bearer s3cret"}) ||
		o.Gzip || o.ClientKey != "" || o.Protocol != ProtocolHTTP ||
		o.Sampler != (Sampler{ParentBased: true, Ratio: 0.1, KeepFailed: true}) {
		t.Fatalf("%+v %v", o, err)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "CLIENT_CERTIFICATE"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("%s not named in %v", v, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the header value is echoed: %v", err)
	}
	if _, err := otlpOf(t, map[string]string{"OTEL_TRACES_SAMPLER_ARG": "2", "OTEL_TRACES_SAMPLER": "traceidratio"}); err == nil {
		t.Error("ratio 2 accepted")
	}
	if o, err := otlpOf(t, map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "bad header=x"}); err == nil || o.Headers != nil {
		t.Errorf("an invalid header name accepted: %v %v", o.Headers, err)
	}
}

// FuzzParseList: the key=value list reader (OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_RESOURCE_ATTRIBUTES) is total, and what it accepts has non-empty,
// trimmed keys; each non-blank comma-separated part is one item or one
// error.
func FuzzParseList(f *testing.F) {
	f.Add("a=b")
	f.Fuzz(func(t *testing.T, s string) {
		kvs, errs := parseList(s)
		items := 0
		for _, it := range strings.Split(s, ",") {
			if strings.TrimSpace(it) != "" {
				items++
			}
		}
		// Every non-blank part is an item or an error of its own.
		if len(kvs)+len(errs) != items {
			t.Errorf("%q: %d items and %d errors, %d parts", s, len(kvs), len(errs), items)
		}
		for _, kv := range kvs {
			if kv.Key == "" || kv.Key != strings.TrimSpace(kv.Key) || strings.Contains(kv.Key, "=") {
				t.Errorf("%q: key %q", s, kv.Key)
			}
		}
	})
}

func TestInstrumentAllowlist(t *testing.T) {
	env := map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "STREAMLENS_INSTRUMENT_ALLOW": "[A-Z]{1,5}"}
	c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
	if err != nil || c.InstrumentAllow == nil || !c.InstrumentAllow.MatchString("SPY") || c.InstrumentAllow.MatchString("SPYSPY") {
		t.Errorf("%v %v", c.InstrumentAllow, err)
	}
	env["STREAMLENS_INSTRUMENT_ALLOW"] = "[A-Z"
	if c, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err == nil || c.InstrumentAllow != nil {
		t.Errorf("a bad pattern: %v %v", c.InstrumentAllow, err)
	}
}

func TestVersionDimensionIsOptIn(t *testing.T) {
	env := map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "AWS_LAMBDA_FUNCTION_VERSION": "7"}
	if c, _ := FromEnv(func(k string) string { return env[k] }, "streamlens"); c.Version != "" {
		t.Errorf("on by default: %q", c.Version)
	}
	env["STREAMLENS_VERSION_DIMENSION"] = "on"
	if c, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err != nil || c.Version != "7" {
		t.Errorf("%q %v", c.Version, err)
	}
}

// Values are trimmed before they are read: "on " is on, " 250" is 250, and
// spaces alone are unset.
func TestValuesAreTrimmed(t *testing.T) {
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":       "x:1",
		"STREAMLENS_STRICT":            "on ",
		"STREAMLENS_TTFB_THRESHOLD_MS": " 250\t",
		"STREAMLENS_ADDR":              " 127.0.0.1:9126 ",
		"STREAMLENS_NAMESPACE":         " Pricing ",
		"STREAMLENS_TELEMETRY":         "   ",
		"OTEL_SDK_DISABLED":            " TRUE ",
		"OTEL_EXPORTER_OTLP_TIMEOUT":   " 40 ",
	}
	c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
	if err != nil || !c.Strict || c.TTFBThreshold != 250*time.Millisecond || c.Addr.String() != "127.0.0.1:9126" ||
		c.Namespace != "Pricing" || !c.Telemetry || c.OTLP.On || c.OTLP.Timeout != 40*time.Millisecond {
		t.Errorf("%+v %v", c, err)
	}
}

// joined returns the errors errors.Join put together.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// One bad header entry is dropped and reported on its own; the others are
// sent, and no value is echoed.
func TestBadHeaderEntryDropsOnlyItself(t *testing.T) {
	o, err := otlpOf(t, map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=k3y,Bearer t0ken,x-bad name=v4lue,x-team=pricing,x-pct=%zzs3cret,x-ctl=a%0Ab",
	})
	if len(o.Headers) != 2 || o.Headers[0] != (KV{"x-api-key", "k3y"}) || o.Headers[1] != (KV{"x-team", "pricing"}) {
		t.Errorf("headers %v", o.Headers)
	}
	errs := joined(err)
	if len(errs) != 4 {
		t.Errorf("%d errors, want one per bad entry (4): %v", len(errs), err)
	}
	for _, e := range errs {
		if !strings.Contains(e.Error(), "OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
			t.Errorf("%v does not name the variable", e)
		}
	}
	for _, secret := range []string{"k3y", "t0ken", "v4lue", "s3cret", "Bearer"} {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%q echoed: %v", secret, err)
		}
	}
}

// Half a client certificate pair, either half, is a configuration error
// and no client certificate: the spans go without one.
func TestHalfAClientCertificatePair(t *testing.T) {
	for _, env := range []map[string]string{
		{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/opt/cert.pem"},
		{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/opt/key.pem"},
		{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/opt/cert.pem"},
		{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/opt/key.pem"},
	} {
		var set string
		for k := range env {
			set = k
		}
		env["OTEL_EXPORTER_OTLP_CERTIFICATE"] = "/opt/ca.pem"
		o, err := otlpOf(t, env)
		if errs := joined(err); len(errs) != 1 || !strings.Contains(errs[0].Error(), set+"=") {
			t.Errorf("%s alone: %v", set, err)
		}
		if o.ClientCert != "" || o.ClientKey != "" || !o.On || o.CACert != "/opt/ca.pem" {
			t.Errorf("%s alone: %+v", set, o)
		}
	}
	o, err := otlpOf(t, map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/c", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/k"})
	if err != nil || o.ClientCert != "/c" || o.ClientKey != "/k" {
		t.Errorf("a whole pair: %+v %v", o, err)
	}
}

// OTEL_SDK_DISABLED is the specification's boolean: true or false in any
// case; anything else is reported and read as false.
func TestOTelSDKDisabledIsTheSpecificationsBoolean(t *testing.T) {
	for v, want := range map[string]struct{ on, err bool }{
		"true": {false, false}, "TRUE": {false, false}, "True": {false, false},
		"false": {true, false}, "FALSE": {true, false}, "": {true, false},
		"1": {true, true}, "yes": {true, true}, "on": {true, true}, "0": {true, true},
	} {
		o, err := otlpOf(t, map[string]string{"OTEL_SDK_DISABLED": v})
		if o.On != want.on || (err != nil) != want.err || (err != nil && !strings.Contains(err.Error(), "OTEL_SDK_DISABLED")) {
			t.Errorf("OTEL_SDK_DISABLED=%q: on %v, err %v", v, o.On, err)
		}
	}
}

// A credential in an endpoint is never printed: userinfo and query values
// are redacted in every message that shows the URL.
func TestEndpointCredentialsAreRedacted(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@collector:4318/v1/traces?api_key=s3cret&x=1": "https://REDACTED@collector:4318/v1/traces?api_key=REDACTED&x=REDACTED",
		"https://collector/v1/traces?s3cret":                              "https://collector/v1/traces?REDACTED",
		"http://collector:4318":                                           "http://collector:4318",
		"user:s3cret@collector:4318":                                      "REDACTED@collector:4318",
		"http://u:s3cret@collector/%zz":                                   "(a URL that does not parse, not shown)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for _, name := range []string{"STREAMLENS_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		_, err := otlpOf(t, map[string]string{name: "collector:s3cret@host:4318/?token=s3cret"})
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzRedactURL: whatever the endpoint, what RedactURL returns carries no
// userinfo but REDACTED, and no query value but REDACTED.
func FuzzRedactURL(f *testing.F) {
	f.Add("https://user:pass@collector:4318/v1/traces?api_key=k&x")
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactURL(s)
		p, err := url.Parse(out)
		if err != nil {
			return // nothing of it can be read back as userinfo or query
		}
		if p.User != nil && p.User.String() != "REDACTED" {
			t.Errorf("%q -> %q: userinfo %q", s, out, p.User)
		}
		if i := strings.LastIndexByte(p.Opaque, '@'); i >= 0 && p.Opaque[:i] != "REDACTED" {
			t.Errorf("%q -> %q: opaque userinfo", s, out)
		}
		if p.RawQuery != "" {
			for _, part := range strings.Split(p.RawQuery, "&") {
				if _, v, ok := strings.Cut(part, "="); (ok && v != "REDACTED") || (!ok && part != "REDACTED") {
					t.Errorf("%q -> %q: query part %q", s, out, part)
				}
			}
		}
	})
}

// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL=grpc selects OTLP/gRPC: its default
// endpoint is :4317, and a base endpoint is used as it is (the gRPC method
// is the path), where http/protobuf appends v1/traces.
func TestOTLPProtocol(t *testing.T) {
	for _, c := range []struct {
		env       map[string]string
		protocol  string
		url       string
		wantError bool
	}{
		{map[string]string{}, ProtocolHTTP, "http://localhost:4318/v1/traces", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ProtocolHTTP, "http://localhost:4318/v1/traces", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ProtocolGRPC, "http://localhost:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": " GRPC "}, ProtocolGRPC, "http://localhost:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, ProtocolGRPC, "http://localhost:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, ProtocolHTTP, "http://localhost:4318/v1/traces", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com:443"}, ProtocolGRPC, "https://otlp.example.com:443", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "STREAMLENS_OTLP_ENDPOINT": "http://collector:4317/"}, ProtocolGRPC, "http://collector:4317/", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, ProtocolGRPC, "http://collector:4317", false},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, ProtocolHTTP, "http://localhost:4318/v1/traces", true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ProtocolHTTP, "http://c:4318/v1/traces", true},
	} {
		o, err := otlpOf(t, c.env)
		if o.Protocol != c.protocol || o.URL != c.url || (err != nil) != c.wantError {
			t.Errorf("%v: %s %s %v", c.env, o.Protocol, o.URL, err)
		}
		if err != nil && !strings.Contains(err.Error(), "PROTOCOL") {
			t.Errorf("%v: the variable is not named: %v", c.env, err)
		}
	}
}

// STREAMLENS_RING_DIR: an absolute, clean path; off; anything else falls
// back to $TMPDIR/.streamlens and is reported.
func TestRingDir(t *testing.T) {
	for v, want := range map[string]string{
		"":               protocol.DefaultRingDir(),
		"off":            "",
		"/tmp/sl-rings":  "/tmp/sl-rings",
		"rings":          protocol.DefaultRingDir(),
		"/tmp/../etc/sl": protocol.DefaultRingDir(),
		"/":              protocol.DefaultRingDir(),
	} {
		env := map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "STREAMLENS_RING_DIR": v}
		c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
		bad := want == protocol.DefaultRingDir() && v != ""
		if c.RingDir != want || (err != nil) != bad || bad && !strings.Contains(err.Error(), "STREAMLENS_RING_DIR") {
			t.Errorf("%q: ring dir %q, err %v; want %q", v, c.RingDir, err, want)
		}
	}
}

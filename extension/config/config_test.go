package config

import (
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
	env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1", "STREAMLENS_ADDR": "10.0.0.5:8126"}
	if _, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback address: %v", err)
	}
	env["STREAMLENS_ALLOW_NON_LOOPBACK"] = "on"
	if _, err := FromEnv(func(k string) string { return env[k] }, "streamlens"); err != nil {
		t.Errorf("explicit override refused: %v", err)
	}
	c, err := FromEnv(func(k string) string { return map[string]string{"AWS_LAMBDA_RUNTIME_API": "x:1"}[k] }, "/opt/extensions/streamlens")
	if err != nil || c.Name != "streamlens" || c.Addr.String() != protocol.DefaultAddr || c.TTFBThreshold != 100*time.Millisecond || !c.Telemetry {
		t.Errorf("defaults %+v %v", c, err)
	}
}

// A bad value falls back to its default (the caller reports it and goes
// on); only STREAMLENS_STRICT=on makes the caller fail instead.
func TestBadValuesFallBackToTheirDefaults(t *testing.T) {
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":       "127.0.0.1:9001",
		"STREAMLENS_ADDR":              "10.0.0.5:8126",
		"STREAMLENS_TTFB_THRESHOLD_MS": "fast",
		"STREAMLENS_TELEMETRY":         "maybe",
		"STREAMLENS_OTLP_ENDPOINT":     "collector:1234",
		"STREAMLENS_TELEMETRY_ADDR":    "nowhere",
	}
	c, err := FromEnv(func(k string) string { return env[k] }, "streamlens")
	if err == nil || c.Strict {
		t.Fatalf("err %v strict %v", err, c.Strict)
	}
	if c.Addr.String() != protocol.DefaultAddr || c.TTFBThreshold != 100*time.Millisecond || !c.Telemetry ||
		c.OTLPEndpoint != defaultOTLPEndpoint || c.TelemetryAddr != "sandbox.localdomain:4243" {
		t.Errorf("not the defaults: %+v", c)
	}
	for _, ns := range []string{"AWS/Lambda", "Streamélens", "   ", "tab\there", strings.Repeat("n", 256)} {
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

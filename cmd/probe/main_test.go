package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// pricing serves n quotes and the end marker, or with cut the quotes only.
func pricing(n int, cut bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		for i := 0; i < n; i++ {
			line := fmt.Sprintf(`{"instrument":"I%d","bid":1}`+"\n", i)
			h.Write([]byte(line))
			_, _ = w.Write([]byte(line))
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Millisecond)
		}
		if !cut {
			fmt.Fprintf(w, `{"type":"BUNDLE_COMPLETE","sha256":"%s"}`+"\n", hex.EncodeToString(h.Sum(nil)))
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The command as a user runs it: the URL as its argument, -emf - puts one
// EMF line per request on stdout under the Probe dimension, the live view
// draws on stderr (forced on: the test's stderr is no terminal), the exit
// code says whether a response was truncated.
func TestCommand(t *testing.T) {
	good := httptest.NewServer(pricing(3, false))
	defer good.Close()
	cut := httptest.NewServer(pricing(3, true))
	defer cut.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-emf", "-", "-live", "on", "-json", "-n", "2", good.URL}, env(map[string]string{"STREAMLENS_PROBE_NAME": "canary-eu"}), &out, &errOut, false)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 { // an EMF line and a JSON result per request
		t.Fatalf("stdout: %q", out.String())
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &doc); err != nil || doc["Probe"] != "canary-eu" || doc["CallerTruncated"] != 0.0 || doc["_aws"] == nil {
		t.Errorf("EMF line %v: %s", err, lines[0])
	}
	if !strings.Contains(errOut.String(), "canary-eu") || !strings.Contains(errOut.String(), "4 chunks") || !strings.Contains(errOut.String(), "\x1b[A") {
		t.Errorf("live view on stderr: %q", errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{cut.URL}, env(nil), &out, &errOut, false); code != 1 || !strings.Contains(out.String(), "TRUNCATED: no end marker") {
		t.Errorf("a truncated response: exit %d, %q", code, out.String())
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr is not a terminal and -live is auto: no view, got %q", errOut.String())
	}
}

// A request that fails is still reported, as the worst truncation: its EMF
// line and its span go out before the command exits 2.
func TestFailedRequestIsReported(t *testing.T) {
	var mu sync.Mutex
	var spans int
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		spans++
		mu.Unlock()
	}))
	defer col.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-emf", "-", url}, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.URL}), &out, &errOut, false)
	var doc map[string]any
	_ = json.Unmarshal(out.Bytes(), &doc)
	if code != 2 || doc["CallerTruncated"] != 1.0 || doc["ProbeVerdict"] != "truncated" {
		t.Errorf("exit %d, EMF %q, stderr %q", code, out.String(), errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if spans != 1 {
		t.Errorf("%d spans exported for the failed request", spans)
	}
}

// Bad input is said, and nothing is sent.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-live", "sometimes", "http://x.example/"}, {"-H", "no colon", "http://x.example/"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, env(nil), &out, &errOut, false); code != 2 || errOut.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

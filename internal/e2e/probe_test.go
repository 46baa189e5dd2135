package e2e

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamlens/streamlens/internal/probe"
)

// The caller's view of the real function through the sandbox's function
// URL: every quote and the end marker with its hash checked, a truncation
// the caller sees as one; and the probe's traceparent is the trace the
// function's stream joined (its document's TraceParent).
func TestProbeSeesWhatTheCallerGets(t *testing.T) {
	e := start(t, nil)
	srv := httptest.NewServer(e.sb.URLHandler())
	defer srv.Close()
	r, err := probe.Run(context.Background(), probe.Config{URL: srv.URL + "/?instruments=10&delay_ms=2"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || r.Status != 200 || len(r.Chunks) != 11 || !r.EndMarker || r.SHA256OK == nil || !*r.SHA256OK || r.FirstUseful < r.TTFB {
		t.Errorf("complete stream: %+v", r)
	}
	cut, err := probe.Run(context.Background(), probe.Config{URL: srv.URL + "/?instruments=10&fail_after=4"})
	if err != nil {
		t.Fatal(err)
	}
	if !cut.Truncated || cut.EndMarker {
		t.Errorf("a stream cut after 4 quotes: %+v", cut)
	}
	e.sb.Close()
	traceID := strings.Split(r.TraceParent, "-")[1]
	joined := false
	for _, d := range streamDocs(e.log.docs(t)) {
		joined = joined || strings.Contains(d.str("TraceParent"), traceID)
	}
	if !joined {
		t.Errorf("no stream joined the probe's trace %s", traceID)
	}
	t.Logf("figure: probe through the sandbox's function URL: ttfb %v, first useful %v, total %v, %d chunks", r.TTFB, r.FirstUseful, r.Total, len(r.Chunks))
}

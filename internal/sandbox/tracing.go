//go:build unix

package sandbox

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/streamlens/streamlens/internal/xray"
)

// traceHeader is the X-Ray header Lambda gives the runtime (Lambda-Runtime-Trace-Id,
// hence _X_AMZN_TRACE_ID) and the extensions (INVOKE tracing.value).
//
// In PassThrough mode, Lambda's default, Lambda samples nothing itself: a
// caller's header is passed on with its own decision, and without one the
// invocation gets a fresh trace id with Sampled=0 — which is what a function
// URL call usually carries. In Active mode Lambda samples (modelled as always);
// a caller's explicit Sampled=0 is respected.
func traceHeader(mode, caller string, now time.Time) string {
	x := xray.Parse(caller)
	root, parent, sampled := x.Root, x.Parent, x.Sampled
	if root == "" {
		root, parent, sampled = newTraceRoot(now), "", ""
	}
	if sampled == "" || sampled == "?" {
		sampled = "0"
		if mode == TracingActive {
			sampled = "1"
		}
	}
	if parent == "" {
		parent = randomHex(8)
	}
	return "Root=" + root + ";Parent=" + parent + ";Sampled=" + sampled
}

// newTraceRoot makes an X-Ray trace id: 1-<8 hex epoch seconds>-<24 hex>.
func newTraceRoot(t time.Time) string {
	return fmt.Sprintf("1-%08x-%s", t.Unix(), randomHex(12))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

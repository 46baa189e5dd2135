package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pricing serves n quote lines, 5 ms apart, then BUNDLE_COMPLETE with the
// SHA-256 of the lines (or a wrong one), or an error trailer after half.
func pricing(n int, badHash, fail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if fail {
			w.Header().Set("Trailer", trailerErrorType+", "+trailerErrorBody)
		}
		w.Header().Set("X-Seen-Traceparent", r.Header.Get("traceparent"))
		h := sha256.New()
		for i := 0; i < n; i++ {
			if fail && i == n/2 {
				w.Header().Set(trailerErrorType, "Runtime.HandlerError")
				w.Header().Set(trailerErrorBody, "feed lost")
				return
			}
			line := fmt.Sprintf(`{"quoteId":"q","instrument":"I%d","bid":1,"ask":2}`+"\n", i)
			h.Write([]byte(line))
			_, _ = w.Write([]byte(line))
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if badHash {
			sum = strings.Repeat("0", 64)
		}
		fmt.Fprintf(w, `{"type":"BUNDLE_COMPLETE","sha256":"%s"}`+"\n", sum)
	}
}

func TestPricingStream(t *testing.T) {
	for name, c := range map[string]struct {
		h         http.HandlerFunc
		truncated bool
		reason    string
	}{
		"complete":      {pricing(6, false, false), false, ""},
		"wrong hash":    {pricing(6, true, false), true, "sha256 mismatch"},
		"error trailer": {pricing(6, false, true), true, "error Runtime.HandlerError"},
	} {
		srv := httptest.NewServer(c.h)
		r, err := Run(context.Background(), Config{URL: srv.URL})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Truncated != c.truncated || r.Reason != c.reason {
			t.Errorf("%s: truncated %v %q, want %v %q", name, r.Truncated, r.Reason, c.truncated, c.reason)
		}
		if name == "complete" {
			if len(r.Chunks) != 7 || !r.EndMarker || r.SHA256OK == nil || !*r.SHA256OK || r.TTFB <= 0 || r.FirstUseful < r.TTFB ||
				r.Total < r.FirstUseful || r.Connect <= 0 || !r.Chunks[0].Useful || r.Chunks[6].Useful {
				t.Errorf("complete: %+v", r)
			}
			// The chunks arrived as they were sent, 5 ms apart: their
			// times only grow.
			for i := 1; i < len(r.Chunks); i++ {
				if r.Chunks[i].At < r.Chunks[i-1].At {
					t.Errorf("chunk %d before chunk %d", i+1, i)
				}
			}
		}
		if name == "error trailer" && r.ErrorBody != "feed lost" {
			t.Errorf("error body %q", r.ErrorBody)
		}
	}
}

// A traceparent goes with every request: the one given, else a new sampled
// one, so that the function's spans join the caller's trace.
func TestTraceParentIsSent(t *testing.T) {
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get("traceparent") }))
	defer srv.Close()
	r, err := Run(context.Background(), Config{URL: srv.URL, Envelope: Raw})
	if err != nil {
		t.Fatal(err)
	}
	if seen == "" || seen != r.TraceParent || len(seen) != 55 || !strings.HasSuffix(seen, "-01") {
		t.Errorf("sent %q, result says %q", seen, r.TraceParent)
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := Run(context.Background(), Config{URL: srv.URL, Envelope: Raw, TraceParent: tp}); err != nil || seen != tp {
		t.Errorf("given traceparent: sent %q", seen)
	}
}

// The first probe of a process is warmed up on a server of its own, once,
// and the probed URL sees only the probes' own requests.
func TestWarmUpIsOnceAndNeverAtTheTarget(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer srv.Close()
	for range 3 {
		if _, err := Run(context.Background(), Config{URL: srv.URL, Envelope: Raw}); err != nil {
			t.Fatal(err)
		}
	}
	if n := served.Load(); n != 3 {
		t.Errorf("the probed URL got %d requests for 3 probes", n)
	}
	if n := warmed.Load(); n != 1 {
		t.Errorf("%d warm-up requests in this process, want 1", n)
	}
}

package extapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestDecodeEvent(t *testing.T) {
	ev, err := DecodeEvent([]byte(`{"eventType":"INVOKE","deadlineMs":1732300003000,"requestId":"r1","invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}}`))
	if err != nil || ev.RequestID != "r1" || ev.DeadlineMs != 1732300003000 || ev.Tracing.Value == "" {
		t.Errorf("%+v %v", ev, err)
	}
	ev, err = DecodeEvent([]byte(`{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1}`))
	if err != nil || ev.ShutdownReason != "spindown" {
		t.Errorf("%+v %v", ev, err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"eventType":"INVOKE"}`, `{"eventType":"RESTART"}`, `{"eventType":7}`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"eventType":"INVOKE","deadlineMs":1,"requestId":"r"}`, `{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":2}`, `{`, `{"eventType":"INVOKE","requestId":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err == nil && ev.EventType != Invoke && ev.EventType != Shutdown {
			t.Fatalf("accepted event type %q", ev.EventType)
		}
		if err == nil && ev.EventType == Invoke && ev.RequestID == "" {
			t.Fatal("accepted INVOKE without request id")
		}
	})
}

// api is a fake Extensions API that answers event/next with the events of
// answers in turn, counting the connections it was asked on.
type api struct {
	srv   *httptest.Server
	conns atomic.Int64
	asks  atomic.Int64
}

func newAPI(t *testing.T, next http.HandlerFunc) *api {
	t.Helper()
	a := &api{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderIdentifier, "ext-1")
	})
	mux.HandleFunc("GET /2020-01-01/extension/event/next", func(w http.ResponseWriter, r *http.Request) {
		a.asks.Add(1)
		if got := r.Header.Get(HeaderIdentifier); got != "ext-1" {
			http.Error(w, "identifier "+got, http.StatusForbidden)
			return
		}
		next(w, r)
	})
	a.srv = httptest.NewUnstartedServer(mux)
	a.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			a.conns.Add(1)
		}
	}
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) client(t *testing.T) *Client {
	t.Helper()
	c := New(strings.TrimPrefix(a.srv.URL, "http://"))
	t.Cleanup(c.Close)
	if err := c.Register(t.Context(), "ext"); err != nil {
		t.Fatal(err)
	}
	return c
}

func invokeBody(id string) string {
	return `{"eventType":"INVOKE","deadlineMs":1,"requestId":"` + id + `"}`
}

// Next asks on one kept-alive connection, whatever way the answer is framed
// (length or chunks).
func TestNextKeepsOneConnection(t *testing.T) {
	var n atomic.Int64
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		id := strconv.FormatInt(n.Add(1), 10)
		if n.Load()%2 == 0 {
			w.(http.Flusher).Flush() // chunked
		}
		io.WriteString(w, invokeBody(id))
	})
	c := a.client(t)
	for i := 1; i <= 4; i++ {
		ev, err := c.Next(t.Context())
		if err != nil || ev.RequestID != strconv.Itoa(i) {
			t.Fatalf("next %d: %+v %v", i, ev, err)
		}
	}
	// One for register (net/http), one for every next.
	if got := a.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

// A kept-alive connection the API closed while idle is asked on once more,
// on a new connection; an API that closes every connection unanswered is an
// error, not a loop.
func TestNextRedialsAClosedConnection(t *testing.T) {
	var n atomic.Int64
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if i == 2 || i >= 4 {
			// Hijack and close without an answer.
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		io.WriteString(w, invokeBody(strconv.FormatInt(i, 10)))
	})
	c := a.client(t)
	if ev, err := c.Next(t.Context()); err != nil || ev.RequestID != "1" {
		t.Fatalf("first: %+v %v", ev, err)
	}
	if ev, err := c.Next(t.Context()); err != nil || ev.RequestID != "3" {
		t.Fatalf("after a closed connection: %+v %v", ev, err)
	}
	if _, err := c.Next(t.Context()); err == nil {
		t.Fatal("no error from an API that never answers")
	}
	if got := a.asks.Load(); got != 5 {
		t.Errorf("%d asks, want 5 (1, 2 closed + 3, 4 closed + 5 closed)", got)
	}
}

// Cancelling the context ends a Next that is waiting, with the context's
// error; the next Next dials anew.
func TestNextCancelled(t *testing.T) {
	release := make(chan struct{})
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			io.WriteString(w, invokeBody("late"))
		case <-r.Context().Done():
		}
	})
	c := a.client(t)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := c.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	close(release)
	if ev, err := c.Next(t.Context()); err != nil || ev.RequestID != "late" {
		t.Fatalf("after cancel: %+v %v", ev, err)
	}
}

// An answer outside 2xx is an *APIError with its errorType; one over 1 MiB
// is refused.
func TestNextErrors(t *testing.T) {
	var n atomic.Int64
	a := newAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"errorType":"Extension.InvalidExtensionId","errorMessage":"no"}`)
			return
		}
		io.WriteString(w, `{"eventType":"INVOKE","requestId":"r","x":"`+strings.Repeat("a", 2<<20)+`"}`)
	})
	c := a.client(t)
	_, err := c.Next(t.Context())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Type != "Extension.InvalidExtensionId" {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Next(t.Context()); err == nil || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("oversized answer: %v", err)
	}
}

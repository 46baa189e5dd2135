package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type batches struct {
	mu  sync.Mutex
	got [][]json.RawMessage
	raw []int
}

func receiver(t *testing.T) (*batches, string) {
	b := &batches{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var evs []json.RawMessage
		if err := json.Unmarshal(body, &evs); err != nil {
			t.Errorf("batch is not a JSON array: %v", err)
		}
		b.mu.Lock()
		b.got = append(b.got, evs)
		b.raw = append(b.raw, len(body))
		b.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

func sub(uri string, items, bytes, ms int) subscription {
	var s subscription
	s.SchemaVersion = "2022-12-13"
	s.Destination.Protocol, s.Destination.URI = "HTTP", uri
	s.Types = []string{"platform"}
	s.Buffering.MaxItems, s.Buffering.MaxBytes, s.Buffering.TimeoutMs = &items, &bytes, &ms
	return s
}

func TestSubscriptionValidation(t *testing.T) {
	for name, s := range map[string]subscription{
		"timeout below 25ms":   sub("http://sandbox.localdomain:1", 1000, 262144, 24),
		"maxItems below 1000":  sub("http://sandbox.localdomain:1", 999, 262144, 25),
		"maxBytes below 256KB": sub("http://sandbox.localdomain:1", 1000, 1000, 25),
		"https destination":    sub("https://x:1", 1000, 262144, 25),
		"loopback destination": sub("http://127.0.0.1:1", 1000, 262144, 25),
		"no port":              sub("http://sandbox.localdomain", 1000, 262144, 25),
	} {
		if _, _, _, msg := s.validate(false); msg == "" {
			t.Errorf("%s accepted", name)
		}
	}
	if _, _, d, msg := sub("http://sandbox.localdomain:1", 1000, 262144, 25).validate(false); msg != "" || d != 25*time.Millisecond {
		t.Errorf("valid subscription: %q %v", msg, d)
	}
}

// newTestSubscriber delivers to the receiver at uri through the name every
// destination must use, sandbox.localdomain, which the sandbox maps to loopback.
func newTestSubscriber(uri string, ms int) *subscriber {
	s := sub(strings.Replace(uri, "127.0.0.1", destinationHost, 1), 1000, 262144, ms)
	items, bytes, timeout, _ := s.validate(false)
	return newSubscriber(s, items, bytes, timeout)
}

func TestBatchingByTimeout(t *testing.T) {
	b, uri := receiver(t)
	ts := newTestSubscriber(uri, 25)
	defer ts.close()
	ts.add("function", event(time.Now(), "function", "not subscribed"))
	for i := 0; i < 3; i++ {
		ts.add("platform", event(time.Now(), "platform.start", map[string]string{"requestId": "r"}))
	}
	waitBatches(t, b, 1) // nothing forces it out but timeoutMs
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got[0]) != 3 {
		t.Errorf("batch of %d events, want the 3 platform events (function events not subscribed)", len(b.got[0]))
	}
}

func TestBatchingByItems(t *testing.T) {
	b, uri := receiver(t)
	ts := newTestSubscriber(uri, 30000) // the timeout never fires in this test
	for i := 0; i < 2500; i++ {
		ts.add("platform", event(time.Now(), "platform.start", map[string]int{"i": i}))
	}
	waitBatches(t, b, 2)
	ts.close() // flushes the rest
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) != 3 || len(b.got[0]) != 1000 || len(b.got[1]) != 1000 || len(b.got[2]) != 500 {
		t.Errorf("%d batches", len(b.got))
	}
}

func TestBatchingByBytes(t *testing.T) {
	b, uri := receiver(t)
	ts := newTestSubscriber(uri, 30000)
	big := strings.Repeat("x", 100_000)
	for i := 0; i < 5; i++ {
		ts.add("platform", event(time.Now(), "platform.report", map[string]string{"pad": big}))
	}
	ts.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i, evs := range b.got {
		n += len(evs)
		if b.raw[i] > 262144+4096 {
			t.Errorf("batch %d is %d bytes, over maxBytes", i, b.raw[i])
		}
	}
	if n != 5 || len(b.got) != 3 {
		t.Errorf("%d events in %d batches, want 5 in 3 (2+2+1)", n, len(b.got))
	}
}

func waitBatches(t *testing.T, b *batches, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		b.mu.Lock()
		got := len(b.got)
		b.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d batches", n)
}

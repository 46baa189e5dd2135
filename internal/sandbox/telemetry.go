//go:build unix

package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// subscriber delivers Telemetry API events to one extension's HTTP
// destination in batches, honouring the subscription's buffering: a batch goes
// out when maxItems or maxBytes is reached or timeoutMs has passed since its
// first event. Delivery runs on its own goroutine, so a frozen or slow
// extension never holds up the sandbox (the POST simply completes after thaw).
type subscriber struct {
	uri       string
	types     map[string]bool
	maxItems  int
	maxBytes  int
	timeout   time.Duration
	client    *http.Client
	mu        sync.Mutex
	pending   []json.RawMessage
	pendBytes int
	timer     *time.Timer
	out       chan []json.RawMessage
	done      chan struct{}
}

type subscription struct {
	SchemaVersion string `json:"schemaVersion"`
	Destination   struct {
		Protocol string `json:"protocol"`
		URI      string `json:"URI"`
	} `json:"destination"`
	Types     []string `json:"types"`
	Buffering struct {
		MaxItems  *int `json:"maxItems"`
		MaxBytes  *int `json:"maxBytes"`
		TimeoutMs *int `json:"timeoutMs"`
	} `json:"buffering"`
}

// destinationHost is the host a Telemetry API destination names: the
// execution environment's own name for itself. AWS's emulator accepts its
// short form, destinationShort, as well (and published extensions use it),
// so the sandbox does too: stricter than Lambda would refuse a working
// extension.
const (
	destinationHost  = "sandbox.localdomain"
	destinationShort = "sandbox"
)

// validate applies the documented rules and defaults of a subscription.
// managed: a Lambda Managed Instances environment, which accepts schema
// 2025-01-29 only.
func (s subscription) validate(managed bool) (maxItems, maxBytes int, timeout time.Duration, msg string) {
	switch {
	case managed && s.SchemaVersion != "2025-01-29":
		return 0, 0, 0, "unsupported schemaVersion " + s.SchemaVersion + ": Lambda Managed Instances accept 2025-01-29"
	case s.SchemaVersion != "2022-07-01" && s.SchemaVersion != "2022-12-13" && s.SchemaVersion != "2025-01-29":
		return 0, 0, 0, "unsupported schemaVersion " + s.SchemaVersion
	}
	u, err := url.Parse(s.Destination.URI)
	if s.Destination.Protocol != "HTTP" || err != nil || u.Scheme != "http" {
		return 0, 0, 0, "destination must be HTTP with an http:// URI"
	}
	if h := u.Hostname(); h != destinationHost && h != destinationShort || u.Port() == "" {
		return 0, 0, 0, "destination host must be " + destinationHost + " with a port, not " + strconv.Quote(u.Host)
	}
	if len(s.Types) == 0 {
		return 0, 0, 0, "types is empty"
	}
	for _, t := range s.Types {
		if t != "platform" && t != "function" && t != "extension" {
			return 0, 0, 0, "unknown type " + t
		}
	}
	maxItems, maxBytes, ms := 10000, 262144, 1000
	if p := s.Buffering.MaxItems; p != nil {
		maxItems = *p
	}
	if p := s.Buffering.MaxBytes; p != nil {
		maxBytes = *p
	}
	if p := s.Buffering.TimeoutMs; p != nil {
		ms = *p
	}
	if maxItems < 1000 || maxItems > 10000 || maxBytes < 262144 || maxBytes > 1048576 || ms < 25 || ms > 30000 {
		return 0, 0, 0, "buffering out of range (maxItems 1000..10000, maxBytes 262144..1048576, timeoutMs 25..30000)"
	}
	return maxItems, maxBytes, time.Duration(ms) * time.Millisecond, ""
}

func newSubscriber(s subscription, maxItems, maxBytes int, timeout time.Duration) *subscriber {
	sub := &subscriber{uri: s.Destination.URI, types: map[string]bool{}, maxItems: maxItems, maxBytes: maxBytes, timeout: timeout,
		out: make(chan []json.RawMessage, 1024), done: make(chan struct{})}
	for _, t := range s.Types {
		sub.types[t] = true
	}
	// sandbox.localdomain is the environment's own name inside Lambda; here
	// the sandbox resolves it to this machine's loopback itself, so it need
	// not be in /etc/hosts.
	sub.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && (host == destinationHost || host == destinationShort) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	go sub.deliver()
	return sub
}

func (s *subscriber) add(category string, ev json.RawMessage) {
	if !s.types[category] {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendBytes+len(ev) > s.maxBytes && len(s.pending) > 0 {
		s.flushLocked()
	}
	s.pending = append(s.pending, ev)
	s.pendBytes += len(ev)
	if len(s.pending) >= s.maxItems || s.pendBytes >= s.maxBytes {
		s.flushLocked()
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(s.timeout, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.flushLocked()
		})
	}
}

func (s *subscriber) flushLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.pending) == 0 {
		return
	}
	select {
	case s.out <- s.pending:
	default: // the destination is hopelessly behind: Lambda drops too
	}
	s.pending, s.pendBytes = nil, 0
}

func (s *subscriber) deliver() {
	defer close(s.done)
	for batch := range s.out {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, ev := range batch {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(ev)
		}
		buf.WriteByte(']')
		for attempt := 0; attempt < 3; attempt++ {
			resp, err := s.client.Post(s.uri, "application/json", bytes.NewReader(buf.Bytes()))
			if err == nil {
				resp.Body.Close()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// flush sends what is pending now, whatever the buffering says.
func (s *subscriber) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

// close flushes what is pending and stops delivery.
func (s *subscriber) close() {
	s.mu.Lock()
	s.flushLocked()
	close(s.out)
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
}

// event builds one Telemetry API event.
func event(t time.Time, typ string, record any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"time": t.UTC().Format("2006-01-02T15:04:05.000Z"), "type": typ, "record": record})
	return b
}

package otlpsink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/version"
)

// Config is what the exporter needs to know of the extension's
// configuration.
type Config struct {
	config.OTLP
	FunctionName  string
	MaxEvents     int           // chunk events per span
	TTFBThreshold time.Duration // a slower first useful byte is a failed stream
}

// Exporter builds spans and sends them. Export is called by one goroutine at
// a time; Decide by any.
type Exporter struct {
	cfg     Config
	getenv  func(string) string
	client  *http.Client
	headers http.Header
	buf     pb           // reused request body
	zbuf    bytes.Buffer // reused gzipped body
	zw      *gzip.Writer // made on first use: its state is ~1 MB

	mu       sync.Mutex // guards the resource cache
	arn      string
	resource []kvAttr
}

// Batch is how many streams one export carries at most: it bounds the
// request's size and how long one export holds the CPU (~1 ms for 16 spans
// of 50 events) while the function may still be sending events.
const Batch = 16

// New returns an exporter for cfg; getenv gives the resource's Lambda
// attributes. It fails for TLS files it cannot use.
func New(cfg Config, getenv func(string) string) (*Exporter, error) {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true}
	if cfg.CACert != "" || cfg.ClientCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE %s: no PEM certificate in it", cfg.CACert)
			}
		}
		if cfg.ClientCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
			if err != nil {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_KEY: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	h := http.Header{}
	for _, kv := range cfg.Headers {
		h.Add(kv.Key, kv.Value)
	}
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("User-Agent", "streamlens/"+version.Version)
	if cfg.Gzip {
		h.Set("Content-Encoding", "gzip")
	}
	// No timeout of its own: the caller's context is the budget (paused
	// over freezes).
	return &Exporter{cfg: cfg, getenv: getenv, client: &http.Client{Transport: tr}, headers: h}, nil
}

// Export sends the spans of up to Batch streams in one request, bounded by
// ctx, retrying the answers the specification calls retryable (429, 502,
// 503, 504) while ctx lasts. It returns how many spans
// the collector did not take (all of them on an error, the rejected ones of
// a partial success) and why.
func (e *Exporter) Export(ctx context.Context, results []state.Result) (lost int, err error) {
	results = results[:min(len(results), Batch)]
	if len(results) == 0 {
		return 0, nil
	}
	e.buf = e.appendRequest(e.buf[:0], e.resourceFor(results), results)
	body := []byte(e.buf)
	if e.cfg.Gzip {
		if body, err = e.gzip(body); err != nil {
			return len(results), err
		}
	}
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rejected, why, wait, err := e.post(ctx, body)
		if err == nil {
			if rejected > 0 {
				// Partial success: the request is not retried (the rest
				// were taken); the rejected spans are lost, and why is said.
				return min(rejected, len(results)), fmt.Errorf("otlp: the collector rejected %d of %d spans: %s", rejected, len(results), why)
			}
			return 0, nil
		}
		if wait < 0 || wait > maxRetryWait || attempt == maxAttempts {
			return len(results), err
		}
		wait = max(wait, backoff)
		backoff *= 2
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return len(results), fmt.Errorf("%w (no time left to retry)", err)
		}
	}
}

// maxAttempts bounds the tries of one export, and maxRetryWait the wait a
// collector may ask for (Retry-After); the budget usually ends them first.
const (
	maxAttempts  = 4
	maxRetryWait = time.Second
)

// post sends one request. On a 2xx answer it returns the spans a partial
// success rejected and why; on a failure, how long to wait before a retry,
// or -1 when the failure is not worth one.
func (e *Exporter) post(ctx context.Context, body []byte) (rejected int, why string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", -1, fmt.Errorf("otlp: %w", err)
	}
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", -1, fmt.Errorf("otlp: %s: %w", e.cfg.URL, ctx.Err())
		}
		// Not retried: a refused connection means no collector listens (the
		// common case of OTLP left on without one), and waiting for it would
		// hold the queue for the whole budget each time.
		return 0, "", -1, fmt.Errorf("otlp: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		n, why := partialSuccess(msg)
		return int(n), why, 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		wait = 0
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		return 0, "", wait, fmt.Errorf("otlp: %s answered %d", e.cfg.URL, code)
	default:
		return 0, "", -1, fmt.Errorf("otlp: %s answered %d", e.cfg.URL, code)
	}
}

func (e *Exporter) gzip(body []byte) ([]byte, error) {
	e.zbuf.Reset()
	if e.zw == nil {
		e.zw, _ = gzip.NewWriterLevel(&e.zbuf, gzip.BestSpeed)
	} else {
		e.zw.Reset(&e.zbuf)
	}
	if _, err := e.zw.Write(body); err != nil {
		return nil, fmt.Errorf("otlp: gzip: %w", err)
	}
	if err := e.zw.Close(); err != nil {
		return nil, fmt.Errorf("otlp: gzip: %w", err)
	}
	return e.zbuf.Bytes(), nil
}

// resourceFor returns the resource's attributes, made again only when the
// first invoked ARN becomes known (its account and function id).
func (e *Exporter) resourceFor(results []state.Result) []kvAttr {
	e.mu.Lock()
	defer e.mu.Unlock()
	arn := e.arn
	if arn == "" {
		for i := range results {
			if results[i].InvokedARN != "" {
				arn = results[i].InvokedARN
				break
			}
		}
	}
	if e.resource == nil || arn != e.arn {
		e.arn, e.resource = arn, e.resourceAttrs(e.getenv, arn)
	}
	return e.resource
}

// partialSuccess reads ExportTraceServiceResponse.partial_success
// {rejected_spans = 1, error_message = 2} from a protobuf response; anything
// else (an empty or JSON body) is full success.
func partialSuccess(b []byte) (rejected int64, msg string) {
	ps, ok := field(b, 1, 2)
	if !ok {
		return 0, ""
	}
	if v, ok := field(ps, 1, 0); ok {
		n, _ := binary.Uvarint(v)
		rejected = int64(n)
	}
	if v, ok := field(ps, 2, 2); ok {
		msg = string(v)
	}
	if rejected > 0 && msg == "" {
		msg = "rejected without a message"
	}
	return rejected, msg
}

// field finds the first occurrence of field num with wire type wire in
// protobuf message b: the varint's bytes, or a length-delimited field's
// contents. Malformed input is "not found".
func field(b []byte, num, wire int) ([]byte, bool) {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, false
		}
		b = b[n:]
		f, w := int(key>>3), int(key&7)
		var val []byte
		switch w {
		case 0:
			_, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, false
			}
			val, b = b[:n], b[n:]
		case 1:
			if len(b) < 8 {
				return nil, false
			}
			val, b = b[:8], b[8:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, false
			}
			val, b = b[n:n+int(l)], b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return nil, false
			}
			val, b = b[:4], b[4:]
		default:
			return nil, false
		}
		if f == num && w == wire {
			return val, true
		}
	}
	return nil, false
}

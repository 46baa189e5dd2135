package otlpsink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
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
	safeURL string            // the endpoint as messages show it: credentials redacted
	scrub   *strings.Replacer // redacts the endpoint's credentials wherever else they appear
	buf     pb                // reused request body
	zbuf    bytes.Buffer      // reused gzipped body
	zw      *gzip.Writer      // made on first use: its state is ~1 MB

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
	// A client certificate needs both halves; with one (the configuration
	// has reported it) the spans go without, whichever half it is.
	clientCert := cfg.ClientCert != "" && cfg.ClientKey != ""
	if cfg.CACert != "" || clientCert {
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
		if clientCert {
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
	// over freezes). No redirect is followed: the headers may be
	// credentials (an api-key header), and a redirect would carry them (Go
	// drops only Authorization and Cookie on a cross-host redirect) to a
	// host nobody configured; a POST moved by 301/302/303 would also lose its
	// body. A redirect is a failed export that names where it pointed.
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Exporter{cfg: cfg, getenv: getenv, client: client, headers: h,
		safeURL: config.RedactURL(cfg.URL), scrub: scrubber(cfg.URL)}, nil
}

// ErrOutcomeUnknown is an export the budget (the caller's context) ended
// before the collector's answer was read: the collector may have taken the
// spans, or some of them, or none. The caller counts these apart from
// failed exports: a budget too short for the collector is not the
// collector failing.
var ErrOutcomeUnknown = errors.New("otlp: export outcome unknown")

// scrubber replaces the credentials of endpoint u (its userinfo, its query
// values) with REDACTED in any text: a message from below (a proxy, a
// transport) may quote the URL in a form RedactURL never saw.
func scrubber(u string) *strings.Replacer {
	p, err := url.Parse(u)
	if err != nil {
		return strings.NewReplacer()
	}
	var secrets []string
	if p.User != nil {
		pw, _ := p.User.Password()
		secrets = append(secrets, p.User.Username(), pw, p.User.String())
	}
	for _, vs := range p.Query() {
		secrets = append(secrets, vs...)
	}
	if p.RawQuery != "" {
		for _, part := range strings.Split(p.RawQuery, "&") {
			_, v, _ := strings.Cut(part, "=")
			secrets = append(secrets, part, v)
		}
	}
	var pairs []string
	for _, s := range secrets {
		// Shorter than 3 is no credential, and would garble the message.
		if len(s) >= 3 {
			pairs = append(pairs, s, "REDACTED")
		}
	}
	return strings.NewReplacer(pairs...)
}

// scrubbed is an error whose message had the endpoint's credentials
// redacted; it unwraps to its cause, so that errors.Is still works.
type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

func (e *Exporter) scrubErr(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbed{msg: e.scrub.Replace(err.Error()), err: err}
}

// Export sends the spans of up to Batch streams in one request, bounded by
// ctx, retrying the answers the specification calls retryable (429, 502,
// 503, 504) while ctx lasts. It returns how many spans
// the collector did not take (all of them on an error, the rejected ones of
// a partial success) and why. When the error is ErrOutcomeUnknown (errors.Is),
// lost is instead how many spans the budget left without a known outcome.
// No message it returns shows the endpoint's credentials.
func (e *Exporter) Export(ctx context.Context, results []state.Result) (lost int, err error) {
	lost, err = e.export(ctx, results)
	return lost, e.scrubErr(err)
}

func (e *Exporter) export(ctx context.Context, results []state.Result) (lost int, err error) {
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
			if rejected > len(results) {
				// More than were sent: a confused collector. All are
				// counted lost, and the message says what it claimed.
				return len(results), fmt.Errorf("otlp: the collector rejected all %d spans (it said %d): %s", len(results), rejected, why)
			}
			if rejected > 0 {
				// Partial success: the request is not retried (the rest
				// were taken); the rejected spans are lost, and why is said.
				return rejected, fmt.Errorf("otlp: the collector rejected %d of %d spans: %s", rejected, len(results), why)
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
// or -1 when the failure is not worth one. A failure is ErrOutcomeUnknown
// when the answer was not read whole because ctx ended.
func (e *Exporter) post(ctx context.Context, body []byte) (rejected int, why string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", -1, fmt.Errorf("otlp: %s: %w", e.safeURL, unwrapURL(err))
	}
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", -1, fmt.Errorf("otlp: %s: %w: %w", e.safeURL, ErrOutcomeUnknown, ctx.Err())
		}
		// Not retried: a refused connection means no collector listens (the
		// common case of OTLP left on without one), and waiting for it would
		// hold the queue for the whole budget each time. url.Error quotes
		// the URL (its password masked, not its user nor its query): only
		// its cause is kept, after the redacted URL.
		return 0, "", -1, fmt.Errorf("otlp: %s: %w", e.safeURL, unwrapURL(err))
	}
	defer resp.Body.Close()
	const maxBody = 64 << 10
	msg, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		if readErr != nil {
			// Taken, but a partial success cut short is not a full one:
			// how many were rejected is not known.
			if ctx.Err() != nil {
				readErr = fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
			} else {
				readErr = fmt.Errorf("%w: %w", ErrOutcomeUnknown, readErr)
			}
			return 0, "", -1, fmt.Errorf("otlp: %s answered %d, and its body was cut short: %w", e.safeURL, code, readErr)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.Contains(ct, "protobuf") {
			// Not the protobuf asked for (JSON, text): no partial success
			// can be read from it, and the 2xx says the spans were taken.
			return 0, "", 0, nil
		}
		n, why, ok := decodePartialSuccess(msg)
		if !ok {
			return 0, "", -1, fmt.Errorf("otlp: %s answered %d with a protobuf body that does not decode (%d bytes): %w",
				e.safeURL, code, len(msg), ErrOutcomeUnknown)
		}
		return int(min(n, math.MaxInt32)), why, 0, nil
	case code/100 == 3:
		return 0, "", -1, fmt.Errorf("otlp: %s answered %d, a redirect to %s: not followed (the export's headers go to the configured endpoint only); configure the endpoint it names",
			e.safeURL, code, config.RedactURL(resp.Header.Get("Location")))
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		wait = 0
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		return 0, "", wait, fmt.Errorf("otlp: %s answered %d", e.safeURL, code)
	default:
		return 0, "", -1, fmt.Errorf("otlp: %s answered %d", e.safeURL, code)
	}
}

// unwrapURL returns the cause of a *url.Error, whose message quotes the
// URL, or err.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
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
	rejected, msg, _ = decodePartialSuccess(b)
	return rejected, msg
}

// decodePartialSuccess is partialSuccess that also says whether b is well
// formed protobuf (an empty body is: no partial success). A body cut short
// can end before its rejected_spans, or cut a length-delimited field: it
// must not read as "none rejected".
func decodePartialSuccess(b []byte) (rejected int64, msg string, ok bool) {
	if !wellFormed(b) {
		return 0, "", false
	}
	ps, found := field(b, 1, 2)
	if !found {
		return 0, "", true
	}
	if !wellFormed(ps) {
		return 0, "", false
	}
	if v, found := field(ps, 1, 0); found {
		n, _ := binary.Uvarint(v)
		rejected = int64(min(n, 1<<62))
	}
	if v, found := field(ps, 2, 2); found {
		msg = string(v)
	}
	if rejected > 0 && msg == "" {
		msg = "rejected without a message"
	}
	return rejected, msg, true
}

// wellFormed reports whether b is a whole sequence of protobuf fields: the
// field reader stops at its first match, and a cut can come after it.
func wellFormed(b []byte) bool {
	for len(b) > 0 {
		var ok bool
		if _, _, _, b, ok = next(b); !ok {
			return false
		}
	}
	return true
}

// field finds the first occurrence of field num with wire type wire in
// protobuf message b: the varint's bytes, or a length-delimited field's
// contents. Malformed input is "not found".
func field(b []byte, num, wire int) ([]byte, bool) {
	for len(b) > 0 {
		f, w, val, rest, ok := next(b)
		if !ok {
			return nil, false
		}
		if f == num && w == wire {
			return val, true
		}
		b = rest
	}
	return nil, false
}

// next reads the first field of protobuf message b: its number, its wire
// type, its value (a varint's bytes, a fixed field's, or a length-delimited
// field's contents) and what follows it; ok is false when b is malformed.
func next(b []byte) (num, wire int, val, rest []byte, ok bool) {
	key, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, nil, false
	}
	b = b[n:]
	if key>>3 == 0 || key>>3 > 1<<29-1 {
		return 0, 0, nil, nil, false // no such field number
	}
	num, wire = int(key>>3), int(key&7)
	switch wire {
	case 0:
		_, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, nil, nil, false
		}
		return num, wire, b[:n], b[n:], true
	case 1:
		if len(b) < 8 {
			return 0, 0, nil, nil, false
		}
		return num, wire, b[:8], b[8:], true
	case 2:
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return 0, 0, nil, nil, false
		}
		return num, wire, b[n : n+int(l)], b[n+int(l):], true
	case 5:
		if len(b) < 4 {
			return 0, 0, nil, nil, false
		}
		return num, wire, b[:4], b[4:], true
	}
	return 0, 0, nil, nil, false
}

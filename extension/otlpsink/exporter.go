package otlpsink

import (
	"bytes"
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

// SpanExporter sends the spans of finished streams, as the OTel SDK's span
// exporter does: Export sends the spans of up to Batch streams in one
// request, bounded by ctx, retrying what the OTLP specification calls
// retryable while ctx lasts. It returns how many spans the collector did not
// take (all of them on an error, the rejected ones of a partial success) and
// why. When the error is ErrOutcomeUnknown (errors.Is), lost is instead how
// many spans the budget left without a known outcome. No message it returns
// shows the endpoint's credentials. Export is called by one goroutine at a
// time.
type SpanExporter interface {
	Export(ctx context.Context, results []state.Result) (lost int, err error)
}

// Exporter is the sampler and the span exporter of a configuration
// together: Decide is its Sampler's, Export its SpanExporter's (OTLP over
// http/protobuf or grpc, as configured).
type Exporter struct {
	*Sampler
	SpanExporter
}

// Batch is how many streams one export carries at most: it bounds the
// request's size and how long one export holds the CPU (~1 ms for 16 spans
// of 50 events) while the function may still be sending events.
const Batch = 16

// New returns the sampler and the exporter of cfg; getenv gives the
// resource's Lambda attributes. It fails for TLS files it cannot use, and
// for a grpc endpoint that is not an http:// or https:// URL.
func New(cfg Config, getenv func(string) string) (*Exporter, error) {
	x, err := NewSpanExporter(cfg, getenv)
	if err != nil {
		return nil, err
	}
	return &Exporter{Sampler: NewSampler(cfg.Sampler, cfg.TTFBThreshold), SpanExporter: x}, nil
}

// NewSpanExporter returns the exporter of cfg.Protocol: OTLP/gRPC for
// config.ProtocolGRPC, else OTLP/HTTP with protobuf.
func NewSpanExporter(cfg Config, getenv func(string) string) (SpanExporter, error) {
	tc, err := TLSConfig(cfg.OTLP)
	if err != nil {
		return nil, err
	}
	if cfg.Protocol == config.ProtocolGRPC {
		return newGRPC(cfg, newEncoder(cfg, getenv), tc)
	}
	return newHTTP(cfg, newEncoder(cfg, getenv), tc), nil
}

// TLSConfig returns the TLS configuration of the OTEL_EXPORTER_OTLP_*
// certificate variables, or nil when none is set: the extension's, and
// the probe's, which reads the same variables.
func TLSConfig(o config.OTLP) (*tls.Config, error) {
	// A client certificate needs both halves; with one (the configuration
	// has reported it) the spans go without, whichever half it is.
	clientCert := o.ClientCert != "" && o.ClientKey != ""
	if o.CACert == "" && !clientCert {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE %s: no PEM certificate in it", o.CACert)
		}
	}
	if clientCert {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_KEY: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// httpExporter is OTLP/HTTP with protobuf (http/protobuf).
type httpExporter struct {
	enc     *encoder
	url     string
	client  *http.Client
	headers http.Header
	safeURL string            // the endpoint as messages show it: credentials redacted
	scrub   *strings.Replacer // redacts the endpoint's credentials wherever else they appear
}

func newHTTP(cfg Config, enc *encoder, tc *tls.Config) *httpExporter {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true, TLSClientConfig: tc}
	// No timeout of its own: the caller's context is the budget (paused
	// over freezes).
	client := &http.Client{Transport: tr, CheckRedirect: RefuseRedirect}
	return &httpExporter{enc: enc, url: cfg.URL, client: client, headers: HTTPHeader(cfg.OTLP, "streamlens/"+version.Version),
		safeURL: config.RedactURL(cfg.URL), scrub: scrubber(cfg.URL)}
}

// HTTPHeader returns the headers of an OTLP/HTTP export request to o: the
// configured ones (OTEL_EXPORTER_OTLP_HEADERS), protobuf's content type,
// agent as the User-Agent, and gzip's encoding when o compresses. The
// extension's exports and the probe's.
func HTTPHeader(o config.OTLP, agent string) http.Header {
	h := http.Header{}
	for _, kv := range o.Headers {
		h.Add(kv.Key, kv.Value)
	}
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("User-Agent", agent)
	if o.Gzip {
		h.Set("Content-Encoding", "gzip")
	}
	return h
}

// RefuseRedirect is the CheckRedirect of an OTLP client: no redirect is
// followed. The headers may be credentials (an api-key header), and a
// redirect would carry them (Go drops only Authorization and Cookie on a
// cross-host redirect) to a host nobody configured; a POST moved by
// 301/302/303 would also lose its body. A redirect is a failed export that
// names where it pointed.
func RefuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

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

func scrubErr(r *strings.Replacer, err error) error {
	if err == nil {
		return nil
	}
	return &scrubbed{msg: r.Replace(err.Error()), err: err}
}

// Export implements SpanExporter: it retries the answers the specification
// calls retryable for OTLP/HTTP (429, 502, 503, 504).
func (e *httpExporter) Export(ctx context.Context, results []state.Result) (lost int, err error) {
	results = results[:min(len(results), Batch)]
	if len(results) == 0 {
		return 0, nil
	}
	body, err := e.enc.encode(results)
	if err != nil {
		return len(results), err
	}
	lost, err = retry(ctx, len(results), func() (int, string, time.Duration, error) { return e.post(ctx, body) })
	return lost, scrubErr(e.scrub, err)
}

// retry makes the attempts of one export of n spans with send while ctx
// lasts, and returns how many spans were lost and why. send returns the
// spans a success rejected and why, or an error and how long to wait before
// the next attempt (-1: not worth one).
func retry(ctx context.Context, n int, send func() (rejected int, why string, wait time.Duration, err error)) (lost int, err error) {
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rejected, why, wait, err := send()
		if err == nil {
			if rejected > n {
				// More than were sent: a confused collector. All are
				// counted lost, and the message says what it claimed.
				return n, fmt.Errorf("otlp: the collector rejected all %d spans (it said %d): %s", n, rejected, why)
			}
			if rejected > 0 {
				// Partial success: the request is not retried (the rest
				// were taken); the rejected spans are lost, and why is said.
				return rejected, fmt.Errorf("otlp: the collector rejected %d of %d spans: %s", rejected, n, why)
			}
			return 0, nil
		}
		if wait < 0 || wait > maxRetryWait || attempt == maxAttempts {
			return n, err
		}
		wait = max(wait, backoff)
		backoff *= 2
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return n, fmt.Errorf("%w (no time left to retry)", err)
		}
	}
}

// maxAttempts bounds the tries of one export, and maxRetryWait the wait a
// collector may ask for (Retry-After, gRPC's RetryInfo); the budget usually
// ends them first.
const (
	maxAttempts  = 4
	maxRetryWait = time.Second
)

// maxAnswer bounds what is read of a collector's answer.
const maxAnswer = 64 << 10

// post sends one request. On a 2xx answer it returns the spans a partial
// success rejected and why; on a failure, how long to wait before a retry,
// or -1 when the failure is not worth one. A failure is ErrOutcomeUnknown
// when the answer was not read whole because ctx ended.
func (e *httpExporter) post(ctx context.Context, body []byte) (rejected int, why string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
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
	msg, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		if readErr != nil {
			// Taken, but a partial success cut short is not a full one:
			// how many were rejected is not known.
			return 0, "", -1, fmt.Errorf("otlp: %s answered %d, and its body was cut short: %w", e.safeURL, code, cutShort(ctx, readErr))
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

// cutShort is the error of an answer whose reading failed with err: its
// outcome is unknown, because ctx ended or because the answer was cut.
func cutShort(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
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
	// Every occurrence of partial_success is a message to parse, merged as
	// protobuf merges them (a later scalar wins): one that is malformed
	// makes the whole answer malformed, wherever it stands.
	for rest := b; len(rest) > 0; {
		num, wire, ps, after, _ := next(rest)
		rest = after
		if num != 1 || wire != 2 {
			continue
		}
		if !wellFormed(ps) {
			return 0, "", false
		}
		for f := ps; len(f) > 0; {
			num, wire, v, after, _ := next(f)
			f = after
			switch {
			case num == 1 && wire == 0:
				n, _ := binary.Uvarint(v)
				rejected = int64(min(n, 1<<62))
			case num == 2 && wire == 2:
				msg = string(v)
			}
		}
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

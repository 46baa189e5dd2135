package otlpsink

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/internal/version"
)

// grpcPath is the method OTLP/gRPC exports traces with.
const grpcPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// grpcExporter is OTLP/gRPC, without gRPC: the same protobuf body as
// OTLP/HTTP, as one length-prefixed gRPC message in an HTTP/2 POST (net/http's
// own HTTP/2: unencrypted with prior knowledge for an http:// endpoint, TLS
// with ALPN h2 for https://), the status read from the grpc-status trailer.
// The gRPC library would add megabytes to the extension for one unary call.
type grpcExporter struct {
	enc     *encoder
	url     string // the endpoint's scheme and host, and grpcPath
	gzip    bool
	client  *http.Client
	headers http.Header
	safeURL string
	scrub   *strings.Replacer
	frame   []byte // reused request message
}

func newGRPC(cfg Config, enc *encoder, tc *tls.Config) (*grpcExporter, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP gRPC endpoint %s: want an http:// or https:// URL", config.RedactURL(cfg.URL))
	}
	// The endpoint's path is not used: the gRPC method is the path. Nor
	// are its userinfo and query, which gRPC has no place for.
	target := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: grpcPath}).String()
	var p http.Protocols
	if u.Scheme == "https" {
		p.SetHTTP2(true) // ALPN h2 only: a TLS server without HTTP/2 fails the handshake
	} else {
		p.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as gRPC does
	}
	// No proxy: an HTTP proxy would get an HTTP/2 preface it does not
	// expect (gRPC libraries tunnel with CONNECT; this one does not).
	tr := &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second, TLSClientConfig: tc, Protocols: &p}
	h := http.Header{}
	for _, kv := range cfg.Headers {
		h.Add(kv.Key, kv.Value) // metadata (HTTP/2 sends the keys lower case)
	}
	// gRPC's own headers win over a configured one of the same name.
	h.Set("Content-Type", "application/grpc")
	h.Set("Te", "trailers")
	h.Set("User-Agent", "streamlens/"+version.Version)
	h.Set("Grpc-Accept-Encoding", "gzip")
	if cfg.Gzip {
		h.Set("Grpc-Encoding", "gzip")
	} else {
		h.Del("Grpc-Encoding")
	}
	h.Del("Grpc-Timeout") // never sent: see call
	client := &http.Client{Transport: tr, CheckRedirect: RefuseRedirect}
	return &grpcExporter{enc: enc, url: target, gzip: cfg.Gzip, client: client, headers: h,
		safeURL: config.RedactURL(target), scrub: scrubber(cfg.URL)}, nil
}

// Export implements SpanExporter: it retries the status codes the OTLP
// specification calls retryable (CANCELLED, DEADLINE_EXCEEDED, ABORTED,
// OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED when the
// server sends RetryInfo), waiting as long as RetryInfo asks, up to 1 s.
func (e *grpcExporter) Export(ctx context.Context, results []state.Result) (lost int, err error) {
	results = results[:min(len(results), Batch)]
	if len(results) == 0 {
		return 0, nil
	}
	body, err := e.enc.encode(results)
	if err != nil {
		return len(results), err
	}
	// One gRPC message: compressed flag, big-endian length, the protobuf.
	flag := byte(0)
	if e.gzip {
		flag = 1
	}
	e.frame = binary.BigEndian.AppendUint32(append(e.frame[:0], flag), uint32(len(body)))
	e.frame = append(e.frame, body...)
	lost, err = retry(ctx, len(results), func() (int, string, time.Duration, error) { return e.call(ctx, e.frame) })
	return lost, scrubErr(e.scrub, err)
}

// gRPC status codes (google.golang.org/grpc/codes).
const (
	grpcOK                = 0
	grpcCanceled          = 1
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcAborted           = 10
	grpcOutOfRange        = 11
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcDataLoss          = 15
	grpcUnauthenticated   = 16
)

var grpcCodeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

func grpcCodeName(c int) string {
	if c >= 0 && c < len(grpcCodeNames) {
		return grpcCodeNames[c]
	}
	return "code " + strconv.Itoa(c)
}

// notGRPC is said of an endpoint that does not answer as a gRPC server.
const notGRPC = "not an OTLP/gRPC endpoint? (OTLP/gRPC is usually port 4317; OTLP/HTTP, usually 4318, wants OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"

// call makes one gRPC call, as post does one OTLP/HTTP request.
func (e *grpcExporter) call(ctx context.Context, frame []byte) (rejected int, why string, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(frame))
	if err != nil {
		return 0, "", -1, fmt.Errorf("otlp grpc: %s: %w", e.safeURL, unwrapURL(err))
	}
	// No grpc-timeout: the budget is thawed time, paused over a freeze,
	// which a deadline on the collector's clock cannot be; and a collector
	// that cut the call at it would race the budget's own end.
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", -1, fmt.Errorf("otlp grpc: %s: %w: %w", e.safeURL, ErrOutcomeUnknown, ctx.Err())
		}
		err = unwrapURL(err)
		var certErr *tls.CertificateVerificationError
		var notTLS tls.RecordHeaderError
		switch {
		case isDialError(err), errors.As(err, &certErr):
			// Not retried, as over HTTP: nobody listens, or not whom the
			// certificates say.
			return 0, "", -1, fmt.Errorf("otlp grpc: %s: %w", e.safeURL, err)
		case errors.As(err, &notTLS):
			return 0, "", -1, fmt.Errorf("otlp grpc: %s: the endpoint does not answer TLS (%w): for a plaintext collector, use http://", e.safeURL, err)
		}
		if msg := err.Error(); strings.Contains(msg, "stream error") || strings.Contains(msg, "GOAWAY") {
			// An HTTP/2 server reset the call (RST_STREAM) or went away
			// with it in flight (what Go's transport may retry, it has):
			// it may have taken the spans.
			return 0, "", -1, fmt.Errorf("otlp grpc: %s reset the call (%w): %w", e.safeURL, err, ErrOutcomeUnknown)
		}
		// Connected, yet no HTTP/2 answer: most often an HTTP/1 server
		// (the OTLP/HTTP port) reading the HTTP/2 preface as garbage.
		return 0, "", -1, fmt.Errorf("otlp grpc: %s: no HTTP/2 answer (%w): %s", e.safeURL, err, notGRPC)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		return 0, "", -1, fmt.Errorf("otlp grpc: %s answered over %s (%d): %s", e.safeURL, resp.Proto, resp.StatusCode, notGRPC)
	}
	if resp.StatusCode != http.StatusOK {
		// gRPC's mapping of HTTP statuses; UNAVAILABLE is retried.
		code := grpcUnknown
		switch resp.StatusCode {
		case http.StatusBadRequest:
			code = grpcInternal
		case http.StatusUnauthorized:
			code = grpcUnauthenticated
		case http.StatusForbidden:
			code = grpcPermissionDenied
		case http.StatusNotFound:
			code = grpcUnimplemented
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			code = grpcUnavailable
		}
		if code == grpcUnavailable {
			// A proxy or a balancer in front of the collector, most often.
			return 0, "", 0, fmt.Errorf("otlp grpc: %s answered HTTP %d (%s)", e.safeURL, resp.StatusCode, grpcCodeName(code))
		}
		return 0, "", -1, fmt.Errorf("otlp grpc: %s answered HTTP %d (%s): %s", e.safeURL, resp.StatusCode, grpcCodeName(code), notGRPC)
	}
	trailer := resp.Header // a trailers-only answer (an error) has its status here
	var msg []byte
	if trailer.Get("Grpc-Status") == "" {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
			return 0, "", -1, fmt.Errorf("otlp grpc: %s answered with content-type %q, not application/grpc: %s", e.safeURL, ct, notGRPC)
		}
		var readErr error
		msg, readErr = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		if readErr != nil {
			return 0, "", -1, fmt.Errorf("otlp grpc: %s: the answer was cut short: %w", e.safeURL, cutShort(ctx, readErr))
		}
		trailer = resp.Trailer
	}
	st := trailer.Get("Grpc-Status")
	code, convErr := strconv.Atoi(st)
	if st == "" || convErr != nil {
		// The call may have been taken: its status never came.
		return 0, "", -1, fmt.Errorf("otlp grpc: %s answered without a grpc-status (%q): %w", e.safeURL, st, ErrOutcomeUnknown)
	}
	if code != grpcOK {
		err := fmt.Errorf("otlp grpc: %s answered %s: %s", e.safeURL, grpcCodeName(code), grpcMessage(trailer.Get("Grpc-Message")))
		if code == grpcDeadlineExceeded {
			// The collector's own deadline: the call may have completed
			// (gRPC says so of DEADLINE_EXCEEDED). Retried, as the OTLP
			// specification says, and unknown if no retry settles it.
			err = fmt.Errorf("%w: %w", err, ErrOutcomeUnknown)
		}
		return 0, "", grpcRetryWait(code, trailer.Get("Grpc-Status-Details-Bin")), err
	}
	payload, err := unframe(msg, resp.Header.Get("Grpc-Encoding"))
	if err != nil {
		return 0, "", -1, fmt.Errorf("otlp grpc: %s answered OK with a message that does not decode (%v): %w", e.safeURL, err, ErrOutcomeUnknown)
	}
	n, why, ok := decodePartialSuccess(payload)
	if !ok {
		return 0, "", -1, fmt.Errorf("otlp grpc: %s answered OK with a protobuf message that does not decode (%d bytes): %w",
			e.safeURL, len(payload), ErrOutcomeUnknown)
	}
	return int(min(n, math.MaxInt32)), why, 0, nil
}

// isDialError reports whether err is a failure to connect (refused,
// unreachable, no such host): the request never left.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED)
}

// grpcMessage decodes a grpc-message value (percent-encoded), at most 256
// bytes of it.
func grpcMessage(m string) string {
	if d, err := url.PathUnescape(m); err == nil {
		m = d
	}
	if len(m) > 256 {
		m = m[:256] + "…"
	}
	if m == "" {
		return "(no message)"
	}
	return strings.ToValidUTF8(m, "\uFFFD")
}

// grpcRetryWait is how long to wait before retrying after status code, or
// -1 when the specification says not to retry: RESOURCE_EXHAUSTED is
// retried only when the server says when (RetryInfo in the status details:
// it can recover), the others that are retryable after the backoff or the
// RetryInfo's delay.
func grpcRetryWait(code int, details string) time.Duration {
	delay, hasInfo := retryInfo(details)
	switch code {
	case grpcCanceled, grpcDeadlineExceeded, grpcAborted, grpcOutOfRange, grpcUnavailable, grpcDataLoss:
		if hasInfo {
			return delay
		}
		return 0
	case grpcResourceExhausted:
		if hasInfo {
			return delay
		}
	}
	return -1
}

// retryInfo reads the retry_delay of a google.rpc.RetryInfo in a
// grpc-status-details-bin value: base64 of google.rpc.Status{code = 1,
// message = 2, repeated Any details = 3}, Any{type_url = 1, value = 2},
// RetryInfo{Duration retry_delay = 1}, Duration{seconds = 1, nanos = 2}.
func retryInfo(details string) (time.Duration, bool) {
	if details == "" {
		return 0, false
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(details, "="))
	if err != nil {
		return 0, false
	}
	for len(b) > 0 {
		num, wire, val, rest, ok := next(b)
		if !ok {
			return 0, false
		}
		b = rest
		if num != 3 || wire != 2 {
			continue
		}
		typeURL, _ := field(val, 1, 2)
		if !strings.HasSuffix(string(typeURL), "/google.rpc.RetryInfo") {
			continue
		}
		ri, _ := field(val, 2, 2)
		d, _ := field(ri, 1, 2)
		var secs, nanos uint64
		if v, ok := field(d, 1, 0); ok {
			secs, _ = binary.Uvarint(v)
		}
		if v, ok := field(d, 2, 0); ok {
			nanos, _ = binary.Uvarint(v)
		}
		if secs > 3600 || nanos >= 1e9 { // negative (two's complement) or absurd: wait past the limit
			return time.Hour, true
		}
		return time.Duration(secs)*time.Second + time.Duration(nanos), true
	}
	return 0, false
}

// unframe returns the one message of a unary gRPC answer's body (empty
// for none), decompressed as encoding says when its flag says compressed.
func unframe(b []byte, encoding string) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 5 {
		return nil, fmt.Errorf("%d bytes, shorter than a message's prefix", len(b))
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) != uint64(len(b)-5) {
		return nil, fmt.Errorf("a message of %d bytes in %d", n, len(b)-5)
	}
	switch b[0] {
	case 0:
		return b[5:], nil
	case 1:
		if encoding != "gzip" {
			return nil, fmt.Errorf("compressed with %q", encoding)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b[5:]))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(io.LimitReader(zr, maxAnswer))
	}
	return nil, fmt.Errorf("flag %d", b[0])
}

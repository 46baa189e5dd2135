// Package probe is the caller's view of a streamed response: what `curl -N
// -w` shows, complete. It times the connection (DNS, connect, TLS), the first
// byte, the first useful chunk and every chunk as the caller received it,
// checks the stream's end marker and its SHA-256 where the response carries
// one (the pricing envelope), reads Lambda's error trailers, and sends a W3C
// traceparent so that the function's spans join the caller's trace.
package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Envelopes: how the body is read.
const (
	// Pricing: one JSON quote per line; a line with "instrument" is useful;
	// the stream ends with {"type":"BUNDLE_COMPLETE","sha256":…}, the
	// SHA-256 of the lines before it, checked here.
	Pricing = "pricing"
	// Lines: every non-empty line is a chunk and useful; no end marker.
	Lines = "lines"
	// Raw: every read is a chunk; no end marker.
	Raw = "raw"
)

// Config is one probe.
type Config struct {
	URL         string
	Method      string      // GET unless set
	Header      http.Header // sent as they are
	Envelope    string      // Pricing (default), Lines or Raw
	TraceParent string      // sent as traceparent; "" makes a sampled one
	// Sign, when set, signs the request before it is sent (SigV4 for an
	// AWS_IAM function URL).
	Sign func(*http.Request) error
	// Client is the HTTP client; nil: a new one without keep-alive, so that
	// every probe pays and times its own connection, as a new caller does.
	Client *http.Client
	// Progress, when set, is called on Run's goroutine at the first byte
	// and after every chunk, with what has arrived so far: the live view
	// draws from it while the stream is still open. It must be quick (the
	// next chunk's time is taken after it returns) and must not keep p's
	// slices.
	Progress func(p Progress)
	// LeaveAfter, when > 0, makes the probe a caller that goes away after
	// that many chunks: it closes the connection. Lambda does not stop an
	// invocation whose caller left (and bills it in full): the function's
	// span, in the same trace, ends when the function did, and the time
	// between the probe's caller_left event and that end is the compute
	// spent for nobody.
	LeaveAfter int
}

// Progress is a stream as far as it has arrived.
type Progress struct {
	Status      int
	TTFB        time.Duration
	FirstUseful time.Duration
	Chunks      []Chunk // every chunk so far: only to be read during the call
	Bytes       int64
}

// Chunk is one piece of the body as the caller received it.
type Chunk struct {
	At     time.Duration // since the request was sent
	Bytes  int
	Useful bool
}

// Result is what the caller saw.
type Result struct {
	// Start is when the request was sent (DNS and connect follow it):
	// chunk times are offsets from it, and the client span starts there.
	Start       time.Time
	URL         string `json:"-"` // as configured; RedactURL before showing it
	Method      string `json:"-"`
	Status      int
	TraceParent string
	// Connection phases; zero when not taken (a reused connection, plain
	// HTTP for TLS).
	DNS, Connect, TLS time.Duration
	// TTFB is the first byte of the response (curl's time_starttransfer);
	// FirstUseful the end of the first useful chunk; Total the end of the
	// body.
	TTFB, FirstUseful, Total time.Duration
	Chunks                   []Chunk
	Bytes                    int64
	// EndMarker: the envelope's end marker arrived; SHA256OK: its hash
	// matches the lines before it (nil when the envelope has none).
	EndMarker bool
	SHA256OK  *bool
	// ErrorType and ErrorBody are Lambda's error trailers (an error after
	// the first byte), or the header of an error before it.
	ErrorType, ErrorBody string
	// Left is when the probe went away (Config.LeaveAfter), from the
	// request's start; 0: it read to the end.
	Left time.Duration
	// Truncated is the caller's verdict: an error, no end marker where the
	// envelope has one, or a hash that does not match.
	Truncated bool
	Reason    string
	// Err is the request's failure when there was no response to read (DNS,
	// connect, TLS, a timeout before the headers): the error Run returned,
	// kept so that the EMF and the span can say what a caller would have
	// felt. Not in the JSON: Reason says it.
	Err error `json:"-"`
}

// Lambda's trailers for an error after the first byte of a streamed
// response.
const (
	trailerErrorType = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody = "Lambda-Runtime-Function-Error-Body"
)

// Run sends one request and reads the whole response. The first Run of a
// process first warms the HTTP client up (warmUp): nothing of that goes to
// cfg.URL.
func Run(ctx context.Context, cfg Config) (Result, error) {
	warmOnce.Do(func() { warmUp(ctx) })
	return run(ctx, cfg)
}

// warmOnce: the warm-up is once per process.
var (
	warmOnce sync.Once
	warmed   atomic.Int32 // warm-up requests served: one, or none where loopback is closed
)

// warmUp sends one streamed request to a server of its own on loopback,
// before any request is timed. A fresh process's first request runs code
// and touches memory for the first time (page faults, the first allocation
// of each size, goroutine stacks growing, the poller's setup): measured on
// a 2-core VM, the probe as a command read the first byte 0.9–1 ms later
// than curl, which is a small C program, and 0.5 ms earlier once warm.
// That time is the probe's, not the function's: it must not be in a
// caller's TTFB. Nothing is sent to the probed URL; where loopback cannot
// be listened on, the probe goes on cold.
func warmUp(ctx context.Context) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		warmed.Add(1)
		// Chunked and flushed, as a streamed response: the client's
		// chunked reader is on the timed path too.
		_, _ = io.WriteString(w, "warm\n")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "up\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _ = run(wctx, Config{URL: "http://" + ln.Addr().String() + "/", Envelope: Lines})
}

func run(ctx context.Context, cfg Config) (Result, error) {
	r := Result{URL: cfg.URL}
	method := cfg.Method
	if method == "" {
		method = http.MethodGet
	}
	r.Method = method
	r.TraceParent = cfg.TraceParent
	if r.TraceParent == "" {
		r.TraceParent = newTraceParent()
	}
	var dnsStart, connStart, tlsStart, sent time.Time
	progress := func() {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Status: r.Status, TTFB: r.TTFB, FirstUseful: r.FirstUseful, Chunks: r.Chunks, Bytes: r.Bytes})
		}
	}
	trace := &httptrace.ClientTrace{
		DNSStart:             func(httptrace.DNSStartInfo) { dnsStart = time.Now() },
		DNSDone:              func(httptrace.DNSDoneInfo) { r.DNS = since(dnsStart) },
		ConnectStart:         func(string, string) { connStart = time.Now() },
		ConnectDone:          func(string, string, error) { r.Connect = since(connStart) },
		TLSHandshakeStart:    func() { tlsStart = time.Now() },
		TLSHandshakeDone:     func(tls.ConnectionState, error) { r.TLS = since(tlsStart) },
		GotFirstResponseByte: func() { r.TTFB = time.Since(sent) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, cfg.URL, nil)
	if err != nil {
		return r, fmt.Errorf("probe: %w", err)
	}
	for k, vs := range cfg.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("traceparent", r.TraceParent)
	if cfg.Sign != nil {
		if err := cfg.Sign(req); err != nil {
			return r, fmt.Errorf("probe: signing: %w", err)
		}
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment}}
	}
	sent = time.Now()
	r.Start = sent
	resp, err := client.Do(req)
	if err != nil {
		// No response: to the caller, the worst truncation there is. The
		// result says so too, for whoever reports it (EMF, the span).
		r.Total = time.Since(sent)
		r.Err = fmt.Errorf("probe: %w", err)
		r.Truncated, r.Reason = true, "request: "+unwrapURL(err).Error()
		return r, r.Err
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	r.ErrorType = resp.Header.Get(trailerErrorType)
	progress()
	switch err := read(resp.Body, cfg.Envelope, sent, &r, progress, cfg.LeaveAfter); {
	case errors.Is(err, errLeft):
		r.Left = time.Since(sent)
		resp.Body.Close() // the caller is gone: the connection with it
		r.Truncated, r.Reason = true, fmt.Sprintf("caller left after %d chunks", len(r.Chunks))
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		r.Truncated, r.Reason = true, "read: "+err.Error()
	}
	r.Total = time.Since(sent)
	if t := resp.Trailer.Get(trailerErrorType); t != "" {
		r.ErrorType, r.ErrorBody = t, resp.Trailer.Get(trailerErrorBody)
	}
	judge(&r, cfg.Envelope)
	return r, nil
}

// unwrapURL returns the cause of a *url.Error: its message quotes the URL,
// whose query may hold a credential, and Reason goes to logs and metrics.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func since(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

// errLeft: the probe left after Config.LeaveAfter chunks, as asked.
var errLeft = errors.New("caller left")

// read reads the body as envelope says, chunk by chunk; after leaveAfter
// chunks (> 0) it stops with errLeft.
func read(body io.Reader, envelope string, sent time.Time, r *Result, progress func(), leaveAfter int) error {
	// took records chunk c, and reports whether the caller leaves now.
	took := func(c Chunk) bool {
		r.Chunks = append(r.Chunks, c)
		r.Bytes += int64(c.Bytes)
		if c.Useful && r.FirstUseful == 0 {
			r.FirstUseful = c.At
		}
		progress()
		return leaveAfter > 0 && len(r.Chunks) >= leaveAfter
	}
	if envelope == Raw {
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 && took(Chunk{At: time.Since(sent), Bytes: n, Useful: true}) {
				return errLeft
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	sum := sha256.New()
	br := bufio.NewReaderSize(body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			c := Chunk{At: time.Since(sent), Bytes: len(line)}
			trimmed := bytes.TrimSpace(line)
			switch {
			case envelope == Lines:
				c.Useful = len(trimmed) > 0
			default: // Pricing
				var env struct {
					Type, SHA256, Instrument string
				}
				_ = json.Unmarshal(trimmed, &env)
				if env.Type == "BUNDLE_COMPLETE" {
					r.EndMarker = true
					ok := hex.EncodeToString(sum.Sum(nil)) == env.SHA256
					r.SHA256OK = &ok
				} else {
					sum.Write(line)
					c.Useful = env.Instrument != ""
				}
			}
			if took(c) {
				return errLeft
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// judge gives the caller's verdict.
func judge(r *Result, envelope string) {
	switch {
	case r.Truncated:
	case r.Status >= 300:
		r.Truncated, r.Reason = true, fmt.Sprintf("status %d", r.Status)
	case r.ErrorType != "":
		r.Truncated, r.Reason = true, "error "+r.ErrorType
	case envelope != Lines && envelope != Raw && !r.EndMarker:
		r.Truncated, r.Reason = true, "no end marker"
	case r.SHA256OK != nil && !*r.SHA256OK:
		r.Truncated, r.Reason = true, "sha256 mismatch"
	}
}

// newTraceParent is a sampled W3C traceparent with random ids.
func newTraceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

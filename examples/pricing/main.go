// Command pricing is a streaming Lambda function (function URL in
// RESPONSE_STREAM mode, provided.al2023): given a bundle of instruments it
// streams one quote envelope per instrument, most liquid first, and ends with a
// BUNDLE_COMPLETE chunk carrying the SHA-256 of the bundle. It records its
// stream with the streamlens client.
//
// Query parameters: instruments (default 50, max 500), delay_ms (per instrument,
// default 1; some instruments cost up to 3× that), first_delay_ms (before the
// first quote), bundle (bundle id), down=1 (a dependency is down: the handler
// fails before its stream starts), fail_after=N (error mid-stream after N quotes),
// depth=N (N order-book levels in every quote, up to 2,000: a deep bundle is
// megabytes long), hang_after=N (stop after N quotes until the function times out),
// crash_after=N (the process exits after N quotes), panic_after=N (the stream
// panics after N quotes), crash_before_start=1 (the process exits before its
// stream starts), crash_before_end=1 (it exits after BUNDLE_COMPLETE, before
// the stream's end), skip_end=1 (no end event),
// late_end_ms=N (end event N ms after the response finished).
//
// Build with -tags lambda.norpc.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"go.opentelemetry.io/otel/propagation"

	"github.com/streamlens/streamlens/client"
)

// ModelVersion is stamped on every quote.
const ModelVersion = "bs-vol-surface-2.3.1"

// MaxInstruments bounds a bundle so one request cannot ask for an unbounded
// stream.
const MaxInstruments = 500

type request struct {
	Instruments int
	Delay       time.Duration
	BundleID    string
	FailAfter   int
	HangAfter   int
	CrashAfter  int
	PanicAfter  int
	// CrashBeforeStart and CrashBeforeEnd end the process at the edges of
	// its stream: before it starts, and once every byte is written but the
	// stream's end is not recorded.
	CrashBeforeStart, CrashBeforeEnd bool
	// SkipEnd and LateEnd simulate a client whose end event is lost or sent
	// after the response finished (as an async sender's may be).
	SkipEnd bool
	Down    bool // a dependency is down: fail before the stream starts
	LateEnd time.Duration
	// FirstDelay is extra time before the first quote (a cold model cache).
	FirstDelay time.Duration
	// Note is copied into every quote (e.g. a desk reference); it exists so
	// tests can prove payload bytes never reach logs or metrics.
	Note string
	// Depth is the order book's levels in every quote (0: none): deep books
	// make a bundle megabytes long, past Lambda's 6 MB mark.
	Depth int
}

func parseRequest(q map[string]string) (request, error) {
	r := request{Instruments: 50, Delay: time.Millisecond, FailAfter: -1, HangAfter: -1, CrashAfter: -1, PanicAfter: -1}
	num := func(name string, dst *int, min, max int) error {
		v, ok := q[name]
		if !ok {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return fmt.Errorf("%s=%q: want %d..%d", name, v, min, max)
		}
		*dst = n
		return nil
	}
	var delayMs, lateEndMs, skipEnd, firstDelayMs, down, crashStart, crashEnd = 1, 0, 0, 0, 0, 0, 0
	errs := errors.Join(
		num("first_delay_ms", &firstDelayMs, 0, 60_000),
		num("late_end_ms", &lateEndMs, 0, 60_000),
		num("skip_end", &skipEnd, 0, 1),
		num("down", &down, 0, 1),
		num("instruments", &r.Instruments, 1, MaxInstruments),
		num("delay_ms", &delayMs, 0, 10_000),
		num("fail_after", &r.FailAfter, 0, MaxInstruments),
		num("hang_after", &r.HangAfter, 0, MaxInstruments),
		num("crash_after", &r.CrashAfter, 0, MaxInstruments),
		num("panic_after", &r.PanicAfter, 0, MaxInstruments),
		num("crash_before_start", &crashStart, 0, 1),
		num("crash_before_end", &crashEnd, 0, 1),
		num("depth", &r.Depth, 0, MaxDepth),
	)
	r.CrashBeforeStart, r.CrashBeforeEnd = crashStart == 1, crashEnd == 1
	r.Delay = time.Duration(delayMs) * time.Millisecond
	r.LateEnd = time.Duration(lateEndMs) * time.Millisecond
	r.FirstDelay = time.Duration(firstDelayMs) * time.Millisecond
	r.SkipEnd = skipEnd == 1
	r.Down = down == 1
	r.BundleID = q["bundle"]
	r.Note = q["note"]
	if len(r.Note) > 64 {
		errs = errors.Join(errs, errors.New("note: at most 64 characters"))
	}
	if len(r.BundleID) > 64 {
		errs = errors.Join(errs, errors.New("bundle: at most 64 characters"))
	}
	if r.BundleID == "" {
		r.BundleID = "EQ-" + strconv.Itoa(r.Instruments)
	}
	return r, errs
}

// Quote is one envelope of the stream.
type Quote struct {
	QuoteID       string  `json:"quoteId"`
	Instrument    string  `json:"instrument"`
	Bid           float64 `json:"bid"`
	Ask           float64 `json:"ask"`
	ModelVersion  string  `json:"modelVersion"`
	FeedTimestamp string  `json:"feedTimestamp"`
	Note          string  `json:"note,omitempty"`
	Book          []Level `json:"book,omitempty"`
}

// Level is one level of a quote's order book.
type Level struct {
	Bid     float64 `json:"bid"`
	Ask     float64 `json:"ask"`
	BidSize int     `json:"bidSize"`
	AskSize int     `json:"askSize"`
}

// MaxDepth bounds the book's levels (~60 bytes each: ~120 KB a quote).
const MaxDepth = 2000

// BundleComplete ends a successful stream.
type BundleComplete struct {
	Type        string `json:"type"`
	QuoteID     string `json:"quoteId"`
	BundleID    string `json:"bundleId"`
	Instruments int    `json:"instruments"`
	SHA256      string `json:"sha256"`
}

type pricer struct {
	sl *client.Client
}

func (p *pricer) handle(ctx context.Context, ev events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
	start := time.Now()
	req, err := parseRequest(ev.QueryStringParameters)
	if err != nil {
		return &events.LambdaFunctionURLStreamingResponse{StatusCode: 400,
			Headers: map[string]string{"Content-Type": "text/plain"}, Body: stringsReader(err.Error() + "\n")}, nil
	}
	if req.CrashBeforeStart {
		os.Exit(3)
	}
	if req.Down {
		// The market data service is unreachable: no quote can be priced,
		// so no stream starts. Only the platform sees this invocation fail.
		return nil, errors.New("pricing engine: market data service unreachable")
	}
	// A caller's W3C trace context (traceparent header) becomes the context of
	// this invocation, so the stream's span joins the caller's trace.
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(ev.Headers))
	pr, pw := io.Pipe()
	go p.stream(ctx, pw, req, start)
	return &events.LambdaFunctionURLStreamingResponse{StatusCode: 200,
		Headers: map[string]string{"Content-Type": "application/x-ndjson"}, Body: pr}, nil
}

func (p *pricer) stream(ctx context.Context, pw *io.PipeWriter, req request, start time.Time) {
	s := p.sl.Start(ctx, pw, client.StartOptions{Expected: req.Instruments, BundleID: req.BundleID, StartTime: start})
	bundle := sha256.New()
	for i, inst := range universe(req.Instruments) {
		switch i {
		case req.FailAfter:
			s.End(client.EndOptions{Status: client.StatusError})
			pw.CloseWithError(errors.New("pricing engine: market data feed lost"))
			return
		case req.HangAfter:
			time.Sleep(time.Hour) // the platform's timeout ends this
		case req.CrashAfter:
			os.Exit(3)
		case req.PanicAfter:
			panic(fmt.Sprintf("pricing engine: no model for %s", inst))
		}
		if i == 0 {
			time.Sleep(req.FirstDelay)
		}
		time.Sleep(req.Delay * time.Duration(costFactor(inst)))
		q := price(s.QuoteID(), inst, time.Now())
		q.Note = req.Note
		q.Book = book(q, req.Depth)
		b, _ := json.Marshal(q)
		b = append(b, '\n')
		bundle.Write(b)
		if _, err := s.WriteChunk(b, client.ChunkOptions{Instrument: inst}); err != nil {
			s.End(client.EndOptions{Status: client.StatusAborted})
			return // the reader went away: the client aborted
		}
	}
	var sum [32]byte
	bundle.Sum(sum[:0])
	b, _ := json.Marshal(BundleComplete{Type: "BUNDLE_COMPLETE", QuoteID: s.QuoteID(), BundleID: req.BundleID,
		Instruments: req.Instruments, SHA256: hex.EncodeToString(sum[:])})
	s.WriteChunk(append(b, '\n'), client.ChunkOptions{Trailer: true})
	if req.CrashBeforeEnd {
		os.Exit(3)
	}
	switch {
	case req.SkipEnd:
		pw.Close()
	case req.LateEnd > 0:
		pw.Close()
		time.Sleep(req.LateEnd)
		s.End(client.EndOptions{Declared: &sum})
	default:
		s.End(client.EndOptions{Declared: &sum})
		pw.Close()
	}
}

func main() {
	sl, err := client.FromEnv()
	if err != nil {
		// Metrics are not worth failing quotes for: stream without them.
		log.Printf("streamlens disabled: %v", err)
	}
	p := &pricer{sl: sl}
	lambda.Start(p.handle)
}

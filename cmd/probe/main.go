// Command probe is the caller's view of a streaming function: `curl -N -w`,
// complete. It sends N requests to a function URL, one at a time on a fresh
// connection each, and prints for each the connection phases, the first
// byte, the first useful chunk, every chunk's arrival and the total, the end
// marker and its SHA-256, Lambda's error trailers and the traceparent it
// sent (the function's spans join that trace). -sigv4 REGION signs each
// request for an AWS_IAM function URL with the default credentials. It
// exits 1 when any response was truncated.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/streamlens/streamlens/internal/probe"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	url := flag.String("url", "", "the function URL, with its query")
	n := flag.Int("n", 1, "requests, one after another")
	envelope := flag.String("envelope", probe.Pricing, "how the body is read: pricing (quote lines, BUNDLE_COMPLETE with its SHA-256 checked), lines, raw")
	region := flag.String("sigv4", "", "sign for an AWS_IAM function URL in this region, with the default credentials")
	asJSON := flag.Bool("json", false, "one JSON result per request")
	var hs headers
	flag.Var(&hs, "H", "a request header, 'Name: value' (repeatable)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "probe: -url is required")
		os.Exit(2)
	}
	cfg := probe.Config{URL: *url, Envelope: *envelope, Header: http.Header{}}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "probe: -H %q: want 'Name: value'\n", h)
			os.Exit(2)
		}
		cfg.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	ctx := context.Background()
	if *region != "" {
		sign, err := sigv4(ctx, *region)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(2)
		}
		cfg.Sign = sign
	}
	truncated := false
	for i := 0; i < *n; i++ {
		r, err := probe.Run(ctx, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		truncated = truncated || r.Truncated
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
			continue
		}
		printResult(r)
	}
	if truncated {
		os.Exit(1)
	}
}

// printResult writes one result as a reader wants it: the phases, then the
// chunk timeline.
func printResult(r probe.Result) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	verdict := "complete"
	if r.Truncated {
		verdict = "TRUNCATED: " + r.Reason
	}
	fmt.Printf("status %d  dns %s  connect %s  tls %s  ttfb %s  first useful %s  total %s  %d chunks, %d bytes  %s\n",
		r.Status, ms(r.DNS), ms(r.Connect), ms(r.TLS), ms(r.TTFB), ms(r.FirstUseful), ms(r.Total), len(r.Chunks), r.Bytes, verdict)
	if r.SHA256OK != nil {
		fmt.Printf("  end marker: sha256 %s\n", map[bool]string{true: "matches", false: "DOES NOT match"}[*r.SHA256OK])
	}
	if r.ErrorType != "" {
		fmt.Printf("  error: %s %s\n", r.ErrorType, r.ErrorBody)
	}
	fmt.Printf("  traceparent %s\n", r.TraceParent)
	for i, c := range r.Chunks {
		if i == 5 && len(r.Chunks) > 10 {
			fmt.Printf("  … %d more\n", len(r.Chunks)-10)
		}
		if i >= 5 && i < len(r.Chunks)-5 {
			continue
		}
		fmt.Printf("  chunk %3d at %10s  %6d bytes\n", i+1, ms(c.At), c.Bytes)
	}
}

// sigv4 signs requests to a function URL (service lambda) with the default
// credential chain.
func sigv4(ctx context.Context, region string) (func(*http.Request) error, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	signer := v4.NewSigner()
	return func(req *http.Request) error {
		creds, err := cfg.Credentials.Retrieve(req.Context())
		if err != nil {
			return err
		}
		return sign(req.Context(), signer, creds, req, region)
	}, nil
}

// emptySHA256 is the payload hash of a request without a body.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

func sign(ctx context.Context, s *v4.Signer, creds aws.Credentials, req *http.Request, region string) error {
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	return s.SignHTTP(ctx, creds, req, emptySHA256, "lambda", region, time.Now())
}

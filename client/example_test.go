package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/lambdaurl"

	"github.com/streamlens/streamlens/client"
)

// A function that is not a pricing engine: an http.Handler served by
// lambdaurl (function URL, RESPONSE_STREAM), streaming search results. The
// stream id is generated per response (the "quote id"); BundleID names the
// kind of response (low cardinality: it is ranked in Contributor Insights);
// Instrument is the item key whose latency is worth a metric (a shard here,
// a bounded set); ClientID is the caller.
func Example_httpHandler() {
	sl, _ := client.FromEnv() // once, at init; a nil client writes through
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		shards := []string{"eu-1", "eu-2", "us-1"}
		s := sl.Start(r.Context(), w, client.StartOptions{ // the request id comes from the context lambdaurl passes
			Expected: len(shards), BundleID: "search", ClientID: r.Header.Get("X-Tenant"), StartTime: start})
		for _, shard := range shards {
			hits, err := search(r.Context(), shard, r.URL.Query().Get("q"))
			if err != nil {
				s.WriteChunk([]byte(`{"error":"shard unavailable"}`+"\n"), client.ChunkOptions{Instrument: shard, ErrorEnvelope: true})
				s.End(client.EndOptions{Status: client.StatusError})
				return
			}
			b, _ := json.Marshal(hits)
			s.WriteChunk(append(b, '\n'), client.ChunkOptions{Instrument: shard})
		}
		s.End(client.EndOptions{})
	})
	if false { // in main()
		lambdaurl.Start(handler)
	}
}

func search(context.Context, string, string) ([]string, error) { return nil, nil }

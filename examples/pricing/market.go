package main

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"strings"
	"time"
)

// liquid lists instruments from the most liquid down; bundles take a prefix,
// so the most liquid instrument is always quoted first.
var liquid = []string{
	"SPY", "QQQ", "AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "META", "GOOGL", "AMD",
	"IWM", "BAC", "JPM", "XOM", "NFLX", "AVGO", "INTC", "F", "PLTR", "UBER",
	"DIS", "WMT", "KO", "PFE", "CSCO", "ORCL", "CRM", "ADBE", "PEP", "T",
	"VZ", "C", "WFC", "CVX", "MU", "QCOM", "TXN", "NKE", "MRK", "ABBV",
	"BA", "GE", "CAT", "GS", "MS", "SBUX", "PYPL", "SHOP", "SNOW", "BRK B",
}

func universe(n int) []string {
	out := make([]string, n)
	for i := range out {
		if i < len(liquid) {
			out[i] = liquid[i]
		} else {
			out[i] = fmt.Sprintf("INST%04d", i+1)
		}
	}
	return out
}

// price makes a deterministic, plausible two-sided quote.
func price(quoteID, inst string, now time.Time) Quote {
	h := fnv.New32a()
	h.Write([]byte(inst))
	base := 20 + float64(h.Sum32()%50000)/100
	wiggle := math.Sin(float64(now.UnixMilli()%60000)/60000*2*math.Pi) * base * 0.001
	mid := base + wiggle
	spread := math.Max(0.01, mid*0.0002)
	return Quote{QuoteID: quoteID, Instrument: inst, Bid: round(mid - spread/2), Ask: round(mid + spread/2),
		ModelVersion: ModelVersion, FeedTimestamp: now.UTC().Format(time.RFC3339Nano)}
}

// book makes n order-book levels around q, one tick apart.
func book(q Quote, n int) []Level {
	if n == 0 {
		return nil
	}
	out := make([]Level, n)
	tick := math.Max(0.0001, round((q.Ask-q.Bid)/2))
	for i := range out {
		d := tick * float64(i)
		out[i] = Level{Bid: round(q.Bid - d), Ask: round(q.Ask + d), BidSize: 100 * (i + 1), AskSize: 100 * (i + 2)}
	}
	return out
}

// costFactor is how many units of delay an instrument's model takes: options-
// heavy names need a volatility surface and cost more.
func costFactor(inst string) int {
	h := fnv.New32a()
	h.Write([]byte("cost:" + inst))
	return 1 + int(h.Sum32()%3)
}

func round(v float64) float64 { return math.Round(v*10000) / 10000 }

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

package main

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/streamlens/streamlens/internal/otlpbody"
	"github.com/streamlens/streamlens/internal/summary"
)

// receiver is the demo's OTLP/HTTP endpoint: it decodes what the extension
// exports with the collector's own pdata, as a collector would.
type receiver struct {
	mu    sync.Mutex
	spans []ptrace.Span
	bad   int
	srv   *http.Server
	url   string
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String()}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := otlpbody.Read(req, 16<<20)
	er := ptraceotlp.NewExportRequest()
	if err == nil {
		err = er.UnmarshalProto(body)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rss := er.Traces().ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				r.spans = append(r.spans, ss.At(k))
			}
		}
	}
	out, _ := ptraceotlp.NewExportResponse().MarshalProto()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) close() { _ = r.srv.Close() }

func str(s ptrace.Span, k string) string {
	v, _ := s.Attributes().Get(k)
	return v.AsString()
}

// longestTruncated is the truncated stream's span that lasted longest: a
// timeout shows the span lasting until the platform gave up, long after the
// last chunk.
func (r *receiver) longestTruncated() *ptrace.Span {
	var out *ptrace.Span
	for i, s := range r.spans {
		if str(s, "streamlens.truncated") == "true" && (out == nil || duration(s) > duration(*out)) {
			out = &r.spans[i]
		}
	}
	return out
}

// waterfall is that span's events, for the text and the HTML page.
func (r *receiver) waterfall() *summary.Waterfall {
	r.mu.Lock()
	defer r.mu.Unlock()
	sp := r.longestTruncated()
	if sp == nil {
		return nil
	}
	s := *sp
	start := s.StartTimestamp().AsTime()
	w := &summary.Waterfall{Total: duration(s),
		Title: fmt.Sprintf("One truncated stream's span: trace %s, bundle %s, %s", s.TraceID(), str(s, "streamlens.bundle_id"), s.Status().Message()),
		End:   "the span ends where the platform ended the invocation: the caller waited until then"}
	for i := 0; i < s.Events().Len(); i++ {
		ev := s.Events().At(i)
		name := ev.Name()
		if v, ok := ev.Attributes().Get("streamlens.instrument"); ok {
			name += " " + v.AsString()
		}
		w.Events = append(w.Events, summary.WaterfallEvent{Label: name, At: ev.Timestamp().AsTime().Sub(start)})
	}
	sort.SliceStable(w.Events, func(i, j int) bool { return w.Events[i].At < w.Events[j].At })
	return w
}

// print says what the receiver got and why each span was kept, and draws
// the waterfall as text.
func (r *receiver) print(w *summary.Waterfall) {
	r.mu.Lock()
	why := map[string]int{}
	for _, s := range r.spans {
		why[str(s, "streamlens.sampling.reason")]++
	}
	n, bad := len(r.spans), r.bad
	r.mu.Unlock()
	fmt.Printf("\nSpans (the demo's own OTLP receiver, %s, decoded with the collector's pdata)\n", r.url)
	fmt.Printf("  %d spans received; kept because the stream failed: %d, healthy ones kept by the 1-in-10 sampler: %d",
		n, why["failed"], why["ratio"]+why["parent"])
	if bad > 0 {
		fmt.Printf("; %d requests refused", bad)
	}
	fmt.Println()
	if w == nil {
		return
	}
	const width = 60
	bar := func(at time.Duration) string {
		return strings.Repeat(" ", int(float64(width)*w.Pct(at)/100)) + "▏"
	}
	fmt.Printf("\n  %s (%s)\n", w.Title, w.Total.Round(time.Millisecond))
	fmt.Printf("  %-28s %s %s\n", "stream", strings.Repeat("█", width), w.Total.Round(time.Millisecond))
	shown := w.Events
	if len(shown) > 8 {
		shown = append(append([]summary.WaterfallEvent(nil), shown[:4]...), shown[len(shown)-3:]...)
	}
	for i, ev := range shown {
		if len(w.Events) > 8 && i == 4 {
			fmt.Printf("  … %d more chunks\n", len(w.Events)-7)
		}
		fmt.Printf("  %-28s %s %s\n", ev.Label, bar(ev.At), ev.At.Round(100*time.Microsecond))
	}
	fmt.Printf("  %-28s %s %s  ← %s\n", "end", bar(w.Total), w.Total.Round(time.Millisecond), w.End)
}

func duration(s ptrace.Span) time.Duration {
	return s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime())
}

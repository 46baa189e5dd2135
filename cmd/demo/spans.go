package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
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
	body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
	if err == nil && req.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
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

// print says what the receiver got, why each span was kept, and draws one
// truncated stream's span as a waterfall.
func (r *receiver) print() {
	r.mu.Lock()
	defer r.mu.Unlock()
	why := map[string]int{}
	var truncated *ptrace.Span
	for i, s := range r.spans {
		why[str(s, "streamlens.sampling.reason")]++
		// The longest truncated one: a timeout shows the span lasting until
		// the platform gave up, long after the last chunk.
		if str(s, "streamlens.truncated") == "true" && (truncated == nil || duration(s) > duration(*truncated)) {
			truncated = &r.spans[i]
		}
	}
	fmt.Printf("\nSpans (the demo's own OTLP receiver, %s, decoded with the collector's pdata)\n", r.url)
	fmt.Printf("  %d spans received; kept because the stream failed: %d, healthy ones kept by the 1-in-10 sampler: %d",
		len(r.spans), why["failed"], why["ratio"]+why["parent"])
	if r.bad > 0 {
		fmt.Printf("; %d requests refused", r.bad)
	}
	fmt.Println()
	if truncated == nil {
		return
	}
	s := *truncated
	start, end := s.StartTimestamp().AsTime(), s.EndTimestamp().AsTime()
	total := end.Sub(start)
	fmt.Printf("\n  One truncated stream: trace %s, bundle %s, %s (%s)\n", s.TraceID(), str(s, "streamlens.bundle_id"),
		s.Status().Message(), total.Round(time.Millisecond))
	const width = 60
	bar := func(at time.Duration) string {
		n := 0
		if total > 0 {
			n = int(float64(width) * float64(at) / float64(total))
		}
		return strings.Repeat(" ", min(n, width)) + "▏"
	}
	fmt.Printf("  %-28s %s%s\n", "stream", strings.Repeat("█", width), " "+total.Round(time.Millisecond).String())
	type row struct {
		at   time.Duration
		name string
	}
	var rows []row
	for i := 0; i < s.Events().Len(); i++ {
		ev := s.Events().At(i)
		name := ev.Name()
		if v, ok := ev.Attributes().Get("streamlens.instrument"); ok {
			name += " " + v.AsString()
		}
		rows = append(rows, row{ev.Timestamp().AsTime().Sub(start), name})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at < rows[j].at })
	shown := rows
	if len(rows) > 8 {
		shown = append(append([]row(nil), rows[:4]...), rows[len(rows)-3:]...)
	}
	for i, rw := range shown {
		if len(rows) > 8 && i == 4 {
			fmt.Printf("  %-28s %s\n", fmt.Sprintf("… %d more chunks", len(rows)-7), "")
		}
		fmt.Printf("  %-28s %s %s\n", rw.name, bar(rw.at), rw.at.Round(100*time.Microsecond))
	}
	fmt.Printf("  %-28s %s %s  ← the platform ended the invocation; the caller waited until here\n", "end", bar(total), total.Round(time.Millisecond))
}

func duration(s ptrace.Span) time.Duration {
	return s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime())
}

// Command testrt is a scriptable Lambda runtime for the sandbox's own tests.
// The invocation payload says what to do; what it sees goes to $TESTRT_OUT as
// JSON lines.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type payload struct {
	SleepMs    int    `json:"sleep_ms"`    // before responding
	Chunks     int    `json:"chunks"`      // a streamed response of this many chunks
	ChunkBytes int    `json:"chunk_bytes"` // of this size
	GapMs      int    `json:"gap_ms"`      // between chunks
	Crash      bool   `json:"crash"`       // exit mid-invocation
	Error      string `json:"error"`       // post /error with this type
	Body       string `json:"body"`        // a buffered response
}

var (
	api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/"
	mu  sync.Mutex
	out *os.File
)

func record(kv map[string]any) {
	kv["t"] = time.Now().UnixNano()
	b, _ := json.Marshal(kv)
	mu.Lock()
	defer mu.Unlock()
	if out != nil {
		_, _ = out.Write(append(b, '\n'))
	}
}

func main() {
	if p := os.Getenv("TESTRT_OUT"); p != "" {
		out, _ = os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		record(map[string]any{"ev": "sigterm"})
		if os.Getenv("TESTRT_IGNORE_TERM") == "" {
			os.Exit(0)
		}
	}()
	record(map[string]any{"ev": "start", "pid": os.Getpid()})
	n, _ := strconv.Atoi(os.Getenv("AWS_LAMBDA_MAX_CONCURRENCY"))
	if w, _ := strconv.Atoi(os.Getenv("TESTRT_WORKERS")); w > 0 {
		n = w // more workers than the concurrency, as AWS's Node runtime client starts
	}
	for i := 1; i < n; i++ {
		go loop()
	}
	loop()
}

func loop() {
	for {
		resp, err := http.Get(api + "invocation/next")
		if err != nil {
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		record(map[string]any{"ev": "invoke", "id": id, "trace": resp.Header.Get("Lambda-Runtime-Trace-Id"),
			"deadline": resp.Header.Get("Lambda-Runtime-Deadline-Ms")})
		var p payload
		_ = json.Unmarshal(body, &p)
		handle(id, p)
		record(map[string]any{"ev": "done", "id": id})
	}
}

func handle(id string, p payload) {
	time.Sleep(time.Duration(p.SleepMs) * time.Millisecond)
	switch {
	case p.Crash:
		os.Exit(3)
	case p.Error != "":
		req, _ := http.NewRequest(http.MethodPost, api+"invocation/"+id+"/error", bytes.NewReader([]byte(`{"errorType":"`+p.Error+`"}`)))
		req.Header.Set("Lambda-Runtime-Function-Error-Type", p.Error)
		post(req)
	case p.Chunks > 0:
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte("x"), max(p.ChunkBytes, 1))
			for i := 0; i < p.Chunks; i++ {
				if i > 0 {
					time.Sleep(time.Duration(p.GapMs) * time.Millisecond)
				}
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, api+"invocation/"+id+"/response", pr)
		req.Header.Set("Lambda-Runtime-Function-Response-Mode", "streaming")
		req.Header.Set("Content-Type", "application/octet-stream")
		post(req)
	default:
		req, _ := http.NewRequest(http.MethodPost, api+"invocation/"+id+"/response", bytes.NewReader([]byte(p.Body)))
		post(req)
	}
}

func post(req *http.Request) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testrt:", err)
		return
	}
	resp.Body.Close()
}

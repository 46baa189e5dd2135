// Command testext is a scriptable Lambda extension for the sandbox's own
// tests, configured by TESTEXT_* variables. What it sees goes to
// $TESTEXT_OUT/<its name>.jsonl as JSON lines.
package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension/"
	mu  sync.Mutex
	out *os.File
)

func record(kv map[string]any) {
	kv["t"] = time.Now().UnixNano()
	kv["pid"] = os.Getpid()
	b, _ := json.Marshal(kv)
	mu.Lock()
	defer mu.Unlock()
	if out != nil {
		_, _ = out.Write(append(b, '\n'))
	}
}

// get reads TESTEXT_<NAME>_<k>, else TESTEXT_<k>: several copies of this
// program under different names can behave differently in one environment.
func get(k string) string {
	name := strings.ToUpper(filepath.Base(os.Args[0]))
	if v := os.Getenv("TESTEXT_" + name + "_" + k); v != "" {
		return v
	}
	return os.Getenv("TESTEXT_" + k)
}

func envMs(k string) time.Duration {
	n, _ := strconv.Atoi(get(k))
	return time.Duration(n) * time.Millisecond
}

func main() {
	if dir := os.Getenv("TESTEXT_OUT"); dir != "" {
		out, _ = os.OpenFile(filepath.Join(dir, filepath.Base(os.Args[0])+".jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	events := get("EVENTS")
	if events == "" {
		events = "INVOKE,SHUTDOWN"
	}
	body, _ := json.Marshal(map[string]any{"events": strings.Split(events, ",")})
	req, _ := http.NewRequest(http.MethodPost, api+"register", bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Name", filepath.Base(os.Args[0]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		os.Exit(1)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Extension-Identifier")
	record(map[string]any{"ev": "register", "status": resp.StatusCode, "body": string(rb)})
	if resp.StatusCode != http.StatusOK {
		os.Exit(1)
	}
	// The type of each report received (platform.initReport, .report); the
	// loop counts INVOKEs.
	reports := make(chan string, 10_000)
	invokes := 0
	if host := get("SUBSCRIBE"); host != "" {
		subscribe(id, host, reports)
	}
	time.Sleep(envMs("INIT_SLEEP_MS"))
	if d := envMs("EXIT_AFTER_MS"); d > 0 {
		// A crash of the extension while the environment serves.
		time.AfterFunc(d, func() {
			record(map[string]any{"ev": "crash"})
			os.Exit(2)
		})
	}
	for {
		record(map[string]any{"ev": "next"})
		req, _ := http.NewRequest(http.MethodGet, api+"event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			os.Exit(1)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ev map[string]any
		_ = json.Unmarshal(b, &ev)
		record(map[string]any{"ev": "event", "event": ev})
		if ev["eventType"] == "SHUTDOWN" {
			// Wait for the telemetry still on its way, then go: the report
			// of this process's init and one for every invocation it saw,
			// the last one's included.
			deadline := time.After(envMs("SHUTDOWN_WAIT_MS"))
			want := map[string]int{"platform.initReport": 1, "platform.report": invokes}
			if n, err := strconv.Atoi(get("WANT_REPORTS")); err == nil {
				// Registered for SHUTDOWN only (Managed Instances): no
				// INVOKE counts the invocations, the test says how many.
				want["platform.report"] = n
			}
		wait:
			for want["platform.initReport"] > 0 || want["platform.report"] > 0 {
				select {
				case typ := <-reports:
					want[typ]--
				case <-deadline:
					break wait
				}
			}
			record(map[string]any{"ev": "exit"})
			return
		}
		invokes++
		time.Sleep(envMs("HOLD_MS"))
	}
}

// subscribe listens on loopback and subscribes to platform telemetry with
// destination http://host:port.
func subscribe(id, host string, reports chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			var evs []map[string]any
			_ = json.Unmarshal(b, &evs)
			record(map[string]any{"ev": "telemetry", "batch": evs})
			for _, e := range evs {
				if typ, _ := e["type"].(string); typ == "platform.report" || typ == "platform.initReport" {
					select {
					case reports <- typ:
					default:
					}
				}
			}
		}))
	}()
	schema := get("SCHEMA")
	if schema == "" {
		schema = "2022-12-13"
	}
	buffer, _ := strconv.Atoi(get("BUFFER_MS"))
	if buffer == 0 {
		buffer = 25
	}
	port := ln.Addr().(*net.TCPAddr).Port
	body, _ := json.Marshal(map[string]any{"schemaVersion": schema, "types": []string{"platform"},
		"destination": map[string]string{"protocol": "HTTP", "URI": "http://" + host + ":" + strconv.Itoa(port)},
		"buffering":   map[string]int{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": buffer}})
	req, _ := http.NewRequest(http.MethodPut, strings.Replace(api, "2020-01-01/extension/", "2022-07-01/telemetry", 1), bytes.NewReader(body))
	req.Header.Set("Lambda-Extension-Identifier", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		os.Exit(1)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	record(map[string]any{"ev": "subscribe", "status": resp.StatusCode, "body": string(rb)})
}

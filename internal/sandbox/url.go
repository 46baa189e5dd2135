//go:build unix

package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

const integrationResponse = "application/vnd.awslambda.http-integration-response"

// URLHandler serves invocations like a function URL in RESPONSE_STREAM mode:
// the HTTP request becomes a function URL event, and the response streams back
// chunk by chunk (curl -N shows them arriving). A streaming response that fails
// after its first byte still ends as HTTP 200 with a short body, as on Lambda.
func (s *Sandbox) URLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 6<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		headers := map[string]string{}
		for k, v := range r.Header {
			headers[strings.ToLower(k)] = strings.Join(v, ",")
		}
		query := map[string]string{}
		for k, v := range r.URL.Query() {
			query[k] = strings.Join(v, ",")
		}
		ev, _ := json.Marshal(map[string]any{
			"version": "2.0", "routeKey": "$default", "rawPath": r.URL.Path, "rawQueryString": r.URL.RawQuery,
			"headers": headers, "queryStringParameters": query, "body": string(body), "isBase64Encoded": false,
			"requestContext": map[string]any{"requestId": uuid.NewString(), "timeEpoch": time.Now().UnixMilli(),
				"http": map[string]string{"method": r.Method, "path": r.URL.Path, "protocol": r.Proto, "sourceIp": r.RemoteAddr}},
		})
		// The caller's response ends with the function's response; the
		// invocation goes on without it while the extensions finish.
		uw := &urlWriter{w: w, ended: make(chan string, 1)}
		failed := make(chan error, 1)
		go func() {
			_, err := s.InvokeRequest(context.WithoutCancel(r.Context()), Request{Payload: ev, TraceHeader: r.Header.Get("X-Amzn-Trace-Id")}, uw)
			failed <- err
		}()
		var errType string
		select {
		case errType = <-uw.ended:
		case err := <-failed:
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			errType = <-uw.ended
		}
		if !uw.started {
			// Nothing was streamed: the error is still visible as a status code.
			if errType != "" {
				http.Error(w, errType, http.StatusBadGateway)
				return
			}
			uw.start(http.StatusOK)
		}
	})
}

// urlWriter turns the runtime's response into an HTTP response: with the
// http-integration-response content type, a JSON prelude (status, headers,
// cookies) and eight NUL bytes come before the body.
type urlWriter struct {
	w           http.ResponseWriter
	integration bool
	prelude     []byte
	started     bool
	ended       chan string // the function's error type, when its response is over
}

func (u *urlWriter) EndResponse(errType string) { u.ended <- errType }

func (u *urlWriter) SetContentType(ct string) {
	u.integration = ct == integrationResponse
	if !u.integration && ct != "" {
		u.w.Header().Set("Content-Type", ct)
	}
}

func (u *urlWriter) start(status int) {
	u.started = true
	u.w.WriteHeader(status)
}

func (u *urlWriter) Write(p []byte) (int, error) {
	n := len(p)
	if u.integration && !u.started {
		u.prelude = append(u.prelude, p...)
		i := bytes.Index(u.prelude, make([]byte, 8))
		if i < 0 {
			if len(u.prelude) > 1<<20 {
				return 0, io.ErrShortBuffer
			}
			return n, nil
		}
		var pre struct {
			StatusCode int               `json:"statusCode"`
			Headers    map[string]string `json:"headers"`
			Cookies    []string          `json:"cookies"`
		}
		_ = json.Unmarshal(u.prelude[:i], &pre)
		for k, v := range pre.Headers {
			u.w.Header().Set(k, v)
		}
		for _, c := range pre.Cookies {
			u.w.Header().Add("Set-Cookie", c)
		}
		if pre.StatusCode == 0 {
			pre.StatusCode = http.StatusOK
		}
		rest := u.prelude[i+8:]
		u.prelude = nil
		u.start(pre.StatusCode)
		if len(rest) > 0 {
			_, err := u.w.Write(rest)
			return n, err
		}
		return n, nil
	}
	if !u.started {
		u.start(http.StatusOK)
	}
	_, err := u.w.Write(p)
	return n, err
}

func (u *urlWriter) Flush() {
	if f, ok := u.w.(http.Flusher); ok && u.started {
		f.Flush()
	}
}

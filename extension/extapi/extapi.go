// Package extapi is a client for the Lambda Extensions API and the Telemetry API
// subscription, as documented by AWS (2020-01-01 and 2022-07-01).
package extapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Header names of the Extensions API.
const (
	HeaderName       = "Lambda-Extension-Name"
	HeaderIdentifier = "Lambda-Extension-Identifier"
	HeaderErrorType  = "Lambda-Extension-Function-Error-Type"
)

// Event types.
const (
	Invoke   = "INVOKE"
	Shutdown = "SHUTDOWN"
)

// Event is what /event/next returns.
type Event struct {
	EventType          string `json:"eventType"`
	DeadlineMs         int64  `json:"deadlineMs"`
	RequestID          string `json:"requestId"`
	InvokedFunctionArn string `json:"invokedFunctionArn"`
	ShutdownReason     string `json:"shutdownReason"`
	Tracing            struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"tracing"`
}

// Client talks to $AWS_LAMBDA_RUNTIME_API.
type Client struct {
	host string // host:port
	http *http.Client
	id   string
	next nextConn
}

// New returns a client for the API at host:port.
func New(runtimeAPI string) *Client {
	// No client timeout: /event/next blocks for as long as the sandbox is idle.
	return &Client{host: runtimeAPI, http: &http.Client{}}
}

// ID is the identifier the sandbox gave at registration.
func (c *Client) ID() string { return c.id }

// Register registers the extension for events (INVOKE and SHUTDOWN when
// none are given). name must be the executable's file name.
func (c *Client) Register(ctx context.Context, name string, events ...string) error {
	if len(events) == 0 {
		events = []string{Invoke, Shutdown}
	}
	body, _ := json.Marshal(map[string][]string{"events": events})
	resp, err := c.do(ctx, http.MethodPost, "/2020-01-01/extension/register", body, http.Header{HeaderName: {name}})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	c.id = resp.Header.Get(HeaderIdentifier)
	if c.id == "" {
		return fmt.Errorf("register: no %s in response", HeaderIdentifier)
	}
	return nil
}

// APIError is an answer of the API outside 2xx.
type APIError struct {
	Status int
	Type   string // errorType of the body, if any
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

// InvokeRefused reports whether err is the refusal of INVOKE that Lambda
// Managed Instances give (403 Extension.InvalidEventType): many invocations
// run at once there, and an extension may register for SHUTDOWN only.
func InvokeRefused(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusForbidden && ae.Type == "Extension.InvalidEventType"
}

// DecodeEvent decodes an /event/next body. Any input gives an event or an
// error, never a panic (fuzzed); an event always has a known type, and an
// INVOKE always a request id.
func DecodeEvent(b []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return Event{}, fmt.Errorf("decoding %q: %w", truncate(b), err)
	}
	switch {
	case ev.EventType == Invoke && ev.RequestID == "":
		return Event{}, fmt.Errorf("INVOKE without requestId: %q", truncate(b))
	case ev.EventType != Invoke && ev.EventType != Shutdown:
		return Event{}, fmt.Errorf("unknown event type %q", ev.EventType)
	}
	return ev, nil
}

// InitError reports a failure during init; the sandbox then fails the init.
func (c *Client) InitError(ctx context.Context, errorType, message string) error {
	return c.reportError(ctx, "/2020-01-01/extension/init/error", errorType, message)
}

// ExitError reports a failure before the extension exits.
func (c *Client) ExitError(ctx context.Context, errorType, message string) error {
	return c.reportError(ctx, "/2020-01-01/extension/exit/error", errorType, message)
}

func (c *Client) reportError(ctx context.Context, path, errorType, message string) error {
	body, _ := json.Marshal(map[string]any{"errorMessage": message, "errorType": errorType, "stackTrace": []string{}})
	_, err := c.do(ctx, http.MethodPost, path, body, http.Header{HeaderErrorType: {errorType}})
	return err
}

// Subscription is a Telemetry API subscription request.
type Subscription struct {
	SchemaVersion string      `json:"schemaVersion"`
	Destination   Destination `json:"destination"`
	Types         []string    `json:"types"`
	Buffering     Buffering   `json:"buffering"`
}

// Destination is where the sandbox POSTs telemetry batches.
type Destination struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

// Buffering bounds a batch: it is sent when any limit is reached.
type Buffering struct {
	MaxItems  int `json:"maxItems"`
	MaxBytes  int `json:"maxBytes"`
	TimeoutMs int `json:"timeoutMs"`
}

// SubscribeTelemetry subscribes to the Telemetry API.
func (c *Client) SubscribeTelemetry(ctx context.Context, s Subscription) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, "/2022-07-01/telemetry", body, nil)
	if err != nil {
		return fmt.Errorf("telemetry subscribe: %w", err)
	}
	// Only 200 is a subscription: the emulator behind sam local answers 202
	// {"errorType":"Telemetry.NotSupported"} and then sends nothing.
	if resp.Status != http.StatusOK {
		return fmt.Errorf("telemetry subscribe: status %d: %s: %w", resp.Status, truncate(resp.Body), ErrNotSubscribed)
	}
	return nil
}

// ErrNotSubscribed is a subscription answered with a 2xx other than 200.
var ErrNotSubscribed = errors.New("not subscribed")

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, h http.Header) (*response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.host+path, r)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.id != "" {
		req.Header.Set(HeaderIdentifier, c.id)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %w", method, path, apiError(resp.StatusCode, b))
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// apiError is the answer b with a status outside 2xx.
func apiError(status int, b []byte) *APIError {
	var e struct {
		ErrorType string `json:"errorType"`
	}
	_ = json.Unmarshal(b, &e)
	return &APIError{Status: status, Type: e.ErrorType, Body: truncate(b)}
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

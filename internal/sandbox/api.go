//go:build unix

package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
)

func apiError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorType": typ, "errorMessage": msg})
}

func (s *Sandbox) state() *state {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.st
}

// ---- Runtime API ----

func (s *Sandbox) runtimeNext(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	if st == nil {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "no environment")
		return
	}
	reply := make(chan *invocation, 1)
	select {
	case st.rtNext <- reply:
	default:
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "next called twice")
		return
	}
	select {
	case inv := <-reply:
		h := w.Header()
		h.Set(hdrRequestID, inv.id)
		h.Set(hdrDeadline, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set(hdrFunctionArn, s.arn)
		h.Set(hdrTraceID, inv.xray)
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	}
}

func (s *Sandbox) current(w http.ResponseWriter, r *http.Request) *invocation {
	st := s.state()
	if st == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "no environment")
		return nil
	}
	st.mu.Lock()
	inv := st.invs[r.PathValue("id")]
	timedOut := st.timedOut[r.PathValue("id")]
	st.mu.Unlock()
	if inv == nil && timedOut {
		// Lambda Managed Instances: the invocation timed out while its code
		// ran on; its late answer is refused.
		apiError(w, http.StatusGone, "InvokeTimeout", "Invoke timeout")
		return nil
	}
	if inv == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "unknown request id "+r.PathValue("id"))
		return nil
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.responded {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "response already sent")
		return nil
	}
	inv.responded = true
	return inv
}

// runtimeResponse copies the response to the caller. A streamed response
// (chunked, with or without Lambda-Runtime-Function-Response-Mode: streaming)
// is forwarded chunk by chunk in RESPONSE_STREAM mode, up to 200 MB and at
// most 2 MiB/s past the first 6 MB; an error after the first byte arrives in
// the trailers. In BUFFERED mode the caller gets the whole response at the
// end, and nothing if it is over 6 MB.
func (s *Sandbox) runtimeResponse(w http.ResponseWriter, r *http.Request) {
	inv := s.current(w, r)
	if inv == nil {
		return
	}
	defer close(inv.done)
	inv.mu.Lock()
	inv.contentType = r.Header.Get("Content-Type")
	inv.mu.Unlock()
	if ct, ok := inv.w.(interface{ SetContentType(string) }); ok {
		ct.SetContentType(inv.contentType)
	}
	flusher, _ := inv.w.(interface{ Flush() })
	limit := int64(MaxStreamBytes)
	if inv.buffered {
		limit = MaxBufferedBytes
	}
	buf := make([]byte, 32<<10)
	var tooLarge bool
	for {
		n, err := r.Body.Read(buf)
		if n > 0 && inv.ctx.Err() == nil {
			now := time.Now()
			inv.mu.Lock()
			if inv.firstByte.IsZero() {
				inv.firstByte = now
			}
			inv.lastByte = now
			inv.bytes += int64(n)
			total, first := inv.bytes, inv.firstByte
			tooLarge = total > limit
			inv.mu.Unlock()
			if tooLarge {
				break
			}
			if inv.buffered {
				inv.mu.Lock()
				inv.body = append(inv.body, buf[:n]...)
				inv.mu.Unlock()
			} else {
				if !sleepUntil(inv.ctx, first.Add(streamPace(total))) {
					break
				}
				inv.write(buf[:n], flusher)
			}
		}
		if err != nil {
			break
		}
		if inv.ctx.Err() != nil {
			if s.cfg.managed() {
				// Timed out on Lambda Managed Instances: the caller's
				// stream ends here, truncated, but the code runs on and its
				// writes succeed; its response is refused at its end.
				_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxStreamBytes))
				apiError(w, http.StatusGone, "InvokeTimeout", "Invoke timeout")
				return
			}
			break // timed out: the caller's stream ends here, truncated
		}
	}
	inv.mu.Lock()
	switch {
	case tooLarge:
		inv.errType = "Function.ResponseSizeTooLarge"
		inv.body = nil
	case r.Trailer.Get(hdrErrType) != "":
		inv.errType = r.Trailer.Get(hdrErrType)
	}
	inv.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// streamPace is how long after its first byte a streamed response may have
// sent n bytes: at once up to 6 MB, then 2 MiB/s.
func streamPace(n int64) time.Duration {
	if n <= unthrottledBytes {
		return 0
	}
	return time.Duration(float64(n-unthrottledBytes) / throttledRate * float64(time.Second))
}

// sleepUntil waits until t, or reports false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// write forwards p to the caller unless the caller's response is over.
func (inv *invocation) write(p []byte, flusher interface{ Flush() }) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.closed {
		return
	}
	_, _ = inv.w.Write(p)
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Sandbox) runtimeError(w http.ResponseWriter, r *http.Request) {
	inv := s.current(w, r)
	if inv == nil {
		return
	}
	defer close(inv.done)
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	typ := r.Header.Get(hdrErrType)
	if typ == "" {
		var e struct {
			ErrorType string `json:"errorType"`
		}
		_ = json.Unmarshal(body, &e)
		typ = e.ErrorType
	}
	if typ == "" {
		typ = "Unhandled"
	}
	inv.mu.Lock()
	inv.errType = typ
	inv.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sandbox) runtimeInitError(w http.ResponseWriter, r *http.Request) {
	s.recordInitError(r, r.Header.Get(hdrErrType))
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sandbox) recordInitError(r *http.Request, typ string) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var e struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	_ = json.Unmarshal(body, &e)
	if typ == "" {
		typ = e.ErrorType
	}
	if st := s.state(); st != nil {
		st.mu.Lock()
		if st.initErr == nil {
			st.initErr = fmt.Errorf("%s: %s", typ, e.ErrorMessage)
		}
		st.mu.Unlock()
	}
	fmt.Fprintf(s.log, "SANDBOX init error %s: %s\n", typ, e.ErrorMessage)
}

// ---- Extensions API ----

func (s *Sandbox) extRegister(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	if st == nil {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "no environment")
		return
	}
	name := r.Header.Get(hdrExtName)
	var body struct {
		Events []string `json:"events"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequest", "body: "+err.Error())
		return
	}
	events := map[string]bool{}
	for _, e := range body.Events {
		if e != "INVOKE" && e != "SHUTDOWN" {
			apiError(w, http.StatusBadRequest, "InvalidEventType", e)
			return
		}
		if e == "INVOKE" && s.cfg.managed() {
			// Lambda Managed Instances run many invocations at once: there is
			// no per-invocation event for an extension to hold.
			apiError(w, http.StatusForbidden, "Extension.InvalidEventType", "INVOKE is not supported with Lambda Managed Instances; register for SHUTDOWN only")
			return
		}
		events[e] = true
	}
	st.mu.Lock()
	var ext *extension
	for _, e := range st.exts {
		if e.name == name && e.id == "" {
			ext = e
		}
	}
	if ext == nil || !st.initPhase {
		st.mu.Unlock()
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "register: unknown extension name "+strconv.Quote(name)+" or not in init")
		return
	}
	ext.id = uuid.NewString()
	ext.events = events
	ext.registered = time.Now()
	st.byID[ext.id] = ext
	st.mu.Unlock()
	w.Header().Set(hdrExtID, ext.id)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"functionName": s.cfg.FunctionName, "functionVersion": "$LATEST", "handler": "bootstrap"})
}

func (s *Sandbox) extByID(w http.ResponseWriter, r *http.Request) (*state, *extension) {
	st := s.state()
	if st == nil {
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "no environment")
		return nil, nil
	}
	st.mu.Lock()
	ext := st.byID[r.Header.Get(hdrExtID)]
	st.mu.Unlock()
	if ext == nil {
		apiError(w, http.StatusForbidden, "Extension.Unknown", "missing or unknown "+hdrExtID)
		return nil, nil
	}
	return st, ext
}

// extNext holds the call until the sandbox has an event for this extension:
// nothing reaches an extension between its calls, which is what freezing
// means to it.
func (s *Sandbox) extNext(w http.ResponseWriter, r *http.Request) {
	_, ext := s.extByID(w, r)
	if ext == nil {
		return
	}
	reply := make(chan []byte, 1)
	select {
	case ext.next <- reply:
	default:
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "event/next called twice")
		return
	}
	select {
	case ev := <-reply:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(hdrExtID, ext.id)
		_, _ = w.Write(ev)
	case <-r.Context().Done():
	}
}

func (s *Sandbox) extInitError(w http.ResponseWriter, r *http.Request) {
	if _, ext := s.extByID(w, r); ext == nil {
		return
	}
	s.recordInitError(r, r.Header.Get(hdrExtErrType))
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sandbox) extExitError(w http.ResponseWriter, r *http.Request) {
	_, ext := s.extByID(w, r)
	if ext == nil {
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	fmt.Fprintf(s.log, "SANDBOX extension %s exit error %s: %s\n", ext.name, r.Header.Get(hdrExtErrType), body)
	w.WriteHeader(http.StatusAccepted)
}

// ---- Telemetry API ----

func (s *Sandbox) telemetrySubscribe(w http.ResponseWriter, r *http.Request) {
	st, ext := s.extByID(w, r)
	if ext == nil {
		return
	}
	if s.cfg.Telemetry == TelemetryUnsupported {
		// What the Runtime Interface Emulator behind sam local answers: a 2xx
		// that is not a subscription.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"})
		return
	}
	var sub subscription
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&sub); err != nil {
		apiError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return
	}
	maxItems, maxBytes, timeout, msg := sub.validate(s.cfg.managed())
	if msg != "" {
		apiError(w, http.StatusBadRequest, "ValidationError", msg)
		return
	}
	ts := newSubscriber(sub, maxItems, maxBytes, timeout)
	st.mu.Lock()
	st.subs = append(st.subs, ts)
	// Events of the init phase so far are delivered to a subscriber that joins
	// during init, as Lambda does.
	for _, ev := range st.initEvts {
		ts.add("platform", ev)
	}
	st.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

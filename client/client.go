// Package client records a Lambda response stream for the streamlens extension.
//
// A function wraps its response writer in a Stream; every chunk written through
// it becomes an event for the extension. On Linux, with the extension's ring
// directory present (STREAMLENS_RING_DIR, default $TMPDIR/.streamlens:
// /tmp/.streamlens on Lambda), events
// are committed into a ring file this process maps: memory stores, no system
// call, no timer, and an event committed before its write returns survives a
// crash of the process the next instant. A bell datagram asks the extension
// to read the ring at the first chunk, at the end and when the ring is half
// full. Otherwise (no ring directory, another OS, STREAMLENS_RING_DIR=off)
// events go over a datagram socket, and chunk events share datagrams, up to
// STREAMLENS_COALESCE (64) at a time: the first chunk is sent at once, with
// the start in the same datagram, and so is the end; what waits is sent
// within 2 ms. Sending never blocks and never fails the stream: a datagram
// the kernel will not take at once (extension absent, socket buffer full) is
// dropped and counted, and the count travels in the stream's end event.
//
// The package is a module of its own, github.com/streamlens/streamlens/client
// (go.mod here), so that a function linking it requires only aws-lambda-go,
// OpenTelemetry's trace API and x/sys, and Go 1.22: not the extension's
// dependencies. Its wire encoder is internal/wire, a copy of the main
// module's package protocol that the main module's tests keep identical.
package client

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// DefaultAddr is where the extension listens unless STREAMLENS_ADDR says
// otherwise (UDP on loopback).
const DefaultAddr = wire.DefaultAddr

// Status is how a stream ended: EndOptions.Status, Summary.Status, the end
// event's status= field. An alias, so that it is the wire format's own type
// (the client module's copy of the main module's protocol.Status, with the
// same values).
type Status = wire.Status

// Stream end statuses.
const (
	StatusUnknown  = wire.StatusUnknown  // EndOptions: complete, or aborted if a write failed
	StatusComplete = wire.StatusComplete // every payload chunk was written
	StatusError    = wire.StatusError    // the function failed the request
	StatusAborted  = wire.StatusAborted  // the response was cut short
)

// EnvAddr names the variable holding the extension's address.
const EnvAddr = "STREAMLENS_ADDR"

// EnvCoalesce names the variable holding how many chunk events may share a
// datagram (1: one datagram per event).
const EnvCoalesce = "STREAMLENS_COALESCE"

// EnvRingDir names the variable holding the ring directory ("off": no ring).
const EnvRingDir = "STREAMLENS_RING_DIR"

// DefaultRingDir is the ring directory unless STREAMLENS_RING_DIR says
// otherwise: $TMPDIR/.streamlens, /tmp/.streamlens on Lambda. The extension
// creates it before the runtime starts.
func DefaultRingDir() string { return wire.DefaultRingDir() }

// DefaultCoalesce is how many chunk events share a datagram unless
// STREAMLENS_COALESCE says otherwise. Ordinary events (~140 bytes) fill a
// datagram's bytes first, at about 40; the count bounds what a crash can
// lose together with the 2 ms that events wait at most.
const DefaultCoalesce = 64

// MaxCoalesce is the most STREAMLENS_COALESCE may say.
const MaxCoalesce = 64

// Client owns the datagram socket. It is safe for concurrent use; create one per
// process (at init, outside the handler) and share it.
type Client struct {
	sock     sock // the platform's datagram socket (socket_linux.go, socket_other.go)
	sent     atomic.Int64
	dropped  atomic.Int64
	closed   atomic.Bool
	coalesce int // chunk events per datagram at most; 0 means DefaultCoalesce

	// ring is this process's ring (UseRing), nil without one; ringErr says
	// why there is none. ringEvents and ringSkipped are added by streams at
	// their end: an atomic add per chunk would be a cost on the hot path.
	ring        *ring
	ringErr     error
	ringEvents  atomic.Int64
	ringSkipped atomic.Int64

	// One timer for every stream with events waiting: a timer per stream
	// would be an allocation in Start.
	wmu     sync.Mutex
	waiting []*Stream // streams with events waiting since the timer was armed
	spare   []*Stream // the other buffer, reused
	wtimer  *time.Timer
	armed   bool
	// maxWait is how long events may wait to share a datagram; 0 means
	// coalesceWait. Tests that count datagrams set it long, so that a slow
	// machine's pause cannot split a batch.
	maxWait time.Duration
}

// wait has the events waiting in s sent within coalesceWait, if nothing
// sends them before.
func (c *Client) wait(s *Stream) {
	if c == nil {
		return
	}
	c.wmu.Lock()
	c.waiting = append(c.waiting, s)
	if !c.armed {
		c.armed = true
		d := c.maxWait
		if d == 0 {
			d = coalesceWait
		}
		if c.wtimer == nil {
			c.wtimer = time.AfterFunc(d, c.flushWaiting)
		} else {
			c.wtimer.Reset(d)
		}
	}
	c.wmu.Unlock()
}

// flushWaiting sends what the waiting streams still hold (the timer's
// goroutine). A stream that sent its events meanwhile has none left.
func (c *Client) flushWaiting() {
	c.wmu.Lock()
	ws := c.waiting
	c.waiting, c.spare = c.spare[:0], nil
	c.armed = false
	c.wmu.Unlock()
	for i, s := range ws {
		s.flushWaiting()
		ws[i] = nil // a finished stream must not stay reachable from here
	}
	c.wmu.Lock()
	if c.spare == nil {
		c.spare = ws[:0]
	}
	c.wmu.Unlock()
}

// SetCoalesce sets how many chunk events may share a datagram (1 to
// MaxCoalesce; 1 sends every event on its own). Call it before the client is
// shared.
func (c *Client) SetCoalesce(n int) {
	if c != nil {
		c.coalesce = min(max(n, 1), MaxCoalesce)
	}
}

func (c *Client) coalesceN() int {
	if c == nil || c.coalesce == 0 {
		return DefaultCoalesce
	}
	return c.coalesce
}

// New opens a non-blocking datagram socket towards addr: "IP:port" (UDP;
// "localhost" means 127.0.0.1) or "unix:/absolute/path" (a unix datagram
// socket), parsed as the extension parses STREAMLENS_ADDR. It does not need
// the extension to be running.
func New(addr string) (*Client, error) {
	a, err := wire.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("streamlens client: %w", err)
	}
	s, err := openSocket(a)
	if err != nil {
		return nil, fmt.Errorf("streamlens client: %w", err)
	}
	return &Client{sock: s}, nil
}

// FromEnv is New with STREAMLENS_ADDR (default DefaultAddr).
// STREAMLENS_ADDR=off gives a nil Client and no error: streams only write
// through (to measure a function without the client, or to switch it off
// without a deploy).
func FromEnv() (*Client, error) {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		addr = DefaultAddr
	}
	if addr == "off" {
		return nil, nil
	}
	c, err := New(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvAddr, err)
	}
	if dir := os.Getenv(EnvRingDir); dir != "off" {
		if dir == "" {
			dir = DefaultRingDir()
		}
		if err := c.UseRing(dir); err != nil {
			// Said once, at init: the events go by datagram instead.
			fmt.Fprintf(os.Stderr, "streamlens client: %s: %v: events go by datagram\n", EnvRingDir, err)
		}
	}
	if v := os.Getenv(EnvCoalesce); v != "" {
		// A bad value keeps the default: the client never fails a function
		// for its observability.
		if n, err := strconv.Atoi(v); err == nil {
			c.SetCoalesce(n)
		}
	}
	return c, nil
}

// UseRing creates this process's ring in dir (the extension's ring
// directory) and announces it to the extension with a bell; streams started
// from then on write their events into it. Call it before the client is
// shared. When it fails (no such directory, a directory that is not private
// to this user, no room in /tmp, not Linux) events keep going by datagram,
// and RingErr says why.
func (c *Client) UseRing(dir string) error {
	if c == nil {
		return nil
	}
	r, err := openRing(dir)
	if err != nil {
		c.ringErr = err
		return err
	}
	c.ring, c.ringErr = r, nil
	// The announcement: the extension attaches the ring when it reads a
	// bell. Lost if the extension does not listen yet; the first chunk's
	// bell says it again.
	c.bell(r, 0)
	return nil
}

// RingErr says why the client has no ring (nil when it has one, or was
// never asked to use one).
func (c *Client) RingErr() error {
	if c == nil {
		return nil
	}
	return c.ringErr
}

// usableRing is the ring new streams write into, nil when events go by
// datagram.
func (c *Client) usableRing() *ring {
	if c == nil || c.ring == nil || c.closed.Load() || !c.ring.usable() {
		return nil
	}
	return c.ring
}

// Close releases the socket. Streams still open keep writing their response;
// their events are counted as dropped.
func (c *Client) Close() error {
	if c == nil || c.closed.Swap(true) {
		return nil
	}
	return c.sock.close()
}

// Stats are the client's counters since New.
type Stats struct {
	Sent    int64 // datagrams the kernel accepted (bells included)
	Dropped int64 // datagrams refused or not sent
	// RingEvents is how many events ended streams committed into the ring,
	// RingSkipped how many of theirs went by datagram although there is a
	// ring (it was full, or the event longer than a slot).
	RingEvents  int64
	RingSkipped int64
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Sent: c.sent.Load(), Dropped: c.dropped.Load(), RingEvents: c.ringEvents.Load(), RingSkipped: c.ringSkipped.Load()}
}

// bell rings r's bell: send, and once more when the send failed for an
// earlier datagram's refusal — connected UDP reports the refusal of a
// datagram sent while nobody listened (before the extension bound its
// port) on the next send, which it then does not send, and a ring whose
// bells are all lost is read only when its invocation fails or at
// SHUTDOWN. Events datagrams are not sent twice: their loss is counted.
func (c *Client) bell(r *ring, yields int) { c.transmit(r.bell, yields, true) }

// send hands one datagram to the kernel without waiting: on Linux,
// MSG_DONTWAIT on a non-blocking socket returns EAGAIN instead of sleeping
// when the buffer is full.
// yields > 0 gives the reader that many scheduler yields to make room before
// the datagram is dropped (used for the end event, the one that decides
// whether a stream counts as complete); it never sleeps.
func (c *Client) send(b []byte, yields int) bool { return c.transmit(b, yields, false) }

// transmit is send; retryRefused: once more after a send that failed for
// an earlier datagram's refusal (bell says why only bells do).
func (c *Client) transmit(b []byte, yields int, retryRefused bool) bool {
	if c == nil || c.closed.Load() {
		return false
	}
	var err error
	for {
		err = c.sock.send(b)
		if interrupted(err) {
			continue
		}
		if retryRefused && refused(err) {
			retryRefused = false
			continue
		}
		if full(err) && yields > 0 {
			yields--
			runtime.Gosched()
			continue
		}
		break
	}
	if err != nil {
		c.dropped.Add(1)
		return false
	}
	c.sent.Add(1)
	return true
}

// Package client records a Lambda response stream for the streamlens extension.
//
// A function wraps its response writer in a Stream; every chunk written through
// it becomes an event sent to the extension over a datagram socket. Chunk
// events share datagrams, up to STREAMLENS_COALESCE (8) at a time: the
// start, the first chunk and the end are sent at once. Sending never blocks and never
// fails the stream: a datagram the kernel will not take at once (extension
// absent, socket buffer full) is dropped and counted, and the count travels in
// the stream's end event.
package client

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

// EnvAddr names the variable holding the extension's address.
const EnvAddr = "STREAMLENS_ADDR"

// EnvCoalesce names the variable holding how many chunk events may share a
// datagram (1: one datagram per event).
const EnvCoalesce = "STREAMLENS_COALESCE"

// DefaultCoalesce is how many chunk events share a datagram unless
// STREAMLENS_COALESCE says otherwise.
const DefaultCoalesce = 8

// Client owns the datagram socket. It is safe for concurrent use; create one per
// process (at init, outside the handler) and share it.
type Client struct {
	fd       int
	to       unix.Sockaddr // nil for a connected socket
	sent     atomic.Int64
	dropped  atomic.Int64
	closed   atomic.Bool
	coalesce int // chunk events per datagram at most; 0 means DefaultCoalesce
}

// SetCoalesce sets how many chunk events may share a datagram (1 to 32; 1
// sends every event on its own). Call it before the client is shared.
func (c *Client) SetCoalesce(n int) {
	if c != nil {
		c.coalesce = min(max(n, 1), 32)
	}
}

func (c *Client) coalesceN() int {
	if c == nil || c.coalesce == 0 {
		return DefaultCoalesce
	}
	return c.coalesce
}

// New opens a non-blocking datagram socket towards addr (see protocol.ParseAddr).
// It does not need the extension to be running.
func New(addr string) (*Client, error) {
	a, err := protocol.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("streamlens client: %w", err)
	}
	if a.Network == "unixgram" {
		// Unconnected, with the address on every send: a unix socket that does not
		// exist yet (extension not started) must not make New fail.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("streamlens client: socket: %w", err)
		}
		return &Client{fd: fd, to: &unix.SockaddrUnix{Name: a.Path}}, nil
	}
	// Connected UDP, so that a dead listener shows up as ECONNREFUSED and is
	// counted instead of vanishing.
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a.UDP.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(a.UDP.Port()), Addr: a.UDP.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(a.UDP.Port()), Addr: a.UDP.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("streamlens client: socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("streamlens client: connect %s: %w", a, err)
	}
	return &Client{fd: fd}, nil
}

// FromEnv is New with STREAMLENS_ADDR (default protocol.DefaultAddr).
func FromEnv() (*Client, error) {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		addr = protocol.DefaultAddr
	}
	c, err := New(addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvAddr, err)
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

// Close releases the socket. Streams still open keep writing their response;
// their events are counted as dropped.
func (c *Client) Close() error {
	if c == nil || c.closed.Swap(true) {
		return nil
	}
	return unix.Close(c.fd)
}

// Stats are the client's counters since New.
type Stats struct {
	Sent    int64 // datagrams the kernel accepted
	Dropped int64 // datagrams refused or not sent
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Sent: c.sent.Load(), Dropped: c.dropped.Load()}
}

// send hands one datagram to the kernel without waiting: MSG_DONTWAIT on a
// non-blocking socket returns EAGAIN instead of sleeping when the buffer is full.
// yields > 0 gives the reader that many scheduler yields to make room before
// the datagram is dropped (used for the end event, the one that decides
// whether a stream counts as complete); it never sleeps.
func (c *Client) send(b []byte, yields int) bool {
	if c == nil || c.closed.Load() {
		return false
	}
	var err error
	for {
		if c.to == nil {
			err = unix.Send(c.fd, b, unix.MSG_DONTWAIT)
		} else {
			err = unix.Sendto(c.fd, b, unix.MSG_DONTWAIT, c.to)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) && yields > 0 {
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

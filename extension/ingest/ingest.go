// Package ingest reads the function's event datagrams (UDP or unix datagram
// socket) and hands each to an apply function, under the caller's lock
// (socket_linux.go), and decodes them into events at that edge (Events).
// The extension runs on Linux; elsewhere Listen is a stub that receives
// nothing (socket_other.go), so that the tree builds on any system.
package ingest

import (
	"errors"
	"fmt"
	"sync"

	"github.com/streamlens/streamlens/protocol"
)

// Errors for an address Listen cannot use, so that a caller can tell them
// from other failures (errors.Is) and degrade (ListenFallback): ErrAddrInUse
// (something is at the socket path, another process holds the UDP port) is
// also ErrAddrUnusable, which covers the rest (a socket directory that is
// not private, an IP that is not this machine's, no permission).
var (
	ErrAddrUnusable = errors.New("event address unusable")
	ErrAddrInUse    = fmt.Errorf("%w: in use", ErrAddrUnusable)
)

// ListenFallback is Listen for a caller that degrades instead of failing
// (STREAMLENS_STRICT off). When a is unusable (ErrAddrUnusable) it returns,
// with Listen's error for the caller to report (stderr and a metric), a
// socket that receives nothing: Drain returns at once, KernelDrops is 0,
// Close does nothing. The function then runs as it would without
// streamlens, with no stream metrics.
//
// It tries no other address on purpose. The function's client sends to the
// configured address (the same STREAMLENS_ADDR): a socket bound anywhere
// else — another port, another path — would receive nothing either, and
// would hide the misconfiguration behind metrics that merely stop. Any other
// error is returned as Listen returns it, with a nil socket.
func ListenFallback(a protocol.Addr, mu sync.Locker, apply func(b []byte, size int)) (*Socket, error) {
	in, err := Listen(a, mu, apply)
	if err != nil && errors.Is(err, ErrAddrUnusable) {
		done := make(chan struct{})
		close(done)
		return &Socket{mu: mu, done: done}, err
	}
	return in, err
}

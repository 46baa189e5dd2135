//go:build !linux

package ingest

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/streamlens/streamlens/protocol"
)

// Socket is a stub outside Linux, where Lambda runs the extension: it
// receives nothing. It exists so that the tree builds on a contributor's
// macOS or Windows machine.
type Socket struct {
	conn net.PacketConn // always nil here
	mu   sync.Locker
	done chan struct{}
}

// Listen fails with ErrAddrUnusable: the reader needs Linux (recvmmsg,
// SO_MEMINFO). ListenFallback turns that into a socket that receives
// nothing, as for any unusable address.
func Listen(a protocol.Addr, mu sync.Locker, apply func(b []byte, size int)) (*Socket, error) {
	return nil, fmt.Errorf("listen %s: %w: the event reader runs on Linux only", a, ErrAddrUnusable)
}

// LocalAddr is nil: nothing is bound.
func (in *Socket) LocalAddr() net.Addr { return nil }

// KernelDrops is 0: nothing is received.
func (in *Socket) KernelDrops() uint64 { return 0 }

// Drain returns at once: nothing is received.
func (in *Socket) Drain(until time.Time) {}

// Close does nothing: nothing is bound.
func (in *Socket) Close() {}

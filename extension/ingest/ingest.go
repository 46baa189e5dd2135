// Package ingest reads the function's event datagrams (UDP or unix datagram
// socket) and hands each to an apply function, under the caller's lock.
package ingest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

// Socket reads datagrams from the function and applies them. Every read and
// its application happen under mu, as one step: "the socket is empty" under
// mu then means "everything sent before is applied".
type Socket struct {
	conn  net.PacketConn
	rc    syscall.RawConn
	fd    int
	mu    sync.Locker
	apply func(b []byte, size int)
	rbuf  *batch // reader goroutine's buffers
	dbuf  *batch // drain's buffers (drain runs on another goroutine)
	done  chan struct{}
}

// Listen binds a and starts the reader goroutine. apply gets each datagram
// (b, valid until it returns) and its real size, which exceeds len(b) when
// the datagram was longer than protocol.MaxDatagram; it runs with mu held.
func Listen(a protocol.Addr, mu sync.Locker, apply func(b []byte, size int)) (*Socket, error) {
	var pc net.PacketConn
	var err error
	switch a.Network {
	case "unixgram":
		if err := privateDir(filepath.Dir(a.Path)); err != nil {
			return nil, err
		}
		_ = os.Remove(a.Path) // a stale socket from a previous extension process
		pc, err = net.ListenPacket("unixgram", a.Path)
		if err == nil {
			// Only the sandbox user may write events.
			err = os.Chmod(a.Path, 0o600)
		}
	default:
		pc, err = net.ListenPacket("udp", a.UDP.String())
	}
	if err != nil {
		if pc != nil {
			pc.Close()
		}
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		pc.Close()
		return nil, errors.New("listen: socket exposes no raw connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		pc.Close()
		return nil, err
	}
	in := &Socket{conn: pc, rc: rc, mu: mu, apply: apply, rbuf: newBatch(), dbuf: newBatch(), done: make(chan struct{})}
	_ = rc.Control(func(fd uintptr) {
		in.fd = int(fd)
		// A bigger receive buffer absorbs a burst while the extension is busy
		// flushing; the kernel caps it at net.core.rmem_max.
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
	go in.run()
	return in, nil
}

// LocalAddr is the bound address (useful with port 0).
func (in *Socket) LocalAddr() net.Addr { return in.conn.LocalAddr() }

// batchSize is how many datagrams one read takes at most: a burst of chunk
// events is read with one system call instead of one per datagram.
const batchSize = 16

// batch holds the buffers of one recvmmsg call.
type batch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
}

func newBatch() *batch {
	b := &batch{hdrs: make([]unix.Mmsghdr, batchSize), iovs: make([]unix.Iovec, batchSize), bufs: make([][]byte, batchSize)}
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, protocol.MaxDatagram)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(protocol.MaxDatagram)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	return b
}

// recv reads the datagrams waiting on fd, up to batchSize, without blocking.
// With MSG_TRUNC each message's length is the datagram's real length, which
// can exceed its buffer.
func (b *batch) recv(fd int) (int, error) {
	for i := range b.hdrs {
		b.hdrs[i].Len, b.hdrs[i].Hdr.Flags = 0, 0
	}
	// The raw syscall: the sender's address is not needed, so no sockaddr is
	// allocated or copied. RawSyscall6, not Syscall6: MSG_DONTWAIT never
	// blocks, and Syscall6's entersyscall wakes the Go runtime's sysmon
	// thread from its deep sleep every time the extension wakes for a
	// datagram — one more thread woken, and a 20 µs poll, per datagram.
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)),
		uintptr(unix.MSG_DONTWAIT|unix.MSG_TRUNC), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// apply applies the n datagrams the last recv read.
func (b *batch) apply(n int, apply func([]byte, int)) {
	for i := 0; i < n; i++ {
		size := int(b.hdrs[i].Len)
		apply(b.bufs[i][:min(size, len(b.bufs[i]))], size)
	}
}

// run is the reader goroutine. It reads and applies under the lock, a batch
// at a time, and waits in the runtime poller when the socket is empty.
func (in *Socket) run() {
	defer close(in.done)
	_ = in.rc.Read(func(fd uintptr) bool {
		for {
			in.mu.Lock()
			n, err := in.rbuf.recv(int(fd))
			if err != nil {
				in.mu.Unlock()
				if err == unix.EINTR {
					continue
				}
				// EAGAIN: wait for readability. Anything else: also wait; a
				// closed socket ends rc.Read itself.
				return false
			}
			in.rbuf.apply(n, in.apply)
			in.mu.Unlock()
			if n < batchSize {
				// recvmmsg stops at an empty queue: nothing was waiting, so
				// wait for readability now rather than spend a system call
				// on its EAGAIN. A datagram that came meanwhile has left the
				// poller's ready mark, and the wait returns at once.
				return false
			}
		}
	})
}

// Drain applies the datagrams already in the socket, until it is empty or
// until passes. When it returns early the rest is read by the reader
// goroutine; when it returns because the socket is empty, every event sent
// before the call has been applied (loopback delivery completes inside the
// sender's sendto). The lock is taken per batch, so the telemetry listener
// and the reader are never shut out by a flood.
func (in *Socket) Drain(until time.Time) {
	for i := 0; ; i++ {
		if i%4 == 3 && !time.Now().Before(until) {
			return
		}
		in.mu.Lock()
		n, err := in.dbuf.recv(in.fd)
		if err == nil {
			in.dbuf.apply(n, in.apply)
		}
		in.mu.Unlock()
		if err != nil && err != unix.EINTR {
			return
		}
	}
}

// Close closes the socket and waits for the reader goroutine.
func (in *Socket) Close() {
	in.conn.Close()
	<-in.done
}

// privateDir makes sure dir exists, belongs to this user and is closed to
// everyone else (0700): a socket in a shared directory could be replaced or
// fed by another user of the sandbox.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm()&0o077 != 0 || (ok && int(st.Uid) != os.Getuid()) {
		return fmt.Errorf("socket directory %s must be private to this user (0700), it is %v: put the socket in a directory of its own", dir, fi.Mode().Perm())
	}
	return nil
}

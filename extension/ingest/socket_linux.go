//go:build linux

package ingest

import (
	"errors"
	"fmt"
	"io/fs"
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
	conn  net.PacketConn // nil: the socket ListenFallback gives when the address is unusable
	rc    syscall.RawConn
	fd    int
	mu    sync.Locker
	apply func(b []byte, size int)
	rbuf  *batch // reader goroutine's buffers
	dbuf  *batch // drain's buffers (drain runs on another goroutine)
	done  chan struct{}
	path  string // the unix socket file this socket bound, removed by Close
	file  fileID // and its identity, so that Close removes only that file

	dropsMu   sync.Mutex
	drops     uint64 // kernel drops so far, extended past the kernel's 32 bits
	lastDrops uint32 // the kernel's counter when last read
}

// fileID is a file's identity: a path can be made to name another file.
type fileID struct{ dev, ino uint64 }

// Listen binds a and starts the reader goroutine. apply gets each datagram
// (b, valid until it returns) and its real size, which exceeds len(b) when
// the datagram was longer than protocol.MaxDatagram; it runs with mu held.
//
// A unix socket path must not exist, or be a dead socket (one nobody
// receives on: left by an extension process killed at a reset), which is
// replaced. Anything else there (a file, a live program's socket) was not
// created by this extension and is never removed or replaced; Listen fails
// with ErrAddrInUse instead. Close removes the socket file Listen created.
func Listen(a protocol.Addr, mu sync.Locker, apply func(b []byte, size int)) (*Socket, error) {
	var pc net.PacketConn
	var err error
	var id fileID
	switch a.Network {
	case "unixgram":
		if err := privateDir(filepath.Dir(a.Path)); err != nil {
			return nil, fmt.Errorf("listen %s: %w: %w", a, ErrAddrUnusable, err)
		}
		if fi, err := os.Lstat(a.Path); err == nil && !deadSocket(a.Path, fi) {
			return nil, fmt.Errorf("listen %s: %w: a %s is already there, and streamlens removes no file it did not create (remove it if nothing uses it, or set another path)",
				a, ErrAddrInUse, kind(fi))
		} else if err == nil {
			// A socket nobody receives on: what an extension process killed
			// at a reset leaves behind (the environment's /tmp outlives it).
			// Refusing it would turn events off for the environment's life.
			_ = os.Remove(a.Path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("listen %s: %w: %w", a, ErrAddrUnusable, err)
		}
		// bind creates the file, and fails if one appeared meanwhile: it
		// never replaces one.
		pc, err = net.ListenPacket("unixgram", a.Path)
		if err == nil {
			id, err = identify(a.Path)
		}
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
			removeIf(a.Path, id) // the socket file it made, if any
		}
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			err = fmt.Errorf("%w: %w (another process holds it)", ErrAddrInUse, err)
		case errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EACCES) || errors.Is(err, fs.ErrPermission):
			err = fmt.Errorf("%w: %w", ErrAddrUnusable, err)
		}
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		pc.Close()
		removeIf(a.Path, id)
		return nil, errors.New("listen: socket exposes no raw connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		pc.Close()
		removeIf(a.Path, id)
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	in := &Socket{conn: pc, rc: rc, mu: mu, apply: apply, rbuf: newBatch(), dbuf: newBatch(), done: make(chan struct{})}
	if a.Network == "unixgram" {
		in.path, in.file = a.Path, id
	}
	_ = rc.Control(func(fd uintptr) {
		in.fd = int(fd)
		// A bigger receive buffer absorbs a burst while the extension is busy
		// flushing; the kernel caps it at net.core.rmem_max.
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
	go in.run()
	return in, nil
}

// LocalAddr is the bound address (useful with port 0); nil for the socket
// ListenFallback gives when the address is unusable.
func (in *Socket) LocalAddr() net.Addr {
	if in.conn == nil {
		return nil
	}
	return in.conn.LocalAddr()
}

// KernelDrops is how many datagrams the kernel dropped on this socket since
// it was bound, because its receive buffer was full (the reader fell behind
// a burst). It is read on demand with one getsockopt(SO_MEMINFO), not from
// a control message on every datagram (SO_RXQ_OVFL): the read path stays
// one recvmmsg per batch. A unix datagram socket never drops (its sender
// waits or is refused, and the client counts that), so it stays 0 there;
// it also stays 0 on a kernel whose SO_MEMINFO lacks the drop count.
func (in *Socket) KernelDrops() uint64 {
	if in.conn == nil {
		return 0
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(mem))
	var errno syscall.Errno
	if err := in.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil || errno != 0 || size < 4*(unix.SK_MEMINFO_DROPS+1) {
		in.dropsMu.Lock()
		defer in.dropsMu.Unlock()
		return in.drops // closed, or not told: what was seen last
	}
	in.dropsMu.Lock()
	defer in.dropsMu.Unlock()
	// The kernel's counter is 32 bits and wraps; the difference since the
	// last read is right across a wrap (uint32 arithmetic) as long as fewer
	// than 4 billion drops come between two reads.
	cur := mem[unix.SK_MEMINFO_DROPS]
	in.drops += uint64(cur - in.lastDrops)
	in.lastDrops = cur
	return in.drops
}

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
	if in.conn == nil {
		return
	}
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

// Close closes the socket, waits for the reader goroutine and removes the
// unix socket file Listen created — if the path still names that file.
func (in *Socket) Close() {
	if in.conn == nil {
		return
	}
	in.conn.Close()
	<-in.done
	if in.path != "" {
		removeIf(in.path, in.file)
	}
}

// identify returns the identity of the file at path (not following a link).
func identify(path string) (fileID, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("%s: no file identity", path)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// removeIf removes path when it is still the file id: a file put in its
// place since is someone else's.
func removeIf(path string, id fileID) {
	if path == "" || id == (fileID{}) {
		return
	}
	if now, err := identify(path); err == nil && now == id {
		_ = os.Remove(path)
	}
}

// deadSocket reports whether the file at path is a unix datagram socket that
// nobody receives on (connecting is refused): a dead socket, not a live
// program's, and not a file of any other kind.
func deadSocket(path string, fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeSocket == 0 {
		return false
	}
	c, err := net.Dial("unixgram", path)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// kind names what a file is, for the error that says it is in the way.
func kind(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "file"
	}
	return "file"
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

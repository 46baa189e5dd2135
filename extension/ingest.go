package extension

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

// ingest reads datagrams from the function and applies them to the table.
type ingest struct {
	conn  net.PacketConn
	rc    syscall.RawConn
	fd    int
	table *Table
	rbuf  []byte // reader goroutine's buffer
	dbuf  []byte // drain's buffer (drain runs on another goroutine)
	done  chan struct{}
}

func listenIngest(a protocol.Addr, t *Table) (*ingest, error) {
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
	in := &ingest{conn: pc, rc: rc, table: t, rbuf: make([]byte, protocol.MaxDatagram), dbuf: make([]byte, protocol.MaxDatagram), done: make(chan struct{})}
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
func (in *ingest) LocalAddr() net.Addr { return in.conn.LocalAddr() }

// recv reads one datagram without blocking. n is the datagram's real length
// (MSG_TRUNC), which can exceed len(buf).
func recv(fd int, buf []byte) (int, error) {
	// The raw syscall, not unix.Recvfrom: that one allocates a sockaddr for the
	// sender on every call, and we do not need to know the sender.
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		uintptr(unix.MSG_DONTWAIT|unix.MSG_TRUNC), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// run is the reader goroutine. It reads and applies under the table lock, one
// datagram at a time, and waits in the runtime poller when the socket is empty.
func (in *ingest) run() {
	defer close(in.done)
	t := in.table
	_ = in.rc.Read(func(fd uintptr) bool {
		for {
			t.mu.Lock()
			n, err := recv(int(fd), in.rbuf)
			if err != nil {
				t.mu.Unlock()
				if err == unix.EINTR {
					continue
				}
				// EAGAIN: wait for readability. Anything else: also wait; a
				// closed socket ends rc.Read itself.
				return false
			}
			t.applyDatagram(in.rbuf[:min(n, len(in.rbuf))], n)
			t.mu.Unlock()
		}
	})
}

// drain applies the datagrams already in the socket, until it is empty or
// until passes. When it returns early the rest is read by the reader
// goroutine; when it returns because the socket is empty, every event sent
// before the call has been applied (loopback delivery completes inside the
// sender's sendto). The lock is taken per datagram, so the telemetry listener
// and the reader are never shut out by a flood.
func (in *ingest) drain(until time.Time) {
	t := in.table
	for i := 0; ; i++ {
		if i%64 == 63 && !time.Now().Before(until) {
			return
		}
		t.mu.Lock()
		n, err := recv(in.fd, in.dbuf)
		if err == nil {
			t.applyDatagram(in.dbuf[:min(n, len(in.dbuf))], n)
		}
		t.mu.Unlock()
		if err != nil && err != unix.EINTR {
			return
		}
	}
}

func (in *ingest) close() {
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

//go:build linux && !streamlens_portable

package client

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// sock is a non-blocking datagram socket: a send never sleeps, and costs one
// system call and no allocation.
type sock struct {
	fd int
	to unix.Sockaddr // a unix socket's address; nil for UDP (always connected)
	// unix: connected to `to` once its socket exists. A connected send skips
	// the path lookup of every sendto (about half the cost of a send); until
	// then, and after the peer went away (an extension restart binds a new
	// socket under the same path), sends carry the address and a connect is
	// tried again every reconnectEvery sends.
	connected *atomic.Bool
	sends     *atomic.Uint32
}

// reconnectEvery spaces the connect attempts of an unconnected unix socket:
// one system call in 64 sends at most, while the extension is absent.
const reconnectEvery = 64

func openSocket(a wire.Addr) (sock, error) {
	if a.Network == "unixgram" {
		// Not necessarily connected yet: a unix socket that does not exist
		// (extension not started) must not make New fail.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return sock{}, fmt.Errorf("socket: %w", err)
		}
		s := sock{fd: fd, to: &unix.SockaddrUnix{Name: a.Path}, connected: new(atomic.Bool), sends: new(atomic.Uint32)}
		s.connected.Store(unix.Connect(fd, s.to) == nil)
		return s, nil
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
		return sock{}, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return sock{}, fmt.Errorf("connect %s: %w", a, err)
	}
	return sock{fd: fd}, nil
}

func (s sock) send(b []byte) error {
	if s.to == nil {
		return unix.Send(s.fd, b, unix.MSG_DONTWAIT)
	}
	if s.connected.Load() {
		err := unix.Send(s.fd, b, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.ECONNREFUSED) {
			// The peer's socket is gone; a new one may exist under the path.
			s.connected.Store(false)
			return unix.Sendto(s.fd, b, unix.MSG_DONTWAIT, s.to)
		}
		return err
	}
	if s.sends.Add(1)%reconnectEvery == 1 && unix.Connect(s.fd, s.to) == nil {
		s.connected.Store(true)
		return unix.Send(s.fd, b, unix.MSG_DONTWAIT)
	}
	return unix.Sendto(s.fd, b, unix.MSG_DONTWAIT, s.to)
}

func (s sock) close() error { return unix.Close(s.fd) }

func interrupted(err error) bool { return errors.Is(err, unix.EINTR) }

// refused reports a send that failed for an earlier datagram's refusal.
func refused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }

// full reports a send refused because the socket buffer is full.
func full(err error) bool { return errors.Is(err, unix.EAGAIN) }

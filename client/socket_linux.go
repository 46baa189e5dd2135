//go:build linux && !streamlens_portable

package client

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

// sock is a non-blocking datagram socket: a send never sleeps, and costs one
// system call and no allocation.
type sock struct {
	fd int
	to unix.Sockaddr // nil for a connected socket
}

func openSocket(a protocol.Addr) (sock, error) {
	if a.Network == "unixgram" {
		// Unconnected, with the address on every send: a unix socket that does not
		// exist yet (extension not started) must not make New fail.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return sock{}, fmt.Errorf("socket: %w", err)
		}
		return sock{fd: fd, to: &unix.SockaddrUnix{Name: a.Path}}, nil
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
	return unix.Sendto(s.fd, b, unix.MSG_DONTWAIT, s.to)
}

func (s sock) close() error { return unix.Close(s.fd) }

func interrupted(err error) bool { return errors.Is(err, unix.EINTR) }

// full reports a send refused because the socket buffer is full.
func full(err error) bool { return errors.Is(err, unix.EAGAIN) }

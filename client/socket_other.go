//go:build !linux || streamlens_portable

package client

import (
	"net"
	"sync"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// sock is the portable datagram socket of systems other than Linux — where
// Lambda never runs, but a developer runs `go test` on a function that links
// the client. Events go out the same; a send is an ordinary write, which for
// a datagram does not wait for a reader either, and a unix socket is dialled
// on first use, since it may not exist yet.
type sock struct {
	network, addr string
	mu            *sync.Mutex
	conn          *net.Conn
}

func openSocket(a wire.Addr) (sock, error) {
	s := sock{network: "udp", addr: a.String(), mu: &sync.Mutex{}, conn: new(net.Conn)}
	if a.Network == "unixgram" {
		s.network, s.addr = "unixgram", a.Path
		return s, nil
	}
	c, err := net.Dial("udp", s.addr)
	if err != nil {
		return sock{}, err
	}
	*s.conn = c
	return s, nil
}

func (s sock) send(b []byte) error {
	s.mu.Lock()
	c := *s.conn
	if c == nil {
		var err error
		if c, err = net.Dial(s.network, s.addr); err != nil {
			s.mu.Unlock()
			return err
		}
		*s.conn = c
	}
	s.mu.Unlock()
	_, err := c.Write(b)
	return err
}

func (s sock) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := *s.conn; c != nil {
		return c.Close()
	}
	return nil
}

func interrupted(error) bool { return false }

func full(error) bool { return false }

// refused: the portable socket reports no earlier datagram's refusal worth
// a retry.
func refused(error) bool { return false }

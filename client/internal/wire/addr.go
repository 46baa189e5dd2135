package wire

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultAddr is where the extension listens unless STREAMLENS_ADDR says
// otherwise: UDP on loopback, because Node's dgram can only do UDP.
const DefaultAddr = "127.0.0.1:8126"

// Addr is a parsed STREAMLENS_ADDR.
type Addr struct {
	Network string         // "udp" or "unixgram"
	UDP     netip.AddrPort // for udp
	Path    string         // for unixgram
}

func (a Addr) String() string {
	if a.Network == "unixgram" {
		return "unix:" + a.Path
	}
	return a.UDP.String()
}

// ParseAddr accepts "IP:port" (UDP; "localhost" means 127.0.0.1) or
// "unix:/absolute/path" (a unix datagram socket). Client and extension parse the
// variable with the same function so they cannot disagree about its meaning.
func ParseAddr(s string) (Addr, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") || len(path) > 107 {
			return Addr{}, fmt.Errorf("%q: a unix socket needs an absolute path of at most 107 bytes", s)
		}
		return Addr{Network: "unixgram", Path: path}, nil
	}
	s2 := strings.TrimPrefix(s, "udp:")
	if host, port, ok := strings.Cut(s2, ":"); ok && host == "localhost" {
		s2 = "127.0.0.1:" + port
	}
	ap, err := netip.ParseAddrPort(s2)
	if err != nil || ap.Port() == 0 {
		return Addr{}, fmt.Errorf("%q: want IP:port (e.g. %s) or unix:/path", s, DefaultAddr)
	}
	return Addr{Network: "udp", UDP: ap}, nil
}

//go:build !linux || streamlens_portable

package client

import "errors"

// ring is Linux's (ring_linux.go): elsewhere events go by datagram.
type ring struct{ bell []byte }

var errNoRingDir = errors.New("no ring directory")

func openRing(string) (*ring, error) {
	return nil, errors.New("rings are Linux's: events go by datagram")
}

func (r *ring) usable() bool                         { return false }
func (r *ring) reserve() (idx, used uint64, ok bool) { return 0, 0, false }
func (r *ring) payload(uint64) []byte                { return nil }
func (r *ring) commit(uint64, int)                   {}
func (r *ring) halfFull(uint64) bool                 { return false }

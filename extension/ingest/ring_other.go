//go:build !linux

package ingest

import "errors"

// Rings is Linux's (ring_linux.go); elsewhere there are none.
type Rings struct{}

// ErrRingDirUnusable: see ring_linux.go.
var ErrRingDirUnusable = errors.New("ring directory unusable")

// OpenRings fails: rings are Linux's.
func OpenRings(dir string) (*Rings, error) {
	return nil, errors.New("rings are Linux's")
}

func (rs *Rings) Dir() string                               { return "" }
func (rs *Rings) Bell(name string, line func([]byte))       {}
func (rs *Rings) Drain(final, scan bool, line func([]byte)) {}
func (rs *Rings) TakeCounts() (torn, lost, refused int64)   { return 0, 0, 0 }
func (rs *Rings) Close()                                    {}

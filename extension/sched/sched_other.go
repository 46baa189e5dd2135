//go:build !linux

package sched

// Idle is not available here: Lambda runs the extension on Linux only.
func Idle() (int, error) { return 0, ErrUnsupported }

// Policy is not available here.
func Policy(pid, tid int) (int, error) { return 0, ErrUnsupported }

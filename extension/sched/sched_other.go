//go:build !linux

package sched

// Idle is not available here: Lambda runs the extension on Linux only.
func Idle() (int, error) { return 0, ErrUnsupported }

// Policies is not available here.
func Policies(pid int) (map[int]int, error) { return nil, ErrUnsupported }

// Package sched lowers the extension's claim on the CPU it shares with the
// function.
//
// A Lambda function and its extensions share the environment's CPU (a
// 128 MB function has about 7 % of one core). The extension's work is
// never more urgent than the function's: under SCHED_IDLE the kernel runs
// the extension's threads only when no thread of normal priority wants the
// CPU, and a waking function thread preempts them at once. The INVOKE that
// wakes the extension at the very moment the function starts its
// invocation then no longer delays the function's first byte.
//
// SCHED_IDLE is not starvation: the kernel still gives idle threads a
// small share (a weight of 3 against 1024) when normal ones keep every CPU
// busy, so the extension's deadline timers still run under a function that
// never sleeps.
package sched

import "errors"

// ErrUnsupported is Idle on a system without SCHED_IDLE.
var ErrUnsupported = errors.New("SCHED_IDLE is not supported on this system")

package sched

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

const schedIdle = 5 // SCHED_IDLE, linux/sched.h

// Idle puts every thread of the process under SCHED_IDLE and returns how
// many it set. A thread inherits its creator's policy, so the threads the Go
// runtime starts later are idle too; the listing is read again until it
// holds no thread not yet set, for one started while it was read.
func Idle() (int, error) {
	done := map[int]bool{}
	for range 10 {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return len(done), fmt.Errorf("sched: %w", err)
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			var param [4]byte // struct sched_param{sched_priority: 0}
			_, _, errno := syscall.Syscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid), schedIdle, uintptr(unsafe.Pointer(&param[0])))
			switch errno {
			case 0:
			case syscall.ESRCH: // the thread ended meanwhile
			case syscall.EINVAL:
				return len(done), ErrUnsupported
			default:
				return len(done), fmt.Errorf("sched: thread %d: %w", tid, errno)
			}
			done[tid], fresh = true, fresh+1
		}
		if fresh == 0 {
			break
		}
	}
	return len(done), nil
}

// Policies is the scheduling policy (0 normal, 5 SCHED_IDLE) of every
// thread of process pid, as /proc shows it; a thread that ended while they
// were read is left out.
func Policies(pid int) (map[int]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sched: %w", err)
	}
	out := make(map[int]int, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(dir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // ended meanwhile
		}
		if p, err := statPolicy(b); err == nil {
			out[tid] = p
		}
	}
	return out, nil
}

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
		tids, err := threads(os.Getpid())
		if err != nil {
			return len(done), err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
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
	tids, err := threads(pid)
	if err != nil {
		return nil, err
	}
	out := make(map[int]int, len(tids))
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		if err != nil {
			continue // ended meanwhile
		}
		if p, err := statPolicy(b); err == nil {
			out[tid] = p
		}
	}
	return out, nil
}

// threads lists the thread ids of process pid.
func threads(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, fmt.Errorf("sched: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

//go:build unix

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lambdaFullCoreMB is the memory size at which a Lambda function gets one
// full vCPU; CPU scales linearly with memory below it.
const lambdaFullCoreMB = 1769

const cfsPeriodUs = 100_000

// cgroup holds the processes of one environment, as its own microVM does on
// Lambda: they compete for CPU with each other, and the environment as a
// whole competes with the rest of the host. Without it a process that runs
// under SCHED_IDLE (as streamlens does) would yield to every busy process of
// the machine, not only to the function, which no Lambda environment sees.
//
// Capped, it also limits them like a Lambda function of a given memory size:
// memoryMB of memory and memoryMB/1769 of a core, shared by the runtime and
// every extension. cgroup v2 where it is the only hierarchy, else the v1 cpu
// (and, capped, memory) controllers.
type cgroup struct {
	dirs    []string // one per hierarchy; processes go into each
	capped  bool
	quotaUs int64
	memory  int64
}

// cpuQuotaUs is the CFS quota per 100 ms period for a function of memoryMB.
func cpuQuotaUs(memoryMB int) int64 {
	q := int64(memoryMB) * cfsPeriodUs / lambdaFullCoreMB
	return max(q, 1000) // the kernel's minimum is 1 ms
}

func newCgroup(memoryMB int, capped bool) (*cgroup, error) {
	name := fmt.Sprintf("streamlens-sandbox-%d-%s", os.Getpid(), randomHex(4))
	cg := &cgroup{capped: capped, quotaUs: cpuQuotaUs(memoryMB), memory: int64(memoryMB) << 20}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup", cgroupOf("self", "", "0"), name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
		cg.dirs = []string{dir}
		var err error
		if capped {
			err = errors.Join(
				os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", cg.quotaUs, cfsPeriodUs)), 0),
				os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(cg.memory, 10)), 0),
			)
		} else if _, serr := os.Stat(filepath.Join(dir, "cpu.weight")); serr != nil {
			// A group without the cpu controller schedules its processes
			// among the host's all the same.
			err = fmt.Errorf("the cpu controller is not enabled for %s: %w", filepath.Dir(dir), serr)
		}
		if err != nil {
			cg.remove()
			return nil, fmt.Errorf("cgroup v2 %s: %w", dir, err)
		}
		return cg, nil
	}
	ctls := []string{"cpu"}
	if capped {
		ctls = append(ctls, "memory")
	}
	for _, ctl := range ctls {
		dir := filepath.Join("/sys/fs/cgroup", ctl, cgroupOf("self", ctl, ""), name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			cg.remove()
			return nil, fmt.Errorf("cgroup v1 %s: %w", ctl, err)
		}
		cg.dirs = append(cg.dirs, dir)
	}
	if !capped {
		return cg, nil
	}
	if err := errors.Join(
		os.WriteFile(filepath.Join(cg.dirs[0], "cpu.cfs_period_us"), []byte(strconv.Itoa(cfsPeriodUs)), 0),
		os.WriteFile(filepath.Join(cg.dirs[0], "cpu.cfs_quota_us"), []byte(strconv.FormatInt(cg.quotaUs, 10)), 0),
		os.WriteFile(filepath.Join(cg.dirs[1], "memory.limit_in_bytes"), []byte(strconv.FormatInt(cg.memory, 10)), 0),
	); err != nil {
		cg.remove()
		return nil, fmt.Errorf("cgroup v1: %w", err)
	}
	return cg, nil
}

// cgroupOf is process pid's ("self": this one's) cgroup path in the
// hierarchy of controller ctl (v1), or of hierarchy id (v2: "0"); a new
// group of this process's nests under it.
func cgroupOf(pid, ctl, id string) string {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "/"
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if id != "" && parts[0] == id {
			return parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if ctl != "" && c == ctl {
				return parts[2]
			}
		}
	}
	return "/"
}

// add moves process pid (and the threads it has) into the group; what it
// starts later is born there.
func (cg *cgroup) add(pid int) error {
	var errs []error
	for _, d := range cg.dirs {
		errs = append(errs, os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0))
	}
	return errors.Join(errs...)
}

// remove deletes the groups; they must be empty (every process killed).
func (cg *cgroup) remove() {
	for _, d := range cg.dirs {
		_ = os.Remove(d)
	}
}

func (cg *cgroup) String() string {
	if !cg.capped {
		return "uncapped (" + strings.Join(cg.dirs, ", ") + ")"
	}
	return fmt.Sprintf("CPU %d µs per %d µs, memory %d MB (%s)", cg.quotaUs, cfsPeriodUs, cg.memory>>20, strings.Join(cg.dirs, ", "))
}

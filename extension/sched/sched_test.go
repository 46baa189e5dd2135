//go:build linux

package sched

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// threadPolicies is the policy of every thread of process pid.
func threadPolicies(t *testing.T, pid int) map[int]int {
	t.Helper()
	pols, err := Policies(pid)
	if err != nil {
		t.Fatal(err)
	}
	return pols
}

// TestIdleChild is the child of TestIdle: it sets its threads idle, starts
// more threads, and checks every one of them, old and new.
func TestIdleChild(t *testing.T) {
	if os.Getenv("SCHED_TEST_CHILD") == "" {
		t.Skip("run by TestIdle")
	}
	n, err := Idle()
	if err != nil || n < 2 {
		t.Fatalf("Idle() = %d, %v", n, err)
	}
	// Threads started afterwards: goroutines locked to threads of their own.
	var wg sync.WaitGroup
	hold := make(chan struct{})
	started := make(chan struct{}, 8)
	for range 8 {
		wg.Go(func() {
			runtime.LockOSThread()
			started <- struct{}{}
			<-hold
		})
	}
	for range 8 {
		<-started
	}
	pols := threadPolicies(t, os.Getpid())
	close(hold)
	wg.Wait()
	if len(pols) < n+4 {
		t.Errorf("%d threads after starting 8 locked goroutines, %d before", len(pols), n)
	}
	for tid, p := range pols {
		if p != schedIdle {
			t.Errorf("thread %d: policy %d, want SCHED_IDLE (%d)", tid, p, schedIdle)
		}
	}
}

// Idle sets every thread of the process, and the ones the runtime starts
// later inherit it. In a child process: the test binary's own threads stay
// as they are.
func TestIdle(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleChild$", "-test.v")
	cmd.Env = append(os.Environ(), "SCHED_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestIdleChild") {
		t.Fatalf("the child did not run its checks:\n%s", out)
	}
	// And this process, not set, is not idle: the check can tell.
	for tid, p := range threadPolicies(t, os.Getpid()) {
		if p == schedIdle {
			t.Errorf("thread %d of the parent is idle", tid)
		}
	}
}

func TestStatPolicy(t *testing.T) {
	line := "123 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 5 0 0 0\n"
	if p, err := statPolicy([]byte(line)); err != nil || p != 5 {
		t.Errorf("statPolicy = %d, %v; want 5", p, err)
	}
	for _, bad := range []string{"", "123 no paren", "1 (x) S 1 2"} {
		if _, err := statPolicy([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

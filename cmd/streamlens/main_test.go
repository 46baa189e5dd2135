package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain runs main itself when a test starts this binary as a helper
// process: the test then sees what the real program does.
func TestMain(m *testing.M) {
	switch os.Getenv("STREAMLENS_TEST_HELPER") {
	case "main":
		os.Args = []string{"streamlens"}
		main()
		os.Exit(0)
	case "write":
		// The control: a program that does not ignore SIGPIPE.
		_, _ = os.Stderr.WriteString("a write to a closed pipe\n")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// runWithClosedOutput runs this binary as helper with stdout and stderr
// pipes whose reading ends are closed, and returns how it ended.
func runWithClosedOutput(t *testing.T, helper string) *os.ProcessState {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // nobody reads: a write gets EPIPE (and SIGPIPE)
	defer w.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Not in a Lambda sandbox: main writes its usage to stderr and exits 2.
	cmd.Env = append(os.Environ(), "STREAMLENS_TEST_HELPER="+helper, "AWS_LAMBDA_RUNTIME_API=")
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState
}

// A closed stdout or stderr (the log stream gone) does not kill the
// extension: its write fails, and it goes on — here to the exit it chose.
func TestClosedOutputDoesNotKillTheExtension(t *testing.T) {
	// The control first: without the fix, this is how the write ends, so
	// the assertion below can fail.
	ps := runWithClosedOutput(t, "write")
	if ws, ok := ps.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
		t.Fatalf("control: a program writing to a closed pipe ended %v, not by SIGPIPE", ps)
	}
	ps = runWithClosedOutput(t, "main")
	if ws, ok := ps.Sys().(syscall.WaitStatus); !ok || ws.Signaled() || ws.ExitStatus() != 2 {
		t.Errorf("streamlens writing its usage to a closed stderr ended %v, want exit status 2", ps)
	}
}

// failAfter is an output that takes n writes, then fails like a closed pipe.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, syscall.EPIPE
	}
	f.n--
	return len(p), nil
}

// The decode test mode stops when its output is gone, rather than decode
// for nobody until it is killed (SIGPIPE no longer ends it).
func TestDecodeStopsWhenItsOutputIsGone(t *testing.T) {
	if err := decode(context.Background(), "127.0.0.1:0", &failAfter{}); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("the listening line failed: %v", err)
	}
	dir := t.TempDir()
	path := dir + "/d.sock"
	done := make(chan error, 1)
	go func() { done <- decode(context.Background(), "unix:"+path, &failAfter{n: 1}) }()
	// Sent until decode has bound its socket and read one: then it must stop.
	for {
		c, err := net.Dial("unixgram", path)
		if err == nil {
			_, _ = c.Write([]byte("garbage\n"))
			c.Close()
		}
		select {
		case err := <-done:
			if !errors.Is(err, syscall.EPIPE) {
				t.Errorf("an event line failed: %v", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

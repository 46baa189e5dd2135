//go:build unix

package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// proc is a function or extension process. Each runs in its own process group
// so freezing (SIGSTOP) and killing reach any children too.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func spawn(name, path string, env []string, log io.Writer) (*proc, error) {
	cmd := exec.Command(path)
	cmd.Env = env
	lw := &lineWriter{out: log}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lw.flush()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) signal(sig syscall.Signal) {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// kill stops p for good (a frozen process first gets SIGCONT, or SIGKILL
// would wait) and waits until it is gone.
func (p *proc) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// maxRSSKB is the process's peak resident set (VmHWM), as Lambda's
// maxMemoryUsedMB counts the whole sandbox.
func (p *proc) maxRSSKB() int64 {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// lineWriter forwards whole lines to a shared log, so the lines of the function
// and of the extensions interleave like in one CloudWatch log stream but are
// never cut into each other.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte
}

// syncWriter serialises the writes of all processes to the sandbox's log.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		_, _ = w.out.Write(w.buf[:i+1])
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		_, _ = w.out.Write(append(w.buf, '\n'))
		w.buf = nil
	}
}

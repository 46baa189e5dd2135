// Package logpipe writes to Lambda's log pipe (stdout, stderr) without ever
// blocking the caller: bounded in memory, drained by its own goroutine.
package logpipe

import (
	"io"
	"sync"
	"time"
)

// Writer writes EMF lines to stdout from its own goroutine. Lambda's
// stdout is a pipe to the log agent; when the agent is slow the pipe fills and
// a write blocks. The flush hands its lines over and waits at most
// STREAMLENS_STDOUT_WAIT_MS for them to be written, so a blocked stdout delays
// /event/next by that bound at worst. Lines wait in memory up to
// STREAMLENS_STDOUT_BUFFER_KB; a flush that does not fit is dropped whole and
// counted (DroppedEMFLines).
type Writer struct {
	out     io.Writer
	max     int
	mu      sync.Mutex
	queue   [][]byte
	queued  int
	busy    bool
	dropped int64 // lines dropped because the buffer was full
	wake    chan struct{}
	idle    chan struct{} // closed and replaced when the queue drains
	stop    chan struct{}
	done    chan struct{}
}

// New starts a writer to out that holds at most maxBytes not yet written.
func New(out io.Writer, maxBytes int) *Writer {
	w := &Writer{out: out, max: maxBytes, wake: make(chan struct{}, 1), idle: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	close(w.idle)
	go w.run()
	return w
}

// Write queues a copy of p (a whole flush) without blocking.
func (w *Writer) Write(p []byte) (int, error) {
	return w.Give(append([]byte(nil), p...)), nil
}

// Give queues p itself, which the caller must not touch again: the flusher
// hands over each flush's buffer instead of having it copied.
func (w *Writer) Give(p []byte) int {
	w.mu.Lock()
	if w.queued+len(p) > w.max {
		w.dropped += int64(countLines(p))
		w.mu.Unlock()
		return len(p)
	}
	if w.queued == 0 && !w.busy {
		w.idle = make(chan struct{})
	}
	w.queue = append(w.queue, p)
	w.queued += len(p)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p)
}

func countLines(p []byte) int {
	n := 0
	for _, c := range p {
		if c == '\n' {
			n++
		}
	}
	return n
}

// TakeDropped returns the lines dropped since the last call.
func (w *Writer) TakeDropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dropped
	w.dropped = 0
	return d
}

// Wait blocks until everything queued is written or d has passed; it reports
// whether the queue drained.
func (w *Writer) Wait(d time.Duration) bool {
	w.mu.Lock()
	idle := w.idle
	w.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

func (w *Writer) run() {
	defer close(w.done)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.busy = false
			select {
			case <-w.idle:
			default:
				close(w.idle)
			}
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.stop:
				return
			}
		}
		b := w.queue[0]
		w.queue = w.queue[1:]
		w.busy = true
		w.mu.Unlock()
		_, _ = w.out.Write(b) // may block: that is why this is its own goroutine
		w.mu.Lock()
		w.queued -= len(b)
		w.mu.Unlock()
	}
}

// Close stops the writer after what is queued, waiting at most d.
func (w *Writer) Close(d time.Duration) {
	w.Wait(d)
	close(w.stop)
}

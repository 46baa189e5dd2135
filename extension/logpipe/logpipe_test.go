package logpipe

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate blocks writes until opened, like a full pipe to a stuck log agent.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func TestLogWriterNeverBlocksAndLosesNothingThatFits(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	w := New(g, 1<<20)
	for i := 0; i < 10; i++ {
		w.Write([]byte(strings.Repeat("x", 1000) + "\n")) // returns at once although stdout is blocked
	}
	if w.Wait(10 * time.Millisecond) {
		t.Fatal("reported drained while stdout is blocked")
	}
	close(g.open)
	if !w.Wait(5 * time.Second) {
		t.Fatal("did not drain once stdout moved")
	}
	w.Close(time.Second)
	if n := strings.Count(g.buf.String(), "\n"); n != 10 || w.TakeDropped() != 0 {
		t.Errorf("%d lines written", n)
	}
}

func TestLogWriterDropsWholeFlushesBeyondItsBuffer(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	w := New(g, 2500)
	for i := 0; i < 5; i++ {
		w.Write([]byte(strings.Repeat("y", 999) + "\n"))
	}
	close(g.open)
	w.Close(5 * time.Second)
	written := strings.Count(g.buf.String(), "\n")
	if dropped := w.TakeDropped(); written+int(dropped) != 5 || dropped < 2 {
		t.Errorf("written %d dropped %d", written, dropped)
	}
}

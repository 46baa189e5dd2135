package extension

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
	w := newLogWriter(g, 1<<20)
	for i := 0; i < 10; i++ {
		w.Write([]byte(strings.Repeat("x", 1000) + "\n")) // returns at once although stdout is blocked
	}
	if w.wait(10 * time.Millisecond) {
		t.Fatal("reported drained while stdout is blocked")
	}
	close(g.open)
	if !w.wait(5 * time.Second) {
		t.Fatal("did not drain once stdout moved")
	}
	w.close(time.Second)
	if n := strings.Count(g.buf.String(), "\n"); n != 10 || w.takeDropped() != 0 {
		t.Errorf("%d lines written", n)
	}
}

func TestLogWriterDropsWholeFlushesBeyondItsBuffer(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	w := newLogWriter(g, 2500)
	for i := 0; i < 5; i++ {
		w.Write([]byte(strings.Repeat("y", 999) + "\n"))
	}
	close(g.open)
	w.close(5 * time.Second)
	written := strings.Count(g.buf.String(), "\n")
	if dropped := w.takeDropped(); written+int(dropped) != 5 || dropped < 2 {
		t.Errorf("written %d dropped %d", written, dropped)
	}
}

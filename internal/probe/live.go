package probe

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Live draws a running probe on a terminal, two lines redrawn in place: the
// progress (elapsed, status, first byte, first useful chunk, chunks, bytes,
// and how long since the last chunk, which is what a stalled stream shows)
// and a timeline of the chunks' arrivals. It redraws on every chunk and on
// its own tick, so that time visibly passes while nothing arrives. Its
// Progress method is a Config.Progress; it is safe for use by Run's
// goroutine and its ticker together.
type Live struct {
	w     io.Writer
	label string
	width int           // timeline cells
	tick  time.Duration // redraw interval while nothing arrives
	now   func() time.Time

	mu     sync.Mutex
	start  time.Time
	p      Progress
	at     []time.Duration // the chunks' arrival times (copied: Progress's slice is Run's)
	useful []bool
	drawn  bool
	stop   chan struct{}
	done   chan struct{}
}

// NewLive returns a live view that draws on w (a terminal: it writes ANSI
// cursor movements), each frame labelled with label.
func NewLive(w io.Writer, label string) *Live {
	return &Live{w: w, label: label, width: 48, tick: 100 * time.Millisecond, now: time.Now}
}

// Begin starts drawing one request, sent now.
func (l *Live) Begin() {
	l.mu.Lock()
	l.start, l.p, l.at, l.useful = l.now(), Progress{}, l.at[:0], l.useful[:0]
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	stop, done := l.stop, l.done
	l.mu.Unlock()
	l.draw()
	go func() {
		defer close(done)
		t := time.NewTicker(l.tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				l.draw()
			}
		}
	}()
}

// Progress records what has arrived and redraws.
func (l *Live) Progress(p Progress) {
	l.mu.Lock()
	for _, c := range p.Chunks[min(len(l.at), len(p.Chunks)):] {
		l.at = append(l.at, c.At)
		l.useful = append(l.useful, c.Useful)
	}
	p.Chunks = nil
	l.p = p
	l.mu.Unlock()
	l.draw()
}

// End stops the ticker and clears the two lines, leaving the cursor where
// the view began, for the result to be printed there.
func (l *Live) End() {
	l.mu.Lock()
	stop, done := l.stop, l.done
	l.stop = nil
	l.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drawn {
		_, _ = io.WriteString(l.w, "\r\x1b[K\n\x1b[K\x1b[A\r")
		l.drawn = false
	}
}

// draw writes the current frame over the previous one: clear line, the
// progress, next line, clear, the timeline, back up to the first line.
func (l *Live) draw() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop == nil {
		return // not begun, or ended: the lines are the result's now
	}
	line1, line2 := frame(l.label, l.now().Sub(l.start), l.p, l.at, l.useful, l.width)
	// One write per frame: a terminal shows no half-drawn frame.
	_, _ = io.WriteString(l.w, "\r\x1b[K"+line1+"\n\x1b[K"+line2+"\x1b[A\r")
	l.drawn = true
}

// Timeline cells: no chunk, then more chunks in the cell's time, scaled to
// the busiest cell. Before the first byte the cells are dots: waiting.
var levels = []rune(" ▁▂▃▄▅▆▇█")

// frame renders the two lines of the view at elapsed: the progress, and a
// timeline of width cells from the request to now, each cell showing how
// many chunks arrived in its share of the time, '|' where the first useful
// chunk arrived.
func frame(label string, elapsed time.Duration, p Progress, at []time.Duration, useful []bool, width int) (string, string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s", label, fmtDur(elapsed))
	if p.Status == 0 {
		b.WriteString("  connecting…")
	} else {
		fmt.Fprintf(&b, "  status %d  ttfb %s", p.Status, fmtDur(p.TTFB))
		if p.FirstUseful > 0 {
			fmt.Fprintf(&b, "  first useful %s", fmtDur(p.FirstUseful))
		}
		fmt.Fprintf(&b, "  %d chunks  %s", len(at), fmtBytes(p.Bytes))
		if n := len(at); n > 0 {
			fmt.Fprintf(&b, "  last %s ago", fmtDur(max(0, elapsed-at[n-1])))
		}
	}
	if width < 1 || elapsed <= 0 {
		return b.String(), ""
	}
	counts := make([]int, width)
	cell := func(d time.Duration) int {
		return min(width-1, max(0, int(int64(d)*int64(width)/int64(elapsed))))
	}
	most := 0
	for _, d := range at {
		i := cell(d)
		counts[i]++
		most = max(most, counts[i])
	}
	cells := make([]rune, width)
	ttfbCell := width
	if p.TTFB > 0 {
		ttfbCell = cell(p.TTFB)
	}
	for i, n := range counts {
		switch {
		case n > 0:
			cells[i] = levels[1+(n*(len(levels)-2)+most-1)/most] // 1 chunk of 1 is full; never blank
		case i < ttfbCell:
			cells[i] = '·'
		default:
			cells[i] = ' '
		}
	}
	for i, d := range at {
		if useful[i] {
			if j := cell(d); counts[j] > 0 {
				cells[j] = '|'
			}
			break
		}
	}
	return b.String(), "  [" + string(cells) + "]"
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

package lifecycle

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/emfsink"
	"github.com/streamlens/streamlens/extension/otlpsink"
	"github.com/streamlens/streamlens/extension/state"
)

// background does the work that need not happen before the freeze — span
// export and the per-instrument documents — while the environment is thawed
// anyway, and off the path to the invocation's first byte.
//
// Its gate opens once the current invocation's first chunk arrived (or no
// stream started within STREAMLENS_START_WAIT_MS) and closes before
// /event/next: every millisecond between the runtime's end and next is
// billed, and the first byte is what the user waits for. A job still running
// when the gate closes is frozen with the environment; its time budget is
// paused with the gate, so a freeze does not count as the collector's
// slowness.
type background struct {
	enc     *emfsink.Encoder
	spans   *otlpsink.Exporter // nil: OTLP off
	log     logSink
	count   func(state.Counters)
	timeout time.Duration // one export's budget of thawed time

	mu        sync.Mutex
	gate      chan struct{} // closed while the gate is open
	isOpen    bool
	work      chan struct{}  // signalled when there is work and the gate is open
	idle      chan struct{}  // signalled when the worker found nothing to do
	pending   []state.Result // streams waiting for their span, oldest first
	inst      *emfsink.Instruments
	instOn    bool
	finishing bool     // SHUTDOWN: write every instrument, whatever its age
	job       *jobTime // the running export's budget; nil when none runs
}

// jobPause separates background jobs.
const jobPause = 200 * time.Microsecond

// logSink is where EMF lines go (logpipe.Writer).
type logSink interface{ Give(p []byte) int }

// maxPendingSpans bounds the streams waiting for a span. Each keeps at most
// STREAMLENS_SPAN_MAX_EVENTS chunk records, so the queue holds a few MB at
// the very most; past it the oldest is dropped and counted (SpansDropped).
const maxPendingSpans = 512

func newBackground(enc *emfsink.Encoder, spans *otlpsink.Exporter, log logSink, count func(state.Counters),
	timeout time.Duration, maxInstruments int, instruments bool) *background {
	return &background{enc: enc, spans: spans, log: log, count: count, timeout: timeout,
		gate: make(chan struct{}), work: make(chan struct{}, 1), idle: make(chan struct{}, 1),
		inst: emfsink.NewInstruments(maxInstruments), instOn: instruments}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// add hands over finished streams: their chunk values to the per-instrument
// aggregates, the streams themselves to the span queue.
func (b *background) add(results []state.Result, maxEvents int, now time.Time) {
	if len(results) == 0 {
		return
	}
	b.mu.Lock()
	if b.instOn {
		b.inst.Add(results, now)
	}
	var dropped int64
	if b.spans != nil {
		for _, r := range results {
			if len(r.Chunks) > maxEvents {
				// A span keeps maxEvents chunk events: hold no more than that.
				r.Chunks = slices.Clone(r.Chunks[:maxEvents])
			}
			b.pending = append(b.pending, r)
		}
		if n := len(b.pending) - maxPendingSpans; n > 0 {
			dropped = int64(n)
			b.pending = append(b.pending[:0], b.pending[n:]...)
		}
	}
	open := b.isOpen
	b.mu.Unlock()
	if dropped > 0 {
		b.count(state.Counters{SpansDropped: dropped})
	}
	if open {
		signal(b.work) // else the gate's opening wakes the worker
	}
}

// open opens the gate; the worker starts or resumes.
func (b *background) open() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isOpen {
		return
	}
	b.isOpen = true
	close(b.gate)
	if b.job != nil {
		b.job.resume()
	}
	if b.hasWork(time.Now()) {
		// Woken only for work: an invocation with nothing to export or write
		// costs the worker no wake-up.
		signal(b.work)
	}
}

// hasWork reports whether a job is waiting; b.mu is held.
func (b *background) hasWork(now time.Time) bool {
	return b.job != nil || b.spans != nil && len(b.pending) > 0 || b.instOn && (b.finishing || b.inst.Due(now))
}

// close closes the gate: no new job starts, and the running one's budget
// stops counting.
func (b *background) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.isOpen {
		return
	}
	b.isOpen = false
	b.gate = make(chan struct{})
	if b.job != nil {
		b.job.pause()
	}
}

// run is the worker. It returns when ctx ends.
func (b *background) run(ctx context.Context) {
	for {
		b.mu.Lock()
		gate := b.gate
		b.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return
		}
		if b.step(ctx) {
			// Let the socket reader have the CPU between jobs: with one P, a
			// run of CPU-bound jobs (spans built for a collector that refuses
			// at once) would otherwise hold it while datagrams pile up.
			select {
			case <-time.After(jobPause):
			case <-ctx.Done():
				return
			}
			continue
		}
		signal(b.idle)
		select {
		case <-b.work:
		case <-ctx.Done():
			return
		}
	}
}

// step does one job, if there is one: the per-instrument documents that are
// due, else one batch of spans. It reports whether it did anything.
func (b *background) step(ctx context.Context) bool {
	now := time.Now()
	b.mu.Lock()
	if b.instOn && (b.finishing || b.inst.Due(now)) {
		// A document the encoder refuses is skipped; the rest are written.
		// Handed over before instOn says SHUTDOWN's documents are done, so
		// finish cannot return ahead of them (Give never blocks).
		out, _ := b.enc.Take(nil, b.inst, now, b.finishing)
		if len(out) > 0 {
			b.log.Give(out)
		}
		b.instOn = b.instOn && !b.finishing // at SHUTDOWN, once
		if len(out) > 0 {
			b.mu.Unlock()
			return true
		}
	}
	if len(b.pending) == 0 || b.spans == nil {
		b.mu.Unlock()
		return false
	}
	batch := b.pending[:min(len(b.pending), otlpsink.Batch)]
	b.pending = b.pending[len(batch):]
	jctx, cancel := context.WithCancel(ctx)
	b.job = startJob(b.timeout, cancel)
	b.mu.Unlock()

	err := b.spans.Export(jctx, batch)
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		// The collector failed or hit the budget: the spans are counted as
		// lost, not retried (a retry would only spend more of the
		// invocation's CPU on it).
		b.count(state.Counters{SpanExportErr: int64(len(batch))})
	}
	// The job ends only now, counted: finish waits for job == nil.
	b.mu.Lock()
	b.job.stop()
	b.job = nil
	b.mu.Unlock()
	cancel()
	return true
}

// finish opens the gate and waits until the worker has nothing left, or
// until passes (SHUTDOWN: the last documents and spans within the budget).
func (b *background) finish(until time.Time) {
	b.mu.Lock()
	b.finishing = true
	b.mu.Unlock()
	b.open()
	signal(b.work)
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		b.mu.Lock()
		done := b.job == nil && (len(b.pending) == 0 || b.spans == nil) && !b.instOn
		b.mu.Unlock()
		if done {
			return
		}
		select {
		case <-b.idle:
		case <-timer.C:
			return
		}
	}
}

// jobTime is a job's budget of thawed time: it runs while the gate is open
// and pauses while it is closed, when the environment may be frozen.
type jobTime struct {
	timer *time.Timer
	left  time.Duration
	since time.Time
}

func startJob(budget time.Duration, cancel func()) *jobTime {
	return &jobTime{timer: time.AfterFunc(budget, cancel), left: budget, since: time.Now()}
}

func (j *jobTime) pause() {
	if j.timer.Stop() {
		j.left -= time.Since(j.since)
	}
}

func (j *jobTime) resume() {
	j.since = time.Now()
	j.timer.Reset(max(j.left, 0))
}

func (j *jobTime) stop() { j.timer.Stop() }

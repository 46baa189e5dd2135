package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamlens/streamlens/extension/counters"
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
	count   func(counters.Counters)
	warn    func(error)   // says why an export failed (rate-limited)
	timeout time.Duration // one export's budget of thawed time

	mu      sync.Mutex
	gate    chan struct{} // closed while the gate is open
	isOpen  bool
	work    chan struct{}  // signalled when there is work and the gate is open
	idle    chan struct{}  // signalled when the worker found nothing to do
	pending []state.Result // streams waiting for their span, oldest first
	inst    *emfsink.Instruments
	instOn  bool
	// instQueue holds finished streams whose chunk values the worker has
	// yet to add to inst: per-instrument work is off the path to
	// /event/next. instQueued is how many chunks it holds.
	instQueue  []instBatch
	instQueued int
	finishing  bool      // SHUTDOWN: write every instrument, whatever its age
	until      time.Time // SHUTDOWN: no export may run past it
	job        *jobTime  // the running export's budget; nil when none runs
}

// instBatch is one write's finished streams, for the per-instrument
// aggregates, with the time they were finished.
type instBatch struct {
	results []state.Result
	at      time.Time
}

// maxQueuedInstChunks bounds the chunk values waiting for the worker (about
// 2 MB of records); past it a write adds its own at once, so a backlog
// costs time before next rather than memory.
const maxQueuedInstChunks = 1 << 16

// jobPause separates background jobs.
const jobPause = 200 * time.Microsecond

// logSink is where EMF lines go (logpipe.Writer).
type logSink interface{ Give(p []byte) int }

// maxPendingSpans bounds the streams waiting for a span. Each keeps at most
// STREAMLENS_SPAN_MAX_EVENTS chunk records, so the queue holds a few MB at
// the very most; past it the oldest is dropped and counted (SpansDropped).
const maxPendingSpans = 512

func newBackground(enc *emfsink.Encoder, spans *otlpsink.Exporter, log logSink, count func(counters.Counters), warn func(error),
	timeout time.Duration, maxInstruments int, instruments bool) *background {
	return &background{enc: enc, spans: spans, log: log, count: count, warn: warn, timeout: timeout,
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
// aggregates, the streams the sampler keeps to the span queue.
func (b *background) add(results []state.Result, maxEvents int, now time.Time) {
	if len(results) == 0 {
		return
	}
	var c counters.Counters
	b.mu.Lock()
	if b.instOn {
		n := 0
		for i := range results {
			n += len(results[i].Chunks)
		}
		if b.instQueued+n <= maxQueuedInstChunks {
			b.instQueue = append(b.instQueue, instBatch{results, now})
			b.instQueued += n
		} else {
			b.drainInstruments()
			b.inst.Add(results, now)
		}
	}
	if b.spans != nil {
		for _, r := range results {
			// Decided here, not at export: a stream sampled out costs no
			// queue space and no encoding.
			switch b.spans.Decide(&r) {
			case otlpsink.SampledOut:
				c.SpansSampledOut++
				continue
			case otlpsink.KeptFailed:
				c.SpansKeptFailed++
			default:
				c.SpansSampled++
			}
			if len(r.Chunks) > maxEvents {
				// A span keeps maxEvents chunk events: hold no more than that.
				r.Chunks = slices.Clone(r.Chunks[:maxEvents])
			}
			b.pending = append(b.pending, r)
		}
		if n := len(b.pending) - maxPendingSpans; n > 0 {
			c.SpansDropped = int64(n)
			b.pending = append(b.pending[:0], b.pending[n:]...)
		}
	}
	open := b.isOpen
	b.mu.Unlock()
	if c != (counters.Counters{}) {
		b.count(c)
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
	return b.job != nil || b.spans != nil && len(b.pending) > 0 || b.instOn && (b.finishing || len(b.instQueue) > 0 || b.inst.Due(now))
}

// drainInstruments adds the queued chunk values to the per-instrument
// aggregates; b.mu is held.
func (b *background) drainInstruments() {
	for _, q := range b.instQueue {
		b.inst.Add(q.results, q.at)
	}
	clear(b.instQueue)
	b.instQueue, b.instQueued = b.instQueue[:0], 0
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
	if b.instOn && len(b.instQueue) > 0 {
		// The values of the streams the last boundaries finished: a job
		// of its own, so that the socket reader gets the CPU after it.
		b.drainInstruments()
		b.mu.Unlock()
		return true
	}
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
	budget := b.timeout
	if b.finishing {
		// SHUTDOWN: what is left of its deadline, if that is less.
		budget = min(budget, jobCutoff(b.until))
	}
	b.job = startJob(budget, cancel)
	b.mu.Unlock()

	lost, err := b.spans.Export(jctx, batch)
	switch {
	case lost == 0 || errors.Is(ctx.Err(), context.Canceled):
	case errors.Is(err, otlpsink.ErrOutcomeUnknown):
		// The budget ended the export before the collector answered: it
		// may have taken them. Counted apart, so that a budget too short
		// for the collector does not read as the collector failing.
		b.count(counters.Counters{SpanExportUnknown: int64(lost)})
	default:
		// The collector failed or refused some (the exporter retries
		// within the budget): the spans are counted as lost.
		b.count(counters.Counters{SpanExportErr: int64(lost)})
		b.warn(err)
	}
	// The job ends only now, counted: finish waits for job == nil.
	b.mu.Lock()
	b.job.stop()
	b.job = nil
	b.mu.Unlock()
	cancel()
	return true
}

// writeInstruments writes every instrument's held values now, from the
// caller's goroutine (SHUTDOWN): the metrics go out before any span export
// starts or resumes, so that a hanging collector, or an export timeout
// longer than the shutdown budget, cannot cost them.
func (b *background) writeInstruments(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.instOn {
		return
	}
	b.drainInstruments()
	if out, _ := b.enc.Take(nil, b.inst, now, true); len(out) > 0 {
		b.log.Give(out)
	}
	b.instOn = false
}

// finish opens the gate and waits until the worker has nothing left, or
// until passes (SHUTDOWN: the last documents and spans within the budget).
func (b *background) finish(until time.Time) {
	b.mu.Lock()
	b.finishing, b.until = true, until
	if b.job != nil {
		// An export that started before SHUTDOWN with the whole export
		// timeout must end in time too, and early enough for its loss to be
		// counted in the last write.
		b.job.limit(jobCutoff(until), b.isOpen)
	}
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

// jobCutoff is how long an export may still run at SHUTDOWN: until the
// deadline, less a slack in which its outcome is counted and written.
func jobCutoff(until time.Time) time.Duration {
	left := time.Until(until)
	return max(0, left-min(50*time.Millisecond, left/4))
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

// limit shortens the budget left to at most d; running says whether it is
// counting now (the gate is open).
func (j *jobTime) limit(d time.Duration, running bool) {
	if running {
		j.pause()
		defer j.resume()
	}
	j.left = min(j.left, d)
}

// rateLimited passes on at most one error per period, saying how many it
// held back since: a collector that is down must not fill the function's
// log with one line per export.
type rateLimited struct {
	period     time.Duration
	say        func(msg string)
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *rateLimited) warn(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.period {
		l.suppressed++
		return
	}
	msg := err.Error()
	if l.suppressed > 0 {
		msg += fmt.Sprintf(" (and %d more failed exports since the last message)", l.suppressed)
	}
	l.last, l.suppressed = now, 0
	l.say(msg)
}

//go:build linux

package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/client"
	"github.com/streamlens/streamlens/protocol"
)

// ringDir is a fresh ring directory, made as the extension makes it.
func ringDir(t *testing.T) (*Rings, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), protocol.RingDirName)
	rs, err := OpenRings(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	return rs, dir
}

// recorder is an extension stand-in: a socket whose datagrams go through
// Events with rings, recording every event applied and every datagram that
// was not a bell.
type recorder struct {
	mu     sync.Mutex
	events []protocol.Event
	plain  int // datagrams that carried events themselves
	ev     *Events
	in     *Socket
}

func newRecorder(t *testing.T, rs *Rings) *recorder {
	t.Helper()
	r := &recorder{}
	r.ev = NewEvents(func(ev *protocol.Event, _ time.Time) { r.events = append(r.events, *ev) })
	r.ev.UseRings(rs)
	in, err := Listen(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &r.mu, func(b []byte, size int) {
		if _, bell := protocol.ParseBell(b); !bell {
			r.plain++
		}
		r.ev.Datagram(b, size)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	r.in = in
	return r
}

// wait waits until ok holds for the events applied (a count, never a time:
// the deadline only ends a test that would otherwise hang).
func (r *recorder) wait(t *testing.T, what string, ok func([]protocol.Event) bool) []protocol.Event {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		r.mu.Lock()
		evs := append([]protocol.Event(nil), r.events...)
		r.mu.Unlock()
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d events: %+v", what, len(evs), evs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A stream written through the client with a ring reaches the extension
// from the ring, in order, every event, while the only datagrams are the
// bells: the announcement, the first chunk's and the end's.
func TestRingCarriesAStream(t *testing.T) {
	rs, dir := ringDir(t)
	rec := newRecorder(t, rs)
	c, err := client.New(rec.in.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.UseRing(dir); err != nil {
		t.Fatal(err)
	}
	s := c.Start(context.Background(), io.Discard, client.StartOptions{RequestID: "req-1", Expected: 12})
	for i := range 12 {
		s.WriteChunk([]byte("quote\n"), client.ChunkOptions{Instrument: fmt.Sprintf("I%02d", i)})
	}
	s.End(client.EndOptions{})
	evs := rec.wait(t, "the stream", func(evs []protocol.Event) bool { return len(evs) == 14 })
	for i, e := range evs {
		want := protocol.KindChunk
		switch i {
		case 0:
			want = protocol.KindStart
		case 13:
			want = protocol.KindEnd
		}
		if e.Kind != want || e.Seq != uint32(i) || e.StreamID != s.QuoteID() || e.RequestID != "req-1" {
			t.Errorf("event %d: %v %+v", i, e.Kind, e.Header)
		}
	}
	if e := evs[13].End; e.Delivered != 12 || e.Status != protocol.StatusComplete {
		t.Errorf("end %+v", e)
	}
	st := c.Stats()
	rec.mu.Lock()
	plain := rec.plain
	rec.mu.Unlock()
	if plain != 0 || st.RingEvents != 14 || st.RingSkipped != 0 || st.Sent != 3 {
		t.Errorf("%d event datagrams, stats %+v: want every event in the ring and 3 bells", plain, st)
	}
	if torn, lost, refused := rs.TakeCounts(); torn+lost+refused != 0 {
		t.Errorf("torn %d lost %d refused %d", torn, lost, refused)
	}
}

// The writer half of TestRingSurvivesACrash, in a process of its own.
func TestMain(m *testing.M) {
	if dir := os.Getenv("RING_WRITER_DIR"); dir != "" {
		c, err := client.New(os.Getenv("RING_WRITER_ADDR"))
		if err == nil {
			err = c.UseRing(dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := c.Start(context.Background(), io.Discard, client.StartOptions{RequestID: "crashing"})
		for range 12 {
			s.WriteChunk([]byte("quote\n"), client.ChunkOptions{Instrument: "AAPL"})
		}
		os.Exit(3) // 12 writes returned, no end: a crash
	}
	os.Exit(m.Run())
}

// A process that dies right after its 12th write leaves all 12 in its ring:
// read at the boundary (no bell came after the first chunk's), with the
// start, and nothing counted torn. The ring, read and its writer gone, is
// removed.
func TestRingSurvivesACrash(t *testing.T) {
	rs, dir := ringDir(t)
	rec := newRecorder(t, rs)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RING_WRITER_DIR="+dir, "RING_WRITER_ADDR="+rec.in.LocalAddr().String())
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("writer: %v", err)
	}
	rec.in.Drain(time.Now().Add(time.Second))
	rec.mu.Lock()
	rec.ev.DrainRings(false, false)
	evs := rec.events
	torn, lost, refused := rs.TakeCounts()
	rec.mu.Unlock()
	chunks := 0
	for _, e := range evs {
		if e.Kind == protocol.KindChunk {
			chunks++
		}
		if e.Kind == protocol.KindEnd {
			t.Errorf("an end from a process that never sent one: %+v", e)
		}
	}
	if len(evs) == 0 || evs[0].Kind != protocol.KindStart || chunks != 12 || torn+lost+refused != 0 {
		t.Errorf("%d events, %d chunks (want the start and 12), torn %d lost %d refused %d", len(evs), chunks, torn, lost, refused)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the dead writer's ring is still there: %v", ents)
	}
}

// handRing is a ring written by hand, as another language's client would,
// with its lock held by the test (the "writer" lives until unlock).
type handRing struct {
	t    *testing.T
	name string
	path string
	fd   int
	mem  []byte
}

func newHandRing(t *testing.T, dir, name string, slots int) *handRing {
	t.Helper()
	path := filepath.Join(dir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	size := protocol.RingFileSize(slots)
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(mem, protocol.RingMagic)
	binary.LittleEndian.PutUint32(mem[protocol.RingOffSlotSize:], protocol.RingSlotSize)
	binary.LittleEndian.PutUint32(mem[protocol.RingOffSlots:], uint32(slots))
	h := &handRing{t: t, name: name, path: path, fd: fd, mem: mem}
	t.Cleanup(func() { unix.Munmap(mem); unix.Close(fd) })
	return h
}

func (h *handRing) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&h.mem[off]))
}

// put writes line into slot i and, commit, publishes it.
func (h *handRing) put(i uint64, line string, commit bool) {
	slots := uint64(binary.LittleEndian.Uint32(h.mem[protocol.RingOffSlots:]))
	off := protocol.RingHeaderSize + int(i%slots)*protocol.RingSlotSize
	copy(h.mem[off+protocol.RingSlotHeader:], line)
	binary.LittleEndian.PutUint32(h.mem[off+protocol.RingSlotLen:], uint32(len(line)))
	if commit {
		h.word(off).Store(i + 1)
	}
}

func (h *handRing) commit(i uint64) {
	slots := uint64(binary.LittleEndian.Uint32(h.mem[protocol.RingOffSlots:]))
	h.word(protocol.RingHeaderSize + int(i%slots)*protocol.RingSlotSize).Store(i + 1)
}

func chunkLine(seq int) string {
	return fmt.Sprintf("sl1 chunk s-1 r-1 %d %d bytes=6", seq, time.Now().UnixNano())
}

// lines reads ring names' events through rs as the extension does.
func collect(rs *Rings, name string, drain bool, final bool) []protocol.Event {
	var evs []protocol.Event
	ev := NewEvents(func(e *protocol.Event, _ time.Time) { evs = append(evs, *e) })
	ev.UseRings(rs)
	if name != "" {
		ev.Datagram(protocol.AppendBell(nil, name), len(protocol.BellPrefix)+len(name))
	}
	if drain {
		ev.DrainRings(final, false)
	}
	return evs
}

// A slot reserved and not committed yet is held back while its writer
// lives — the slots after it are read, the tail stays before it — and read
// when it is committed; one reserved when the writer died is torn.
func TestRingHoldsUncommittedSlotsAndTearsADeadWritersSlot(t *testing.T) {
	rs, dir := ringDir(t)
	h := newHandRing(t, dir, "ring-1-aaaa", 64)
	h.put(0, chunkLine(0), true)
	h.put(1, chunkLine(1), false) // mid-write
	h.put(2, chunkLine(2), true)
	h.word(protocol.RingOffHead).Store(3)
	evs := collect(rs, h.name, false, false)
	if len(evs) != 2 || evs[0].Seq != 0 || evs[1].Seq != 2 {
		t.Fatalf("%+v: want slots 0 and 2", evs)
	}
	if tail := h.word(protocol.RingOffTail).Load(); tail != 1 {
		t.Errorf("tail %d: the writer could reuse the slot it is writing", tail)
	}
	if r := h.word(protocol.RingOffReader).Load(); r != protocol.RingReaderAttached {
		t.Errorf("reader word %d", r)
	}
	h.commit(1)
	h.put(3, chunkLine(3), false)
	h.word(protocol.RingOffHead).Store(4)
	evs = collect(rs, "", true, false)
	if len(evs) != 1 || evs[0].Seq != 1 {
		t.Fatalf("%+v: want slot 1, now committed", evs)
	}
	unix.Flock(h.fd, unix.LOCK_UN) // the writer dies mid-write of slot 3
	evs = collect(rs, "", true, false)
	torn, lost, _ := rs.TakeCounts()
	if len(evs) != 0 || torn != 1 || lost != 0 {
		t.Errorf("%+v torn %d lost %d: want slot 3 torn", evs, torn, lost)
	}
	if _, err := os.Stat(h.path); !os.IsNotExist(err) {
		t.Errorf("the read ring of a dead writer was not removed: %v", err)
	}
}

// A ring is never trusted: a file that is not a private ring of the
// layout is refused, and a ring that breaks the protocol — a slot of
// another lap, a length past the slot, a head past a whole ring, a file cut
// short under the mapping — is counted, never a crash.
func TestRingIsNeverTrusted(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		rs, dir := ringDir(t)
		open := newHandRing(t, dir, "ring-open", 64)
		os.Chmod(open.path, 0o644)
		badMagic := newHandRing(t, dir, "ring-magic", 64)
		copy(badMagic.mem, "NOTARING")
		short := newHandRing(t, dir, "ring-short", 64)
		binary.LittleEndian.PutUint32(short.mem[protocol.RingOffSlots:], 128) // says more than the file holds
		odd := newHandRing(t, dir, "ring-odd", 64)
		binary.LittleEndian.PutUint32(odd.mem[protocol.RingOffSlots:], 63)
		target := newHandRing(t, t.TempDir(), "ring-target", 64)
		target.put(0, chunkLine(0), true)
		target.word(protocol.RingOffHead).Store(1)
		os.Symlink(target.path, filepath.Join(dir, "ring-link"))
		for _, name := range []string{"ring-open", "ring-magic", "ring-short", "ring-odd", "ring-link", "ring-missing"} {
			if evs := collect(rs, name, false, false); len(evs) != 0 {
				t.Errorf("%s: read %+v", name, evs)
			}
		}
		if _, _, refused := rs.TakeCounts(); refused != 6 {
			t.Errorf("%d refused, want 6", refused)
		}
		// Not a ring name: not even looked at.
		if _, ok := protocol.ParseBell([]byte(protocol.BellPrefix + "../ring-target")); ok {
			t.Error("a bell naming a path was accepted")
		}
	})
	t.Run("broken", func(t *testing.T) {
		rs, dir := ringDir(t)
		h := newHandRing(t, dir, "ring-2-bbbb", 64)
		h.put(0, chunkLine(0), true)
		h.put(1, chunkLine(1), false)
		h.word(protocol.RingHeaderSize + protocol.RingSlotSize).Store(1 + 64 + 1) // a later lap's commit
		h.put(2, chunkLine(2), true)
		binary.LittleEndian.PutUint32(h.mem[protocol.RingHeaderSize+2*protocol.RingSlotSize+protocol.RingSlotLen:], 4000)
		h.put(3, chunkLine(3), true)
		h.word(protocol.RingOffHead).Store(4)
		evs := collect(rs, h.name, false, false)
		_, lost, _ := rs.TakeCounts()
		if len(evs) != 2 || evs[0].Seq != 0 || evs[1].Seq != 3 || lost != 2 {
			t.Errorf("%+v lost %d: want slots 0 and 3, 2 lost", evs, lost)
		}
		h.word(protocol.RingOffHead).Store(4 + 10*64)
		collect(rs, "", true, false)
		if _, lost, _ := rs.TakeCounts(); lost < 9*64 {
			t.Errorf("a head 10 rings ahead: %d lost", lost)
		}
		// Cut short under the mapping: the next read faults, recovered.
		h.put(4+10*64, chunkLine(4), true)
		h.word(protocol.RingOffHead).Store(5 + 10*64)
		if err := unix.Ftruncate(h.fd, protocol.RingHeaderSize); err != nil {
			t.Fatal(err)
		}
		collect(rs, "", true, false)
		if _, lost, _ := rs.TakeCounts(); lost != 1 {
			t.Errorf("a truncated ring: %d lost, want 1 (the ring)", lost)
		}
		if len(rs.rings) != 0 {
			t.Errorf("the truncated ring is still attached")
		}
	})
	t.Run("too many", func(t *testing.T) {
		rs, dir := ringDir(t)
		for i := range MaxRings + 1 {
			h := newHandRing(t, dir, fmt.Sprintf("ring-%d", i), 64)
			collect(rs, h.name, false, false)
			want := uint64(protocol.RingReaderAttached)
			if i == MaxRings {
				want = protocol.RingReaderGone // told: it sends datagrams
			}
			if r := h.word(protocol.RingOffReader).Load(); r != want {
				t.Errorf("ring %d: reader word %d, want %d", i, r, want)
			}
		}
		if _, _, refused := rs.TakeCounts(); refused != 1 {
			t.Errorf("%d refused", refused)
		}
	})
}

// The ring directory is the extension's: made private, taken over from an
// earlier extension process of the environment (its dead writers' rings
// removed, a live writer's kept), never anything else's, and removed at
// Close with its rings.
func TestRingDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, protocol.RingDirName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	live := newHandRing(t, dir, "ring-live", 64)
	dead := newHandRing(t, dir, "ring-dead", 64)
	unix.Flock(dead.fd, unix.LOCK_UN)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not ours"), 0o600)
	rs, err := OpenRings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead.path); !os.IsNotExist(err) {
		t.Errorf("a dead writer's ring from before was kept")
	}
	if _, err := os.Stat(live.path); err != nil {
		t.Errorf("a live writer's ring was removed: %v", err)
	}
	collect(rs, live.name, false, false)
	rs.Close()
	if r := live.word(protocol.RingOffReader).Load(); r != protocol.RingReaderGone {
		t.Errorf("reader word %d after Close: the writer is not told", r)
	}
	if _, err := os.Stat(live.path); !os.IsNotExist(err) {
		t.Errorf("ring left at Close")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "notes.txt")); err != nil || string(b) != "not ours" {
		t.Errorf("a file that is not a ring was touched: %q %v", b, err)
	}

	for name, make := range map[string]func(string) error{
		"open to others": func(p string) error { return os.Mkdir(p, 0o777) },
		"a file":         func(p string) error { return os.WriteFile(p, nil, 0o600) },
		"a link":         func(p string) error { return os.Symlink(base, p) },
	} {
		p := filepath.Join(t.TempDir(), protocol.RingDirName)
		if err := make(p); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o777)
		if _, err := OpenRings(p); err == nil {
			t.Errorf("%s: taken as the ring directory", name)
		}
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: removed", name)
		}
	}
}

// FuzzRing: whatever a ring file holds, reading it never panics, never
// hands on a line longer than a slot's, and keeps the tail at or below the
// head it read.
func FuzzRing(f *testing.F) {
	valid := make([]byte, 64*protocol.RingSlotSize+24)
	binary.LittleEndian.PutUint64(valid[0:], 3)
	for i := range 3 {
		off := 24 + i*protocol.RingSlotSize
		line := chunkLine(i)
		binary.LittleEndian.PutUint64(valid[off:], uint64(i+1))
		binary.LittleEndian.PutUint32(valid[off+protocol.RingSlotLen:], uint32(len(line)))
		copy(valid[off+protocol.RingSlotHeader:], line)
	}
	f.Add(valid)
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), protocol.RingDirName)
		rs, err := OpenRings(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		h := newHandRing(t, dir, "ring-fuzz", 64)
		// The first 24 bytes: head, tail, reader; the rest: the slots.
		hdr := make([]byte, 24)
		copy(hdr, data)
		h.word(protocol.RingOffHead).Store(binary.LittleEndian.Uint64(hdr[0:]))
		h.word(protocol.RingOffTail).Store(binary.LittleEndian.Uint64(hdr[8:]))
		h.word(protocol.RingOffReader).Store(binary.LittleEndian.Uint64(hdr[16:]))
		if len(data) > 24 {
			copy(h.mem[protocol.RingHeaderSize:], data[24:])
		}
		ev := NewEvents(func(*protocol.Event, time.Time) {})
		ev.UseRings(rs)
		rs.Bell(h.name, func(b []byte) {
			if len(b) > protocol.RingPayloadMax {
				t.Fatalf("a line of %d bytes", len(b))
			}
			ev.lineFn(b)
		})
		if r := rs.rings[h.name]; r != nil && r.tail.Load() > r.head.Load() && r.next <= r.head.Load() {
			t.Fatalf("tail %d past head %d", r.tail.Load(), r.head.Load())
		}
		rs.Drain(true, true, func([]byte) {})
	})
}

// A ring whose bells were all lost (a process that died right after its
// first chunk, the bell refused) is not read at an ordinary boundary — no
// directory read on the common path — but is found by the scan a failed
// invocation and SHUTDOWN make.
func TestRingThatNeverRangIsFoundByAScan(t *testing.T) {
	rs, dir := ringDir(t)
	h := newHandRing(t, dir, "ring-9-silent", 64)
	h.put(0, chunkLine(0), true)
	h.word(protocol.RingOffHead).Store(1)
	var n int
	rs.Drain(false, false, func([]byte) { n++ })
	if n != 0 {
		t.Fatalf("%d lines read without a bell or a scan", n)
	}
	rs.Drain(false, true, func([]byte) { n++ })
	if n != 1 {
		t.Errorf("%d lines after the scan, want 1", n)
	}
}

// A bell still in the socket when its ring's life ended (its writer died
// and the ring was read to the end, by an earlier bell or a boundary) is
// late: ignored, not a ring refused.
func TestLateBellOfAnEndedRing(t *testing.T) {
	rs, dir := ringDir(t)
	h := newHandRing(t, dir, "ring-7-late", 64)
	h.put(0, chunkLine(0), true)
	h.word(protocol.RingOffHead).Store(1)
	unix.Flock(h.fd, unix.LOCK_UN) // the writer is gone
	if evs := collect(rs, h.name, false, false); len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	if _, err := os.Stat(h.path); !os.IsNotExist(err) {
		t.Fatalf("the ended ring is still there: %v", err)
	}
	collect(rs, h.name, false, false) // its second bell, late
	if torn, lost, refused := rs.TakeCounts(); torn+lost+refused != 0 {
		t.Errorf("a late bell counted: torn %d lost %d refused %d", torn, lost, refused)
	}
}

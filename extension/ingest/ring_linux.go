//go:build linux

package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

// Rings reads the functions' ring files (protocol's ring layout,
// docs/protocol.md): the transport where a client commits events with
// memory stores and rings a bell datagram a few times per stream. The
// extension owns the ring directory: it creates it before the runtime
// starts, attaches a ring when it first hears its bell, reads rings at
// every bell and boundary, and removes a ring once its writer is gone and
// everything in it is read. A ring is never trusted: every slot is checked
// as a datagram is (its commit word, its length, then the decoder), and a
// ring whose file shrinks under the mapping faults into a recovered panic,
// not a crash. Like Events, it is used under the caller's lock.
type Rings struct {
	dir   string
	dirID fileID
	rings map[string]*ringFile
	line  []byte // a slot's line, copied out of the mapping before decoding
	// ended holds the names of rings whose life ended here (read to the
	// end, their writer gone): a bell of theirs still in the socket when
	// that happened is late, not a ring to refuse. Bounded: the oldest
	// name goes first.
	ended     map[string]struct{}
	endedFIFO []string

	// Counts since the last TakeCounts.
	torn, lost, refused int64
}

// MaxRings bounds the rings attached at once: one per function process
// (Lambda Managed Instances runs a few). A ring past it is refused: its
// writer is told (the reader word says gone) and sends datagrams instead.
const MaxRings = 16

// maxPending bounds the slots reserved but not yet committed that a ring
// may hold back at once (writers mid-event on other goroutines).
const maxPending = 256

type ringFile struct {
	name   string
	fd     int
	file   fileID // the file attached, which alone detach may remove
	mem    []byte
	mask   uint64
	slots  uint64
	head   *atomic.Uint64
	tail   *atomic.Uint64
	reader *atomic.Uint64
	next   uint64   // the first index not looked at yet
	held   []uint64 // indices below next reserved but not committed when last looked at
	gone   bool     // its writer released the file's lock: it exited
}

// ErrRingDirUnusable: the ring directory exists and is not one this user
// owns privately (a link, a file, another owner, open to others). It is
// left alone, and functions send their events by datagram.
var ErrRingDirUnusable = errors.New("ring directory unusable")

// OpenRings creates the ring directory dir (0700) or takes over the one an
// earlier extension process of this environment left (its rings, whose
// writers went with the reset, are removed). Anything else at dir is left
// alone: ErrRingDirUnusable.
func OpenRings(dir string) (*Rings, error) {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s: %w: %w", dir, ErrRingDirUnusable, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", dir, ErrRingDirUnusable, err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 || !ownedByMe(fi) {
		return nil, fmt.Errorf("%s: %w: a %s with mode %v, not a directory private to this user; streamlens changes no file it did not create",
			dir, ErrRingDirUnusable, kind(fi), fi.Mode().Perm())
	}
	id, err := identify(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", dir, ErrRingDirUnusable, err)
	}
	rs := &Rings{dir: dir, dirID: id, rings: map[string]*ringFile{}, line: make([]byte, protocol.RingPayloadMax),
		ended: map[string]struct{}{}}
	rs.removeStale()
	return rs, nil
}

// Dir is the ring directory.
func (rs *Rings) Dir() string { return rs.dir }

// removeStale removes the ring files in the directory that no live
// process holds: left by the processes of an earlier life of this
// environment. A ring whose writer still runs stays (it rings again).
func (rs *Rings) removeStale() {
	for _, name := range rs.files() {
		path := filepath.Join(rs.dir, name)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = os.Remove(path)
		}
		unix.Close(fd)
	}
}

// Bell reads ring name, attaching it first if it is new. Each committed
// event line goes to line, in the order the ring holds them.
func (rs *Rings) Bell(name string, line func([]byte)) {
	r := rs.rings[name]
	if _, late := rs.ended[name]; r == nil && late {
		return
	}
	if r == nil {
		r = rs.attach(name)
		if r == nil {
			return
		}
	}
	rs.read(r, false, line)
}

// Drain reads every ring (an invocation's boundary). final: nothing will
// be written any more (SHUTDOWN), so what is reserved and not committed is
// torn. scan: first attach the rings in the directory that never rang
// (their bells were lost: a process that died right after its first
// chunk, whose bell was refused) — a directory read, for a failed
// invocation and SHUTDOWN only, never the common path.
func (rs *Rings) Drain(final, scan bool, line func([]byte)) {
	if scan {
		rs.scan()
	}
	for _, r := range rs.rings {
		rs.read(r, final, line)
	}
}

// scan attaches the ring files of the directory not attached yet.
func (rs *Rings) scan() {
	for _, name := range rs.files() {
		if rs.rings[name] == nil {
			rs.attach(name)
		}
	}
}

// files lists the ring files of the directory: regular files named as
// rings. Anything else there is not the protocol's, and never touched.
func (rs *Rings) files() []string {
	ents, _ := os.ReadDir(rs.dir)
	var names []string
	for _, e := range ents {
		if protocol.ValidRingName(e.Name()) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names
}

// TakeCounts returns the counts since the last call: slots torn (reserved by
// a writer that died before committing them), slots lost (overwritten or
// invalid, or a ring that failed while read), and rings refused.
func (rs *Rings) TakeCounts() (torn, lost, refused int64) {
	torn, lost, refused = rs.torn, rs.lost, rs.refused
	rs.torn, rs.lost, rs.refused = 0, 0, 0
	return torn, lost, refused
}

// Close tells every attached ring's writer that nobody reads it any more
// (it sends datagrams from then on), unmaps the rings, and removes the
// directory with the rings in it: the extension made the directory, and
// the rings in it are the protocol's, which ends here.
func (rs *Rings) Close() {
	for name, r := range rs.rings {
		rs.detach(name, r, true)
	}
	if now, err := identify(rs.dir); err == nil && now == rs.dirID {
		for _, name := range rs.files() {
			_ = os.Remove(filepath.Join(rs.dir, name))
		}
		_ = os.Remove(rs.dir) // only if empty: anything else is not ours
	}
}

// attach opens, checks and maps ring name. A file that is not a ring this
// user made privately, of the layout's size, is refused (counted) and
// never read.
func (rs *Rings) attach(name string) *ringFile {
	if !protocol.ValidRingName(name) {
		rs.refused++
		return nil
	}
	path := filepath.Join(rs.dir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		rs.refused++
		return nil
	}
	var st unix.Stat_t
	hdr := make([]byte, protocol.RingOffHead)
	ok := unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o077 == 0 && int(st.Uid) == os.Geteuid()
	if ok {
		n, err := unix.Pread(fd, hdr, 0)
		ok = err == nil && n == len(hdr)
	}
	slots := uint64(binary.LittleEndian.Uint32(hdr[protocol.RingOffSlots:]))
	ok = ok && string(hdr[:len(protocol.RingMagic)]) == protocol.RingMagic &&
		binary.LittleEndian.Uint32(hdr[protocol.RingOffSlotSize:]) == protocol.RingSlotSize &&
		protocol.ValidRingSlots(slots) && st.Size == protocol.RingFileSize(int(slots))
	if !ok {
		unix.Close(fd)
		rs.refused++
		return nil
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		rs.refused++
		return nil
	}
	r := &ringFile{name: name, fd: fd, file: fileID{dev: uint64(st.Dev), ino: st.Ino}, mem: mem, slots: slots, mask: slots - 1,
		head: word(mem, protocol.RingOffHead), tail: word(mem, protocol.RingOffTail), reader: word(mem, protocol.RingOffReader)}
	if len(rs.rings) >= MaxRings {
		// Told, so that its writer stops filling a ring nobody reads.
		r.reader.Store(protocol.RingReaderGone)
		_ = unix.Munmap(mem)
		unix.Close(fd)
		rs.refused++
		return nil
	}
	// Read from where the writer's reader left off: the tail it last
	// published (0 for a new ring).
	r.next = r.tail.Load()
	r.reader.Store(protocol.RingReaderAttached)
	rs.rings[name] = r
	return r
}

// word is the 8-byte-aligned word at off of a mapping, for atomic use.
func word(mem []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[off]))
}

// read hands on r's committed slots, from the first one not read: those it
// held back first (reserved, not committed when last looked at), then the
// new ones up to the head. A slot still uncommitted is held back while its
// writer lives, and torn once it is gone (or final). The tail then tells
// the writer which slots it may reuse.
func (rs *Rings) read(r *ringFile, final bool, line func([]byte)) {
	// A ring whose file shrank faults on access; the fault becomes a panic
	// here (SetPanicOnFault), recovered: that ring is dropped, the
	// extension goes on.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if _, fault := p.(interface{ Addr() uintptr }); !fault {
				panic(p)
			}
			rs.lost++
			rs.detach(r.name, r, false)
		}
	}()
	head := r.head.Load()
	if head-r.next > r.slots && head > r.next {
		// More than a ring's worth unread: the writer broke the protocol
		// (it may not pass the tail). What it overwrote is lost.
		rs.lost += int64(head - r.next - r.slots)
		r.next = head - r.slots
		r.held = r.held[:0]
	}
	held := r.held[:0]
	for _, i := range r.held {
		if !rs.take(r, i, final, line) {
			held = append(held, i)
		}
	}
	for ; r.next < head; r.next++ {
		if !rs.take(r, r.next, final, line) {
			if len(held) == maxPending {
				rs.lost++
				continue
			}
			held = append(held, r.next)
		}
	}
	r.held = held
	tail := r.next
	for _, i := range held {
		tail = min(tail, i)
	}
	r.tail.Store(tail)
	if len(held) == 0 && (final || r.writerGone()) && r.head.Load() == r.next {
		// Nothing left to read, and nobody will write: the ring's life
		// ends (its file is removed).
		rs.detach(r.name, r, true)
	}
}

// take reads slot i. It reports false when the slot is reserved and not
// committed yet, and its writer may still commit it; a slot that will never
// be committed is counted torn, a slot that holds something else than
// index i's event lost.
func (rs *Rings) take(r *ringFile, i uint64, final bool, line func([]byte)) (done bool) {
	off := protocol.RingHeaderSize + (i&r.mask)*protocol.RingSlotSize
	commit := word(r.mem, int(off))
	c := commit.Load()
	switch {
	case c == i+1:
	case c > i+1:
		rs.lost++ // overwritten: the writer passed the tail
		return true
	case final || r.writerGone():
		rs.torn++
		return true
	default:
		return false
	}
	n := binary.LittleEndian.Uint32(r.mem[off+protocol.RingSlotLen:])
	if n > protocol.RingPayloadMax {
		rs.lost++
		return true
	}
	if n == 0 {
		return true // a place reserved for an event that went by datagram
	}
	b := rs.line[:n]
	copy(b, r.mem[off+protocol.RingSlotHeader:])
	if commit.Load() != i+1 {
		rs.lost++ // rewritten while copied: the writer passed the tail
		return true
	}
	line(b)
	return true
}

// writerGone reports whether the ring's writer exited: its lock on the
// file is released with the process, however it ended. Once taken here the
// lock stays (and the answer).
func (r *ringFile) writerGone() bool {
	if !r.gone {
		r.gone = unix.Flock(r.fd, unix.LOCK_EX|unix.LOCK_NB) == nil
	}
	return r.gone
}

// detach forgets r; remove: also its file, whose life ended.
func (rs *Rings) detach(name string, r *ringFile, remove bool) {
	func() {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { _ = recover() }()
		r.reader.Store(protocol.RingReaderGone)
	}()
	_ = unix.Munmap(r.mem)
	if remove {
		rs.remember(name)
		// Only the file attached: a path can be made to name another.
		removeIf(filepath.Join(rs.dir, name), r.file)
	}
	unix.Close(r.fd)
	delete(rs.rings, name)
}

// maxEnded bounds the names of ended rings kept for their late bells.
const maxEnded = 64

// remember notes that ring name's life ended.
func (rs *Rings) remember(name string) {
	if _, ok := rs.ended[name]; ok {
		return
	}
	if len(rs.endedFIFO) == maxEnded {
		delete(rs.ended, rs.endedFIFO[0])
		rs.endedFIFO = rs.endedFIFO[1:]
	}
	rs.ended[name] = struct{}{}
	rs.endedFIFO = append(rs.endedFIFO, name)
}

// ownedByMe reports whether fi's owner is this process's user.
func ownedByMe(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok {
		return int(st.Uid) == os.Geteuid()
	}
	return false
}

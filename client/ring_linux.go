//go:build linux && !streamlens_portable

package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/client/internal/wire"
)

// ring is this process's ring file (wire's ring layout, docs/protocol.md),
// mapped: events are committed into it with memory stores, and survive the
// process. The file is locked (flock) for as long as the process lives, so
// that the extension can tell a writer that died mid-event from one still
// writing; the lock goes with the process, however it ends.
type ring struct {
	name   string
	fd     int
	mem    []byte
	mask   uint64 // slots − 1
	slots  uint64
	head   *atomic.Uint64
	tail   *atomic.Uint64
	reader *atomic.Uint64
	bell   []byte // the bell datagram
}

// errNoRingDir: the ring directory is not there: no extension that reads
// rings runs in this environment (or not yet).
var errNoRingDir = errors.New("no ring directory")

// openRing creates, sizes and maps a ring in dir. dir must be a directory
// (not a link) private to this user: the extension made it. The file's
// blocks are allocated here, so that a full /tmp fails now rather than as a
// fault on a later store.
func openRing(dir string) (*ring, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", dir, errNoRingDir)
		}
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o077 != 0 || int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("%s is not a directory private to this user: rings are not used", dir)
	}
	name := fmt.Sprintf("ring-%d-%08x", os.Getpid(), rand.Uint32())
	path := filepath.Join(dir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	fail := func(err error) (*ring, error) {
		unix.Close(fd)
		_ = unix.Unlink(path)
		return nil, fmt.Errorf("ring %s: %w", path, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(err)
	}
	size := wire.RingFileSize(wire.RingSlots)
	if err := unix.Fallocate(fd, 0, 0, size); err != nil {
		// Without its blocks, a store into a page /tmp has no room for
		// would kill the function with SIGBUS: no ring then.
		return fail(fmt.Errorf("allocate %d bytes: %w", size, err))
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("map: %w", err))
	}
	copy(mem, wire.RingMagic)
	binary.LittleEndian.PutUint32(mem[wire.RingOffSlotSize:], wire.RingSlotSize)
	binary.LittleEndian.PutUint32(mem[wire.RingOffSlots:], wire.RingSlots)
	binary.LittleEndian.PutUint64(mem[wire.RingOffPID:], uint64(os.Getpid()))
	return &ring{name: name, fd: fd, mem: mem, mask: wire.RingSlots - 1, slots: wire.RingSlots,
		head: word(mem, wire.RingOffHead), tail: word(mem, wire.RingOffTail), reader: word(mem, wire.RingOffReader),
		bell: wire.AppendBell(nil, name)}, nil
}

// word is the 8-byte-aligned word at off of the mapping, for atomic use.
func word(mem []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[off]))
}

// reserve takes the next free slot. ok is false when the ring is full (the
// extension has not read the oldest slots yet); used is how many slots are
// then unread, this one included.
func (r *ring) reserve() (idx, used uint64, ok bool) {
	for {
		h, t := r.head.Load(), r.tail.Load()
		if h-t >= r.slots {
			return 0, 0, false
		}
		if r.head.CompareAndSwap(h, h+1) {
			return h, h + 1 - t, true
		}
	}
}

// payload is slot idx's line area, empty with room for RingPayloadMax bytes.
func (r *ring) payload(idx uint64) []byte {
	off := wire.RingHeaderSize + (idx&r.mask)*wire.RingSlotSize + wire.RingSlotHeader
	return r.mem[off : off : off+wire.RingPayloadMax]
}

// commit publishes slot idx, whose line of n bytes is written: the length,
// then the commit word, with a release store the extension's load pairs
// with.
func (r *ring) commit(idx uint64, n int) {
	off := wire.RingHeaderSize + (idx&r.mask)*wire.RingSlotSize
	binary.LittleEndian.PutUint32(r.mem[off+wire.RingSlotLen:], uint32(n))
	word(r.mem, int(off)).Store(idx + 1)
}

// halfFull reports whether used unread slots call for a bell: the
// extension is asked to read once the ring is half full, and again at three
// quarters, well before events have to go by datagram.
func (r *ring) halfFull(used uint64) bool {
	return used == r.slots/2 || used == r.slots/4*3
}

// usable reports whether events may go into the ring: the extension has
// not said it is gone, or refused it. Before it attaches (it does at the
// first bell) events wait in the ring: it reads from the first slot.
func (r *ring) usable() bool { return r.reader.Load() != wire.RingReaderGone }

// A ring is never unmapped: a stream may be writing into it on another
// goroutine while the client closes, and a store into an unmapped page
// would kill the function. It goes with the process.

package protocol

import (
	"os"
	"path/filepath"
	"strings"
)

// The ring is a second transport for the same events: a file the function's
// client maps and writes event lines into with memory stores, and the
// extension maps and reads. An event is committed when its slot's commit word
// is stored, before the write that produced it returns: the process may die
// the next instant and the event survives, in the file. Nobody is woken per
// event: a bell datagram ("sl1 bell <name>") on the event socket asks the
// extension to read the ring, a handful of times per stream (the first
// chunk, the end, and when the ring is half full); the extension also reads
// every ring at the invocation's boundaries. docs/protocol.md describes it
// for other clients.
//
// Layout (little-endian, as every Lambda machine is):
//
//	header, RingHeaderSize bytes:
//	  0   magic "SLRING1\x00"
//	  8   uint32 slot size (RingSlotSize)
//	  12  uint32 number of slots (a power of two, RingMinSlots..RingMaxSlots)
//	  16  uint64 the writer's process id (for people reading the file)
//	  64  uint64 head: the next index to reserve (writers, compare-and-swap)
//	  128 uint64 tail: every index below it has been read (the extension)
//	  192 uint64 reader: 0 not attached, 1 attached, 2 gone (the extension)
//	slot i at RingHeaderSize + (i mod slots) × RingSlotSize:
//	  0   uint64 commit: i+1 once the event is complete (stored last)
//	  8   uint32 length of the event line
//	  16  the event line: one sl1 line as in a datagram, no '\n'
//
// A writer reserves index h when head − tail < slots (otherwise the ring is
// full and the event goes by datagram), writes the line and its length, then
// stores h+1 in the commit word. A reserved slot whose commit word never
// comes is torn (its writer died mid-write): once the writer is gone (its
// lock on the file is released) the extension skips it and counts it.
const (
	RingMagic      = "SLRING1\x00"
	RingHeaderSize = 4096
	RingSlotSize   = 512
	RingMinSlots   = 64
	RingMaxSlots   = 1 << 16
	// RingSlots is how many slots the Go client's ring has: 1 MiB of /tmp,
	// 2,048 events that can wait unread before the ring is full.
	RingSlots = 2048

	RingOffSlotSize = 8
	RingOffSlots    = 12
	RingOffPID      = 16
	RingOffHead     = 64
	RingOffTail     = 128
	RingOffReader   = 192

	RingSlotHeader = 16
	RingSlotLen    = 8
	// RingPayloadMax is the longest event line a slot holds; a longer one
	// goes by datagram.
	RingPayloadMax = RingSlotSize - RingSlotHeader

	RingReaderNone     = 0
	RingReaderAttached = 1
	RingReaderGone     = 2
)

// RingDirName is the ring directory's name in the temporary directory.
const RingDirName = ".streamlens"

// DefaultRingDir is where rings live unless STREAMLENS_RING_DIR says
// otherwise: $TMPDIR/.streamlens, which on Lambda (no TMPDIR) is
// /tmp/.streamlens, in the execution environment's own /tmp. The extension
// creates it (0700) before it registers, so that it exists before the
// function's runtime starts. A client uses the ring only when the
// directory is there and private to its user.
func DefaultRingDir() string { return filepath.Join(os.TempDir(), RingDirName) }

// BellPrefix starts a bell datagram; the ring's name follows.
const BellPrefix = Version + " bell "

// MaxRingName bounds a ring's file name.
const MaxRingName = 64

// RingFileSize is the size of a ring file of n slots.
func RingFileSize(n int) int64 { return RingHeaderSize + int64(n)*RingSlotSize }

// ValidRingSlots reports whether n slots make a ring: a power of two in
// range, so that an index maps to its slot with a mask.
func ValidRingSlots(n uint64) bool {
	return n >= RingMinSlots && n <= RingMaxSlots && n&(n-1) == 0
}

// ValidRingName reports whether name may name a ring: "ring-" and then
// letters, digits and '-', no more than MaxRingName bytes. It is a file
// name inside the ring directory: never a path, never hidden.
func ValidRingName(name string) bool {
	if len(name) > MaxRingName || !strings.HasPrefix(name, "ring-") || len(name) == len("ring-") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// AppendBell appends the bell datagram for ring name.
func AppendBell(dst []byte, name string) []byte {
	return append(append(dst, BellPrefix...), name...)
}

// ParseBell returns the ring a datagram rings for; ok is false when b is
// not a bell (a final '\n' is allowed) or names no valid ring.
func ParseBell(b []byte) (name string, ok bool) {
	if len(b) <= len(BellPrefix) || string(b[:len(BellPrefix)]) != BellPrefix {
		return "", false
	}
	rest := b[len(BellPrefix):]
	if rest[len(rest)-1] == '\n' {
		rest = rest[:len(rest)-1]
	}
	if !ValidRingName(string(rest)) {
		return "", false
	}
	return string(rest), true
}

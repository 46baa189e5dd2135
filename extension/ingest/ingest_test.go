//go:build linux

package ingest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/streamlens/streamlens/protocol"
)

func TestUnixSocketIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "streamlens")
	path := filepath.Join(dir, "events.sock")
	in, err := Listen(protocol.Addr{Network: "unixgram", Path: path}, &sync.Mutex{}, func([]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode().Perm(), want, err)
		}
	}
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(shared, 0o777)
	if _, err := Listen(protocol.Addr{Network: "unixgram", Path: filepath.Join(shared, "s.sock")}, &sync.Mutex{}, func([]byte, int) {}); err == nil || !strings.Contains(err.Error(), "private") {
		t.Errorf("a world-writable socket directory was accepted: %v", err)
	}
}

func TestUDPListenerIsLoopback(t *testing.T) {
	in, err := Listen(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &sync.Mutex{}, func([]byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if ip := netip.MustParseAddrPort(in.LocalAddr().String()).Addr(); !ip.IsLoopback() {
		t.Errorf("bound to %v", ip)
	}
}

// A burst is read in batches; every datagram reaches apply once, in order,
// with its real size even when it is longer than the buffer.
func TestBatchedReadKeepsEveryDatagramAndItsSize(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	in, err := Listen(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &mu, func(b []byte, size int) {
		if len(b) != min(size, protocol.MaxDatagram) {
			t.Errorf("buffer %d for a datagram of %d", len(b), size)
		}
		sizes = append(sizes, size)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	conn, err := net.Dial("udp", in.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var want []int
	mu.Lock() // hold the reader off so that the burst queues up
	for i := 0; i < 3*batchSize+5; i++ {
		n := 10 + i
		if i == batchSize+2 {
			n = protocol.MaxDatagram + 100 // oversized: its real size must be seen
		}
		if _, err := conn.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
	}
	mu.Unlock()
	in.Drain(time.Now().Add(time.Second))
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Errorf("sizes %v, want %v", sizes, want)
	}
}

// Whatever is at the socket path when the extension starts was not created
// by it, and is left as it is: Listen fails with ErrAddrInUse instead.
// The socket Listen made is removed by Close, and only that one.
func TestUnixPathInTheWayIsLeftAlone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "streamlens")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	nop := func([]byte, int) {}
	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another program's live socket.
	other := filepath.Join(dir, "other.sock")
	pc, err := net.ListenPacket("unixgram", other)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, p := range []string{file, other} {
		before, _ := identify(p)
		_, err := Listen(protocol.Addr{Network: "unixgram", Path: p}, &sync.Mutex{}, nop)
		if !errors.Is(err, ErrAddrInUse) || !errors.Is(err, ErrAddrUnusable) {
			t.Errorf("%s: %v, want ErrAddrInUse", p, err)
		}
		if after, _ := identify(p); after != before {
			t.Errorf("%s was replaced", p)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("the file was touched: %q", b)
	}

	// A dead socket (nobody receives on it: an extension process killed at
	// a reset leaves one, Go leaves a unixgram socket's file behind) is
	// replaced, or the environment would have no events for its life.
	dead := filepath.Join(dir, "dead.sock")
	dpc, err := net.ListenPacket("unixgram", dead)
	if err != nil {
		t.Fatal(err)
	}
	dpc.Close()
	if in, err := Listen(protocol.Addr{Network: "unixgram", Path: dead}, &sync.Mutex{}, nop); err != nil {
		t.Errorf("a dead socket: %v, want it replaced", err)
	} else {
		in.Close()
	}

	// Its own socket: a second Listen does not take the path from the
	// first, which keeps receiving; Close removes it, and then the path can
	// be bound again.
	own := filepath.Join(dir, "own.sock")
	var mu sync.Mutex
	got := 0
	in, err := Listen(protocol.Addr{Network: "unixgram", Path: own}, &mu, func([]byte, int) { got++ })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(protocol.Addr{Network: "unixgram", Path: own}, &sync.Mutex{}, nop); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("second listen on a live socket: %v", err)
	}
	conn, err := net.Dial("unixgram", own)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	in.Drain(time.Now().Add(time.Second))
	mu.Lock()
	if got != 1 {
		t.Errorf("the first socket got %d datagrams, want 1", got)
	}
	mu.Unlock()
	in.Close()
	if _, err := os.Lstat(own); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left its socket: %v", err)
	}
	in, err = Listen(protocol.Addr{Network: "unixgram", Path: own}, &sync.Mutex{}, nop)
	if err != nil {
		t.Fatalf("rebinding after Close: %v", err)
	}
	// A file put in the place of its socket is not its to remove.
	if err := os.Remove(own); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(own, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if b, _ := os.ReadFile(own); string(b) != "someone else's" {
		t.Errorf("Close removed a file it did not create: %q", b)
	}
}

// A UDP port another process holds is ErrAddrInUse; ListenFallback then
// gives a socket that receives nothing, with the error to report, and binds
// no other port (the client would not know it).
func TestTakenAddressFallsBackToNoSocket(t *testing.T) {
	holder, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	a := protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort(holder.LocalAddr().String())}
	applied := 0
	if in, err := Listen(a, &sync.Mutex{}, func([]byte, int) { applied++ }); !errors.Is(err, ErrAddrInUse) || in != nil {
		t.Fatalf("listen on a taken port: %v %v", in, err)
	}
	in, err := ListenFallback(a, &sync.Mutex{}, func([]byte, int) { applied++ })
	if !errors.Is(err, ErrAddrUnusable) || in == nil || in.LocalAddr() != nil {
		t.Fatalf("fallback: %v %v", in, err)
	}
	in.Drain(time.Now().Add(time.Second))
	if in.KernelDrops() != 0 || applied != 0 {
		t.Errorf("the fallback socket read something: drops %d, applied %d", in.KernelDrops(), applied)
	}
	in.Close()
	in.Close()

	dir := filepath.Join(t.TempDir(), "s")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "events.sock")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if in, err := ListenFallback(protocol.Addr{Network: "unixgram", Path: p}, &sync.Mutex{}, func([]byte, int) {}); !errors.Is(err, ErrAddrInUse) || in == nil {
		t.Errorf("fallback on a taken path: %v %v", in, err)
	}
	// A good address is Listen's own socket, with no error.
	in, err = ListenFallback(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &sync.Mutex{}, func([]byte, int) {})
	if err != nil || in.LocalAddr() == nil {
		t.Fatalf("fallback on a free address: %v", err)
	}
	in.Close()
}

// A flood into a receive buffer too small for it: what the kernel dropped
// is counted, and with what was applied it adds up to what was sent.
func TestKernelDropsAreCountedInAFlood(t *testing.T) {
	var mu sync.Mutex
	applied := 0
	in, err := Listen(protocol.Addr{Network: "udp", UDP: netip.MustParseAddrPort("127.0.0.1:0")}, &mu, func([]byte, int) { applied++ })
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.rc.Control(func(fd uintptr) {
		// The kernel doubles it and keeps a minimum: a few datagrams' room.
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if d := in.KernelDrops(); d != 0 {
		t.Fatalf("%d drops before any datagram", d)
	}
	conn, err := net.Dial("udp", in.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const flood = 2000
	sent := 0
	mu.Lock() // the reader waits: the flood piles up in the kernel
	for i := 0; i < flood; i++ {
		if _, err := conn.Write(make([]byte, 512)); err == nil {
			sent++
		}
	}
	mu.Unlock()
	in.Drain(time.Now().Add(5 * time.Second))
	mu.Lock()
	got := applied
	mu.Unlock()
	drops := in.KernelDrops()
	t.Logf("figure: %d datagrams sent into a %d-byte receive buffer: %d applied, %d counted as kernel drops", sent, 4096, got, drops)
	if drops == 0 || uint64(got)+drops != uint64(sent) {
		t.Errorf("sent %d, applied %d, kernel drops %d: they do not add up", sent, got, drops)
	}
	// Cumulative: read again, the same.
	if again := in.KernelDrops(); again != drops {
		t.Errorf("read again: %d, was %d", again, drops)
	}
}

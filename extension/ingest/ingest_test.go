package ingest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

package ingest

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

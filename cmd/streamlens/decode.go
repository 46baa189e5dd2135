package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"

	"github.com/streamlens/streamlens/protocol"
)

// decode is the extension's test mode: it listens where the extension would
// and prints every event the real decoder accepts as one JSON line
// ({"event": …}) and every rejection as {"error": …}. Other clients' tests
// (clients/node) run against it, so no client can drift from the decoder.
// It returns when ctx ends, or when out fails (a closed pipe: with SIGPIPE
// ignored the write fails instead of killing the program, and nobody
// reads what it would print).
func decode(ctx context.Context, addr string, out io.Writer) error {
	// Any UDP address (port 0 picks one; the first line says which), or
	// unix:/path.
	network, target := "udp", addr
	if a, err := protocol.ParseAddr(addr); err == nil && a.Network == "unixgram" {
		network, target = a.Network, a.Path
	}
	pc, err := net.ListenPacket(network, target)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); pc.Close() }()
	if _, err := fmt.Fprintf(out, "{\"listening\":%q}\n", pc.LocalAddr().String()); err != nil {
		pc.Close()
		return fmt.Errorf("output: %w", err)
	}
	enc := json.NewEncoder(out)
	var werr error // the first failed write
	emit := func(v any) {
		if err := enc.Encode(v); err != nil && werr == nil {
			werr = err
		}
	}
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		protocol.Decode(buf[:n], func(e *protocol.Event) {
			emit(map[string]any{"event": e.ToJSON()})
		}, func(err error) {
			emit(map[string]any{"error": err.Error()})
		})
		if werr != nil {
			pc.Close()
			return fmt.Errorf("output: %w", werr)
		}
	}
}

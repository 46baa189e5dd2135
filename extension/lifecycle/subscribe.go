package lifecycle

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/streamlens/streamlens/extension/config"
	"github.com/streamlens/streamlens/extension/counters"
	"github.com/streamlens/streamlens/extension/extapi"
	"github.com/streamlens/streamlens/extension/state"
	"github.com/streamlens/streamlens/extension/telemetry"
)

// subscribe listens for Telemetry API batches and subscribes to them. The
// listener binds STREAMLENS_TELEMETRY_ADDR (sandbox.localdomain:4243 by
// default, the name Lambda requires for a destination). Outside Lambda the
// name may not resolve (sam local, a laptop, a test sandbox); it then binds
// loopback, which is what sandbox.localdomain is inside Lambda, and still
// subscribes with the name.
func (r *runner) subscribe(ctx context.Context) error {
	host, port, _ := config.SplitHostPort(r.cfg.TelemetryAddr)
	addr := r.cfg.TelemetryAddr
	if host == destinationHost && !resolves(ctx, host) {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	tl, err := telemetry.Listen(addr, func(evs []telemetry.Event, bad int) {
		r.locked(func(t *state.Table) { bad += telemetry.Apply(t, evs, time.Now()) })
		r.counts.Add(counters.Counters{BadTelemetry: int64(bad)})
		r.notify()
	})
	if err != nil {
		return fmt.Errorf("STREAMLENS_TELEMETRY_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || host == "0.0.0.0" || ip != nil && ip.IsLoopback() {
		host = destinationHost
	}
	schema := "2022-12-13"
	if r.managed {
		schema = "2025-01-29" // the only schema Managed Instances accept
	}
	sub := extapi.Subscription{
		SchemaVersion: schema,
		Destination:   extapi.Destination{Protocol: "HTTP", URI: "http://" + host + ":" + strconv.Itoa(tl.Port())},
		// Platform events only: function logs would bring every log line of the
		// function through this process for nothing.
		Types: []string{"platform"},
		Buffering: extapi.Buffering{MaxItems: 1000, MaxBytes: 256 * 1024,
			TimeoutMs: int(r.cfg.TelemetryBuffer / time.Millisecond)},
	}
	if err := r.api.SubscribeTelemetry(ctx, sub); err != nil {
		tl.Close(context.Background())
		return err
	}
	r.tl = tl
	return nil
}

// resolves reports whether host resolves within a short time: an offline
// machine's resolver must not stall the extension's init.
func resolves(ctx context.Context, host string) bool {
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	return err == nil && len(addrs) > 0
}

// destinationHost is the only host Lambda accepts in a Telemetry API
// destination: the execution environment's own name.
const destinationHost = "sandbox.localdomain"

package telemetry

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// evictingListener bounds the listener's open connections without letting
// them lock the platform out. At the bound, netutil.LimitListener makes the
// next connection wait in the backlog until one closes: 32 connections that
// send half a header and stall held the platform's own POST back for their
// read timeout (5 s), and with it the platform's figures. Here a connection
// that arrives at the bound is accepted, and the oldest connection that
// never delivered a whole request — a stalled or idle one, not one whose
// batch is being handled — is closed to make room. The platform's POST is
// served before anyone else's held connection; a flood only closes its own
// connections sooner.
type evictingListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns []*trackedConn // open, oldest first
	// Evicted counts connections closed to make room.
	evicted atomic.Int64
}

// trackedConn is one accepted connection; busy is set while the server
// handles a request read on it (see ServeHTTP), so it is never evicted then.
type trackedConn struct {
	net.Conn
	l      *evictingListener
	busy   atomic.Bool
	served atomic.Bool // it delivered at least one whole request
	once   sync.Once
}

func newEvictingListener(ln net.Listener, max int) *evictingListener {
	return &evictingListener{Listener: ln, max: max}
}

func (l *evictingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	var victim *trackedConn
	if len(l.conns) >= l.max {
		victim = l.pickVictim()
	}
	l.conns = append(l.conns, tc)
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		victim.Close()
	}
	return tc, nil
}

// pickVictim is the oldest connection not handling a request, preferring
// one that never delivered a request (a stalled or hostile client) over an
// idle keep-alive one (the platform's, maybe). l.mu is held.
func (l *evictingListener) pickVictim() *trackedConn {
	var idle *trackedConn
	for _, c := range l.conns {
		if c.busy.Load() {
			continue
		}
		if !c.served.Load() {
			return c
		}
		if idle == nil {
			idle = c
		}
	}
	return idle // nil: every connection is handling a request; go over the bound briefly
}

func (l *evictingListener) forget(tc *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, c := range l.conns {
		if c == tc {
			l.conns = append(l.conns[:i], l.conns[i+1:]...)
			return
		}
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.forget(c) })
	return err
}

// connKey is the context key under which the server finds a request's
// connection (http.Server.ConnContext).
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// handling marks the request's connection busy until done is called.
func handling(ctx context.Context) (done func()) {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	if tc == nil {
		return func() {}
	}
	tc.busy.Store(true)
	return func() {
		tc.served.Store(true)
		tc.busy.Store(false)
	}
}

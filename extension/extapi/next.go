package extapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// nextConn is the connection /event/next is asked on. The answer to it is
// the INVOKE, which arrives when the function's own invocation starts: the
// one moment the extension must cost the function nothing. net/http's
// Transport reads that answer on a goroutine of its own and hands it over to
// the caller's, a wake-up more on the function's CPU; here the one goroutine
// blocked in Next reads it itself, and the request's bytes are built once.
type nextConn struct {
	conn net.Conn
	br   *bufio.Reader
	req  []byte // the GET, for the identifier it was built with
	id   string
}

// Next blocks until the next event.
func (c *Client) Next(ctx context.Context) (Event, error) {
	body, err := c.nextBody(ctx)
	if err != nil {
		return Event{}, fmt.Errorf("event/next: %w", err)
	}
	ev, err := DecodeEvent(body)
	if err != nil {
		return Event{}, fmt.Errorf("event/next: %w", err)
	}
	return ev, nil
}

// errNoAnswer is a kept-alive connection that failed before any byte of an
// answer came back: the API closed it while idle, so asking again on a new
// connection cannot ask twice.
var errNoAnswer = errors.New("connection closed before an answer")

// nextBody asks once on the kept-alive connection and, if that connection
// was found closed before it answered, once more on a new one (as
// net/http does for a GET).
func (c *Client) nextBody(ctx context.Context) ([]byte, error) {
	reused := c.next.conn != nil
	b, err := c.ask(ctx)
	if err != nil && reused && errors.Is(err, errNoAnswer) && ctx.Err() == nil {
		b, err = c.ask(ctx)
	}
	return b, err
}

func (c *Client) ask(ctx context.Context) ([]byte, error) {
	n := &c.next
	if n.conn == nil || n.id != c.id {
		c.closeNext()
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.host)
		if err != nil {
			return nil, err
		}
		n.conn, n.br, n.id = conn, bufio.NewReaderSize(conn, 4096), c.id
		n.req = []byte("GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: " + c.host +
			"\r\nUser-Agent: streamlens\r\n" + HeaderIdentifier + ": " + c.id + "\r\n\r\n")
	}
	// Cancelling ctx unblocks the read: a callback, no goroutine while it
	// waits. It gets the connection itself, not n, which closeNext clears.
	conn := n.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	b, keep, err := n.roundTrip()
	if !stop() {
		keep = false // the callback ran or runs: its deadline must not outlive this call
	}
	if err != nil || !keep {
		c.closeNext()
	}
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return b, err
}

// roundTrip writes the request and reads the whole answer; keep says the
// connection can carry the next one.
func (n *nextConn) roundTrip() (body []byte, keep bool, err error) {
	if _, err := n.conn.Write(n.req); err != nil {
		return nil, false, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if _, err := n.br.Peek(1); err != nil {
		return nil, false, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	resp, err := http.ReadResponse(n.br, nil)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, err
	}
	// Whatever is past the limit would be read as the next answer.
	if _, err := resp.Body.Read(make([]byte, 1)); err != io.EOF {
		return nil, false, fmt.Errorf("answer over 1 MiB")
	}
	if resp.StatusCode/100 != 2 {
		return nil, !resp.Close, apiError(resp.StatusCode, b)
	}
	return b, !resp.Close, nil
}

// closeNext drops the /event/next connection; the next call dials anew.
func (c *Client) closeNext() {
	if c.next.conn != nil {
		_ = c.next.conn.Close()
	}
	c.next = nextConn{}
}

// Close releases the client's connections.
func (c *Client) Close() {
	c.closeNext()
	c.http.CloseIdleConnections()
}

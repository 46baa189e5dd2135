package protocol_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamlens/streamlens/client"
	"github.com/streamlens/streamlens/protocol"
	"go.opentelemetry.io/otel/trace"
)

// The Go client is a module of its own (client/go.mod) and cannot import
// this package: it has a copy, client/internal/wire. These tests keep the
// copy what this package is, so that the two sides cannot drift apart.

// wireDir is the client module's copy of this package.
const wireDir = "../client/internal/wire"

// The shared vectors are the same file in both modules.
func TestClientVectorsInSync(t *testing.T) {
	ours, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile(filepath.Join(wireDir, "testdata/vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Errorf("%s/testdata/vectors.json differs from protocol/testdata/vectors.json: cp protocol/testdata/vectors.json %s/testdata/", wireDir, wireDir)
	}
}

// What the client encodes with (the format's types and limits, the encoder,
// the address parser) is this package's source with only the package clause
// changed; so is the decoder (decode.go), which only the client's tests use
// (TestClientRoundTrip below checks that this package's decoder reads what
// the client sends).
func TestClientWireInSync(t *testing.T) {
	for _, name := range []string{"protocol.go", "encode.go", "addr.go", "decode.go", "ring.go"} {
		ours, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := os.ReadFile(filepath.Join(wireDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(afterPackageClause(t, ours, "protocol"), afterPackageClause(t, theirs, "wire")) {
			t.Errorf("%s/%s differs from protocol/%s below the package clause: "+
				"sed '0,/^package protocol$/s//package wire/' protocol/%s > %s/%s (then drop the package comment)",
				wireDir, name, name, name, wireDir, name)
		}
	}
}

// afterPackageClause is src after its "package name" line: the package
// comments may differ.
func afterPackageClause(t *testing.T, src []byte, name string) []byte {
	t.Helper()
	clause := []byte("package " + name + "\n")
	if bytes.HasPrefix(src, clause) {
		return src[len(clause):]
	}
	i := bytes.Index(src, append([]byte("\n"), clause...))
	if i < 0 {
		t.Fatalf("no %q line", clause)
	}
	return src[i+1+len(clause):]
}

// A stream written through the client module decodes with this package's
// decoder to the events the client meant: every kind, escaped names, the
// flags, the hashes, the status.
func TestClientRoundTrip(t *testing.T) {
	pc, c := clientTo(t)
	c.SetCoalesce(1) // one datagram per event: the order of receipt is the order sent

	var out bytes.Buffer
	start := time.Now()
	s := c.Start(context.Background(), &out, client.StartOptions{RequestID: "req 1", Expected: 2, BundleID: "EQ-EU-50", ClientID: "desk-7",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", StartTime: start})
	s.WriteChunk([]byte("error\n"), client.ChunkOptions{Instrument: "ÉDF", ErrorEnvelope: true})
	s.WriteChunk([]byte("quote\n"), client.ChunkOptions{Instrument: "BRK B"})
	s.WriteChunk([]byte("BUNDLE_COMPLETE\n"), client.ChunkOptions{Trailer: true})
	declared := sha256.Sum256([]byte("error\nquote\n"))
	sum := s.End(client.EndOptions{Status: client.StatusError, Declared: &declared})

	var evs []protocol.Event
	buf := make([]byte, protocol.MaxDatagram)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for lines := 0; lines < 5; {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		protocol.Decode(buf[:n], func(e *protocol.Event) { evs = append(evs, *e); lines++ }, func(err error) {
			t.Errorf("the client sent a line the extension rejects: %v", err)
			lines++
		})
	}
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5: %+v", len(evs), evs)
	}
	for i, e := range evs {
		if e.StreamID != s.QuoteID() || e.RequestID != "req 1" || e.Seq != uint32(i) {
			t.Errorf("event %d: header %+v", i, e.Header)
		}
	}
	if e := evs[0]; e.Kind != protocol.KindStart || e.TimeNs != start.UnixNano() || e.Start != (protocol.Start{Expected: 2, BundleID: "EQ-EU-50", ClientID: "desk-7",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
		t.Errorf("start %+v", e)
	}
	for i, want := range []protocol.Chunk{
		{Instrument: "ÉDF", Bytes: 6, Flags: protocol.FlagError},
		{Instrument: "BRK B", Bytes: 6, Flags: protocol.FlagFirstUseful},
		{Bytes: 16, Flags: protocol.FlagTrailer},
	} {
		if e := evs[1+i]; e.Kind != protocol.KindChunk || e.Chunk != want {
			t.Errorf("chunk %d: %+v, want %+v", i, e.Chunk, want)
		}
	}
	e := evs[4].End
	if evs[4].Kind != protocol.KindEnd || e.Delivered != 2 || e.Expected != 2 || e.Bytes != 12 || !e.HasSHA256 || e.SHA256 != declared ||
		!e.HasDeclared || e.Declared != declared || e.Status != protocol.StatusError || e.Dropped != 0 || !e.HasBlocked {
		t.Errorf("end %+v", e)
	}
	// The client's Status is the wire's: the same values, the same names.
	if sum.Status.String() != protocol.StatusError.String() || uint8(client.StatusComplete) != uint8(protocol.StatusComplete) ||
		uint8(client.StatusAborted) != uint8(protocol.StatusAborted) || client.DefaultAddr != protocol.DefaultAddr {
		t.Errorf("summary %+v: client and protocol disagree", sum)
	}
}

// A span context the function extracted from the request (remote: the
// caller's, no span of the function's own) is sent as the caller's
// (tpr=1); the function's own span is not.
func TestClientSendsTheCallersParentAsSuch(t *testing.T) {
	pc, c := clientTo(t)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	for _, tc := range []struct {
		ctx    context.Context
		caller bool
	}{
		{trace.ContextWithRemoteSpanContext(context.Background(), sc), true},
		{trace.ContextWithSpanContext(context.Background(), sc.WithRemote(false)), false},
	} {
		s := c.Start(tc.ctx, io.Discard, client.StartOptions{RequestID: "r"})
		s.End(client.EndOptions{})
		buf := make([]byte, protocol.MaxDatagram)
		pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		var start *protocol.Event
		protocol.Decode(buf[:n], func(e *protocol.Event) {
			if e.Kind == protocol.KindStart {
				ev := *e
				start = &ev
			}
		}, func(err error) { t.Error(err) })
		if start == nil || start.Start.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" || start.Start.CallerParent != tc.caller {
			t.Errorf("remote %v: start %+v", tc.caller, start)
		}
	}
}

// clientTo returns a socket of the test's and a client of the client module
// sending to it, both closed with the test.
func clientTo(t *testing.T) (net.PacketConn, *client.Client) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := client.New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return pc, c
}

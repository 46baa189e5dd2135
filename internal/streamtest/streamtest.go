// Package streamtest makes the datagrams of realistic streams for tests and
// benchmarks of the extension's packages.
package streamtest

import (
	"fmt"
	"strconv"

	"github.com/streamlens/streamlens/protocol"
)

// RequestID is the request id of every stream Datagrams makes.
const RequestID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"

// T0 is the start time of every stream Datagrams makes (ns since the epoch).
const T0 = int64(1732300000000000000)

// Datagrams returns the datagrams of n complete 50-instrument streams, one
// event per datagram, chunks 1 ms apart.
func Datagrams(n int) [][]byte { return DatagramsApart(n, func(int, int) int64 { return 1e6 }) }

// DatagramsApart is Datagrams with chunk c of stream i gap(i, c) ns after the
// one before it.
func DatagramsApart(n int, gap func(i, c int) int64) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		h := protocol.Header{StreamID: fmt.Sprintf("0193a6f2-7c1e-7b3a-9d4e-%012d", i), RequestID: RequestID, TimeNs: T0}
		out = append(out, protocol.AppendStart(nil, h, protocol.Start{Expected: 50, BundleID: "EQ-EU-50"}))
		for c := 0; c < 50; c++ {
			h.Seq++
			h.TimeNs += gap(i, c)
			out = append(out, protocol.AppendChunk(nil, h, protocol.Chunk{Instrument: "INST" + strconv.Itoa(c), Bytes: 190}))
		}
		h.Seq++
		out = append(out, protocol.AppendEnd(nil, h, protocol.End{Delivered: 50, Expected: 50, Bytes: 9500, HasSHA256: true, Status: protocol.StatusComplete}))
	}
	return out
}

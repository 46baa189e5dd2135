// Package wire is the client module's copy of the streamlens wire format
// (the main module's package protocol, docs/protocol.md): the encoder the
// client sends with, the address parser it shares with the extension, and
// the decoder its tests read datagrams back with.
//
// It is a copy, not an import, so that a function linking the client does
// not depend on the main module (its CloudWatch SDK, collector pdata, and its
// go line). protocol.go, encode.go and addr.go are protocol's files with only
// the package clause changed, and the main module's
// protocol/vectors_sync_test.go fails when they, or testdata/vectors.json,
// differ; that test also decodes what the client sends with protocol's own
// decoder. decode.go is protocol's decoder as of the copy, for the client's
// tests only: the round trip through protocol's decoder is what keeps the
// two sides in agreement.
package wire

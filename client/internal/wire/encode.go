package wire

import "strconv"

const hexdigits = "0123456789abcdef"

// AppendStart appends a start line (with its trailing newline) to dst.
// Like the other Append functions it does not allocate when dst has room.
func AppendStart(dst []byte, h Header, s Start) []byte {
	dst = appendHeader(dst, "start", h)
	if s.Expected >= 0 {
		dst = appendInt(dst, "exp", s.Expected)
	}
	dst = appendStr(dst, "tp", s.TraceParent)
	if s.CallerParent {
		dst = append(dst, " tpr=1"...)
	}
	dst = appendStr(dst, "bundle", s.BundleID)
	dst = appendStr(dst, "client", s.ClientID)
	return append(dst, '\n')
}

// AppendChunk appends a chunk line to dst.
func AppendChunk(dst []byte, h Header, c Chunk) []byte {
	return appendChunkBody(appendHeader(dst, "chunk", h), c)
}

// AppendChunkPrefix appends the part of a stream's chunk lines that never
// changes ("sl1 chunk <streamId> <requestId> "), for AppendChunkPrefixed.
func AppendChunkPrefix(dst []byte, streamID, requestID string) []byte {
	return appendPrefix(dst, "chunk", streamID, requestID)
}

// AppendChunkPrefixed is AppendChunk for a stream whose AppendChunkPrefix was
// computed once: the ids are not escaped again on every chunk.
func AppendChunkPrefixed(dst, prefix []byte, seq uint32, timeNs int64, c Chunk) []byte {
	return appendChunkBody(appendSeqTime(append(dst, prefix...), seq, timeNs), c)
}

func appendChunkBody(dst []byte, c Chunk) []byte {
	dst = appendStr(dst, "inst", c.Instrument)
	dst = appendInt(dst, "bytes", c.Bytes)
	if c.Flags != 0 {
		dst = append(dst, " flags="...)
		if c.Flags&FlagFirstUseful != 0 {
			dst = append(dst, 'u')
		}
		if c.Flags&FlagError != 0 {
			dst = append(dst, 'e')
		}
		if c.Flags&FlagTrailer != 0 {
			dst = append(dst, 't')
		}
	}
	return append(dst, '\n')
}

// AppendEnd appends an end line to dst.
func AppendEnd(dst []byte, h Header, e End) []byte {
	dst = appendHeader(dst, "end", h)
	dst = appendInt(dst, "delivered", e.Delivered)
	if e.Expected >= 0 {
		dst = appendInt(dst, "exp", e.Expected)
	}
	dst = appendInt(dst, "bytes", e.Bytes)
	if e.HasSHA256 {
		dst = appendHex(dst, "sha256", &e.SHA256)
	}
	if e.HasDeclared {
		dst = appendHex(dst, "declared", &e.Declared)
	}
	dst = append(dst, " status="...)
	dst = append(dst, e.Status.String()...)
	if e.Dropped > 0 {
		dst = appendInt(dst, "dropped", e.Dropped)
	}
	if e.HasBlocked {
		dst = appendInt(dst, "blocked_us", e.BlockedUs)
		dst = appendInt(dst, "blocked_max_us", e.BlockedMaxUs)
	}
	return append(dst, '\n')
}

func appendHeader(dst []byte, kind string, h Header) []byte {
	return appendSeqTime(appendPrefix(dst, kind, h.StreamID, h.RequestID), h.Seq, h.TimeNs)
}

// appendPrefix writes "sl1 <kind> <streamId> <requestId> ": the part of a line
// that is the same for every event of one kind in one stream.
func appendPrefix(dst []byte, kind, streamID, requestID string) []byte {
	dst = append(dst, Version...)
	dst = append(dst, ' ')
	dst = append(dst, kind...)
	dst = append(dst, ' ')
	dst = appendEscaped(dst, streamID)
	dst = append(dst, ' ')
	dst = appendEscaped(dst, requestID)
	return append(dst, ' ')
}

func appendSeqTime(dst []byte, seq uint32, timeNs int64) []byte {
	dst = strconv.AppendUint(dst, uint64(seq), 10)
	dst = append(dst, ' ')
	return strconv.AppendInt(dst, timeNs, 10)
}

func appendInt(dst []byte, key string, v int64) []byte {
	dst = append(dst, ' ')
	dst = append(dst, key...)
	dst = append(dst, '=')
	return strconv.AppendInt(dst, v, 10)
}

func appendStr(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ' ')
	dst = append(dst, key...)
	dst = append(dst, '=')
	return appendEscaped(dst, v)
}

func appendHex(dst []byte, key string, sum *[32]byte) []byte {
	dst = append(dst, ' ')
	dst = append(dst, key...)
	dst = append(dst, '=')
	for _, b := range sum {
		dst = append(dst, hexdigits[b>>4], hexdigits[b&0xf])
	}
	return dst
}

// appendEscaped percent-escapes everything that is not printable ASCII, plus '%'
// itself, so a value can never split a line or a field.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '%' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexdigits[c>>4], hexdigits[c&0xf])
	}
	return dst
}

'use strict';
// streamlens client for Node.js Lambda functions. It wraps the response stream
// of awslambda.streamifyResponse exactly as the Go client wraps an io.Writer:
// start, chunk (instrument, first useful, error envelope, trailer) and end
// events go to the streamlens extension as UDP datagrams in the sl1 wire format
// (docs/protocol.md). Sending never blocks and never fails the response: a
// datagram that cannot be sent is dropped and counted, and the count travels in
// the stream's end event.
//
// Events share datagrams as the Go client's do (client/stream.go): the start
// goes with the first payload chunk, the end at once, and up to
// STREAMLENS_COALESCE (64) chunk events in between wait at most 2 ms for
// company. The extension's CPU, and this process's, scale with datagrams, not
// events; each event keeps its own time and sequence number.
const dgram = require('node:dgram');
const crypto = require('node:crypto');

const VERSION = 'sl1';
const DEFAULT_ADDR = '127.0.0.1:8126';
const MAX_DATAGRAM = 8192;
// Datagrams handed to libuv and not yet sent: beyond this the event loop is
// not keeping up, and events are dropped (counted) instead of queued without
// bound.
const MAX_IN_FLIGHT = 1024;
// Chunk events per datagram at most (STREAMLENS_COALESCE, 1 to 64), and how
// long a waiting event may wait for company: the same bounds as the Go client.
const DEFAULT_COALESCE = 64;
const MAX_COALESCE = 64;
const COALESCE_WAIT_MS = 2;
// The longest event the protocol allows (two ids and a value escaped at three
// bytes a byte, keys, numbers, flags): a datagram with events waiting is sent
// once less than this is left, so the next event always fits.
const MAX_EVENT_BYTES = 3 * (2 * 128 + 256) + 128;
const COALESCE_BYTES = MAX_DATAGRAM - MAX_EVENT_BYTES;

const STATUS = Object.freeze({ complete: 'complete', error: 'error', aborted: 'aborted' });

// escape percent-escapes everything outside printable ASCII, plus '%', so a
// value can never split a line or a field (same rule as the Go encoder).
function escape(value) {
  const buf = Buffer.from(String(value), 'utf8');
  let out = '';
  for (const c of buf) {
    if (c > 0x20 && c < 0x7f && c !== 0x25) out += String.fromCharCode(c);
    else out += '%' + c.toString(16).padStart(2, '0');
  }
  return out;
}

function header(kind, h) {
  return `${VERSION} ${kind} ${escape(h.streamId)} ${escape(h.requestId)} ${h.seq} ${h.timeNs}`;
}

function field(key, value) {
  return value === undefined || value === null || value === '' ? '' : ` ${key}=${escape(value)}`;
}

function encodeStart(h, s) {
  let line = header('start', h);
  if (s.expected !== undefined && s.expected >= 0) line += ` exp=${s.expected}`;
  return line + field('tp', s.traceparent) + (s.traceparent && s.callerParent ? ' tpr=1' : '') +
    field('bundle', s.bundleId) + field('client', s.clientId) + '\n';
}

function encodeChunk(h, c) {
  let line = header('chunk', h) + field('inst', c.instrument) + ` bytes=${c.bytes}`;
  if (c.flags) line += ` flags=${c.flags}`;
  return line + '\n';
}

function encodeEnd(h, e) {
  let line = header('end', h) + ` delivered=${e.delivered}`;
  if (e.expected !== undefined && e.expected >= 0) line += ` exp=${e.expected}`;
  line += ` bytes=${e.bytes}`;
  if (e.sha256) line += ` sha256=${e.sha256}`;
  if (e.declared) line += ` declared=${e.declared}`;
  line += ` status=${e.status}`;
  if (e.dropped > 0) line += ` dropped=${e.dropped}`;
  return line + '\n';
}

// encodeEvent encodes one event given in the field names of
// protocol/testdata/vectors.json (timeNs as a decimal string or BigInt).
function encodeEvent(ev) {
  const h = { streamId: ev.streamId, requestId: ev.requestId, seq: ev.seq, timeNs: String(ev.timeNs) };
  switch (ev.kind) {
    case 'start': return encodeStart(h, ev);
    case 'chunk': return encodeChunk(h, ev);
    case 'end': return encodeEnd(h, ev);
  }
  throw new Error(`unknown event kind ${ev.kind}`);
}

// uuidv7: 48-bit Unix milliseconds, version 7, variant 10, random rest.
function uuidv7() {
  const b = crypto.randomBytes(16);
  let ms = BigInt(Date.now());
  for (let i = 5; i >= 0; i--) { b[i] = Number(ms & 0xffn); ms >>= 8n; }
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function parseAddr(addr) {
  const m = /^(?:udp:)?(\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new Error(`STREAMLENS_ADDR=${JSON.stringify(addr)}: want IP:port (e.g. ${DEFAULT_ADDR}); the Node client speaks UDP only`);
  }
  const host = m[1] === 'localhost' ? '127.0.0.1' : m[1].replace(/^\[|\]$/g, '');
  return { host, port: Number(m[2]), family: host.includes(':') ? 'udp6' : 'udp4' };
}

class Client {
  // addr: "IP:port". Create one per process, at init (outside the handler).
  // An address the client cannot use throws here; Client.fromEnv never does.
  // opts: maxInFlight (datagrams handed to libuv at most), coalesce (chunk
  // events per datagram, 1 to 64; 1 sends each event on its own), maxWaitMs
  // (how long events wait to share a datagram; tests that count datagrams
  // set it long, so that a slow machine's pause cannot split a batch).
  constructor(addr = DEFAULT_ADDR, { maxInFlight = MAX_IN_FLIGHT, coalesce = DEFAULT_COALESCE, maxWaitMs = COALESCE_WAIT_MS } = {}) {
    const { host, port, family } = parseAddr(addr);
    this.coalesce = clampCoalesce(coalesce);
    this._maxWait = maxWaitMs;
    // One timer for every stream with events waiting, as in the Go client.
    this._waiting = new Set();
    this._timer = null;
    this.sent = 0;
    this.dropped = 0;
    this._inFlight = 0;
    this._max = maxInFlight;
    this._ready = false;
    this._closed = false;
    // Events sent before the socket is connected (a stream started right
    // after init) wait here, bounded like the in-flight sends, and go out
    // once it is.
    this._early = [];
    this._sock = dgram.createSocket(family);
    // Errors (ECONNREFUSED when nothing listens, ENOBUFS…) are drops, never
    // exceptions in the function.
    this._sock.on('error', () => { this.dropped++; });
    // Connected, so a dead listener surfaces as errors that are counted.
    this._sock.connect(port, host, () => {
      this._ready = true;
      // _send said yes to these: a drop now is reported through onLost.
      for (const [buf, onLost] of this._early.splice(0)) {
        if (!this._transmit(buf, onLost) && onLost) onLost();
      }
    });
    this._sock.unref(); // never keeps the runtime's event loop alive
  }

  // fromEnv reads STREAMLENS_ADDR. It never throws: metrics are not worth a
  // failed init. An address the Node client cannot use (a unix: socket, which
  // node:dgram does not speak, or nonsense) gives a disabled client: streams
  // write through, their events are counted as dropped, and the reason is in
  // client.disabled and said once on stderr.
  static fromEnv(env = process.env) {
    const addr = env.STREAMLENS_ADDR || DEFAULT_ADDR;
    // off: switched off without a deploy, as with the Go client; said by
    // the variable itself, not on stderr.
    if (addr === 'off') return new DisabledClient('STREAMLENS_ADDR=off');
    // A bad STREAMLENS_COALESCE keeps the default: never a failed init.
    const n = Number.parseInt(env.STREAMLENS_COALESCE, 10);
    try {
      return new Client(addr, Number.isFinite(n) ? { coalesce: n } : {});
    } catch (err) {
      const reason = String(err && err.message || err);
      process.stderr.write(`streamlens: client disabled: ${reason}\n`);
      return new DisabledClient(reason);
    }
  }

  stats() { return { sent: this.sent, dropped: this.dropped }; }

  close() {
    if (!this._closed) {
      this._flushWaiting(); // what waits goes out (or is counted) first
      this._closed = true;
      this._sock.close();
    }
  }

  // _wait has s's waiting events sent within maxWaitMs unless something
  // sends them before. The timer is unref'd: it never keeps a process alive.
  _wait(s) {
    this._waiting.add(s);
    if (this._timer === null) {
      this._timer = setTimeout(() => this._flushWaiting(), this._maxWait);
      if (typeof this._timer.unref === 'function') this._timer.unref();
    }
  }

  _flushWaiting() {
    if (this._timer !== null) { clearTimeout(this._timer); this._timer = null; }
    const ws = [...this._waiting];
    this._waiting.clear();
    for (const s of ws) s._flush();
  }

  // _send hands one datagram (one or more encoded lines) to the socket.
  // false: dropped now. onLost, if given, is called if the send fails later
  // (the kernel refused it), so the stream can count its events as dropped.
  _send(datagram, onLost) {
    const buf = Buffer.from(datagram, 'latin1'); // the encoder emits ASCII only
    if (this._closed || buf.length > MAX_DATAGRAM) {
      this.dropped++;
      return false;
    }
    if (!this._ready) {
      if (this._early.length >= this._max) {
        this.dropped++;
        return false;
      }
      this._early.push([buf, onLost]);
      return true;
    }
    return this._transmit(buf, onLost);
  }

  _transmit(buf, onLost) {
    if (this._closed || this._inFlight >= this._max) {
      this.dropped++;
      return false;
    }
    this._inFlight++;
    try {
      this._sock.send(buf, (err) => {
        this._inFlight--;
        if (err) {
          this.dropped++;
          if (onLost) onLost();
        } else {
          this.sent++;
        }
      });
    } catch {
      this._inFlight--;
      this.dropped++;
      return false;
    }
    return true;
  }

  // start begins recording a stream written to responseStream (a Writable).
  // opts: { requestId (context.awsRequestId), expected, traceparent,
  // callerParent (the traceparent is the caller's, taken from the request:
  // the function made no span of its own), bundleId, clientId, startTime
  // (ms since epoch; default now), explicitFirstUseful, skipPayloadHash }.
  start(responseStream, opts = {}) {
    return new Stream(this, responseStream, opts);
  }
}

// DisabledClient stands in for a client whose address could not be used:
// streams write through and count their events as dropped.
class DisabledClient {
  constructor(reason) { this.disabled = reason; this.sent = 0; this.dropped = 0; this.coalesce = 1; }

  stats() { return { sent: this.sent, dropped: this.dropped }; }

  close() {}

  _send() { this.dropped++; return false; }

  _wait() {}

  start(responseStream, opts = {}) { return new Stream(this, responseStream, opts); }
}

// clampCoalesce bounds a coalesce count to 1..64, as the Go client's SetCoalesce.
function clampCoalesce(n) {
  n = Math.trunc(Number(n));
  if (!Number.isFinite(n)) return DEFAULT_COALESCE;
  return Math.min(Math.max(n, 1), MAX_COALESCE);
}

// declaredHex turns the SHA-256 a function announced into the 64 lower-case
// hex digits of the wire format: hex (any case), base64 of 32 bytes, or a
// 32-byte Buffer. Anything else gives '' — the end event then goes without
// it rather than being rejected whole, which would count a complete stream
// as truncated.
function declaredHex(v) {
  if (v === undefined || v === null || v === '') return '';
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return v.length === 32 ? Buffer.from(v).toString('hex') : '';
  const str = String(v).trim();
  if (/^[0-9a-fA-F]{64}$/.test(str)) return str.toLowerCase();
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(str)) {
    const b = Buffer.from(str, str.includes('-') || str.includes('_') ? 'base64url' : 'base64');
    if (b.length === 32) return b.toString('hex');
  }
  return '';
}

// EXPLICIT marks a response stream an explicit client records: the zero-code
// instrumentation (auto.js) then leaves that request's stream to it. A
// Symbol.for key, so that two copies of this module (the layer's and the
// function's own) agree.
const EXPLICIT = Symbol.for('streamlens.client.explicit');

class Stream {
  constructor(client, w, opts) {
    this._c = client;
    this._w = w;
    this.quoteId = uuidv7(); // generated here, never taken from the request
    this._requestId = opts.requestId || 'unknown';
    this._expected = opts.expected > 0 ? opts.expected : -1;
    this._explicitFirst = !!opts.explicitFirstUseful;
    this._firstSent = false;
    this._hash = opts.skipPayloadHash ? null : crypto.createHash('sha256');
    this._seq = 0;
    this.delivered = 0;
    this.bytes = 0;
    this.dropped = 0;
    this._ended = false;
    this._writeFailed = false;
    // Events waiting to share a datagram, and how many bytes they hold.
    this._lines = [];
    this._n = 0;
    this._lost = (k) => { if (!this._ended) this.dropped += k; };
    this._chunkPrefix = `${VERSION} chunk ${escape(this.quoteId)} ${escape(this._requestId)} `;
    // Wall clock at start, advanced by the monotonic clock (as the Go client).
    const startMs = opts.startTime ?? Date.now();
    this._wall0 = BigInt(Math.round(startMs * 1e6));
    this._mono0 = process.hrtime.bigint() - (BigInt(Date.now()) * 1000000n - this._wall0);
    if (w && typeof w === 'object') {
      if (!opts._auto) {
        try { w[EXPLICIT] = true; } catch { /* a frozen stream: nothing to yield to */ }
      }
      if (typeof w.on === 'function') w.on('error', () => { this._writeFailed = true; });
    }
    // The start waits for the first chunk, to share its datagram (or 2 ms,
    // so a stream slow to its first byte is still known to the extension).
    this._queue(encodeStart(this._h(this._wall0), {
      expected: this._expected, traceparent: opts.traceparent, callerParent: opts.callerParent,
      bundleId: opts.bundleId, clientId: opts.clientId,
    }), false);
  }

  _now() { return this._wall0 + (process.hrtime.bigint() - this._mono0); }

  _h(timeNs) { return { streamId: this.quoteId, requestId: this._requestId, seq: this._seq, timeNs }; }

  // _queue adds one event; now sends it with what waits at once.
  _queue(line, now) {
    if (this._n > 0 && this._n + line.length > MAX_DATAGRAM) this._flush(); // an event too long to join
    const wasEmpty = this._lines.length === 0;
    this._lines.push(line);
    this._n += line.length;
    if (now || this._lines.length >= this._c.coalesce || this._n >= COALESCE_BYTES) {
      this._flush();
    } else if (wasEmpty) {
      this._c._wait(this);
    }
  }

  // _flush sends the events waiting as one datagram.
  _flush() {
    const k = this._lines.length;
    if (k === 0) return;
    const datagram = this._lines.length === 1 ? this._lines[0] : this._lines.join('');
    this._lines = [];
    this._n = 0;
    if (!this._c || !this._c._send(datagram, () => this._lost(k))) this.dropped += k;
  }

  // write writes a payload chunk without an instrument.
  write(chunk) { return this.writeChunk(chunk); }

  // writeChunk writes to the response stream and records the chunk. opts:
  // { instrument, firstUseful, errorEnvelope, trailer }. Returns what the
  // Writable's write returned (backpressure is the caller's, as before).
  writeChunk(chunk, opts = {}) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const ok = this._w.write(buf);
    this._record(buf, opts);
    return ok;
  }

  // _record records a chunk the caller has written (auto.js writes through
  // the stream's own write and records here): data is a Buffer, or a string
  // in encoding of n bytes (hashed as it is, without a copy).
  _record(data, opts = {}, encoding = undefined, n = data.length) {
    let flags = '';
    if (opts.trailer) {
      flags = 't';
    } else {
      this.delivered++;
      this.bytes += n;
      if (this._hash) this._hash.update(data, encoding);
      if (!this._firstSent && (opts.firstUseful || (!this._explicitFirst && !opts.errorEnvelope))) {
        flags += 'u';
        this._firstSent = true;
      }
      if (opts.errorEnvelope) flags += 'e';
    }
    this._seq++;
    // The first payload chunk goes at once, with the start: business TTFB,
    // and what tells the extension the first byte is out.
    const now = flags.includes('u') || (this.delivered === 1 && !opts.trailer);
    // The ids are escaped once per stream (_chunkPrefix), as the Go client
    // does: the same line encodeChunk makes, for a fraction of its cost.
    let line = `${this._chunkPrefix}${this._seq} ${this._now()}${field('inst', opts.instrument)} bytes=${n}`;
    if (flags) line += ` flags=${flags}`;
    this._queue(line + '\n', now);
  }

  // end sends the end event. opts: { status: 'complete'|'error'|'aborted',
  // declared: the SHA-256 the function announced, as hex, base64 or a
  // 32-byte Buffer }. Returns the summary; summary.declaredIgnored is true
  // when declared was none of those (it is then left out of the event).
  end(opts = {}) {
    // A status the wire format does not know would get the end rejected:
    // it is taken as an error, which is what a caller who set one meant.
    const status = opts.status ? (STATUS[opts.status] || STATUS.error) : (this._writeFailed ? STATUS.aborted : STATUS.complete);
    const sha256 = this._hash ? this._hash.copy().digest('hex') : '';
    const declared = declaredHex(opts.declared);
    const summary = { quoteId: this.quoteId, delivered: this.delivered, bytes: this.bytes, sha256, status, dropped: this.dropped };
    if (declared === '' && opts.declared !== undefined && opts.declared !== null && opts.declared !== '') summary.declaredIgnored = true;
    if (this._ended) return this._summary || summary;
    this._seq++;
    let line = encodeEnd(this._h(this._now()), {
      delivered: this.delivered, expected: this._expected, bytes: this.bytes, sha256, declared, status, dropped: this.dropped,
    });
    // blockedUs, blockedMaxUs: time the writer waited for 'drain' after a
    // write() returned false, in all and the longest once (auto.js
    // measures them; the extension writes WriteBlockedTime).
    if (opts.blockedUs !== undefined) {
      const us = (v) => Math.max(0, Math.min(900000000, Math.round(Number(v) || 0)));
      line = line.slice(0, -1) + ` blocked_us=${us(opts.blockedUs)} blocked_max_us=${us(opts.blockedMaxUs)}\n`;
    }
    // The end goes at once, with whatever still waits, in one datagram.
    this._queue(line, true);
    this._ended = true;
    this._summary = summary;
    return summary;
  }
}

module.exports = { Client, Stream, STATUS, EXPLICIT, encodeEvent, escape, uuidv7, parseAddr, declaredHex, MAX_DATAGRAM };

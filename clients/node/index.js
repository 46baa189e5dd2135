'use strict';
// streamlens client for Node.js Lambda functions. It wraps the response stream
// of awslambda.streamifyResponse exactly as the Go client wraps an io.Writer:
// start, chunk (instrument, first useful, error envelope, trailer) and end
// events go to the streamlens extension as UDP datagrams in the sl1 wire format
// (docs/protocol.md). Sending never blocks and never fails the response: a
// datagram that cannot be sent is dropped and counted, and the count travels in
// the stream's end event.

const dgram = require('node:dgram');
const crypto = require('node:crypto');

const VERSION = 'sl1';
const DEFAULT_ADDR = '127.0.0.1:8126';
const MAX_DATAGRAM = 8192;
// Datagrams handed to libuv and not yet sent: beyond this the event loop is
// not keeping up, and events are dropped (counted) instead of queued without
// bound.
const MAX_IN_FLIGHT = 1024;

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
  return line + field('tp', s.traceparent) + field('bundle', s.bundleId) + field('client', s.clientId) + '\n';
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
  constructor(addr = DEFAULT_ADDR, { maxInFlight = MAX_IN_FLIGHT } = {}) {
    const { host, port, family } = parseAddr(addr);
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
      for (const buf of this._early.splice(0)) this._transmit(buf);
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
    try {
      return new Client(addr);
    } catch (err) {
      const reason = String(err && err.message || err);
      process.stderr.write(`streamlens: client disabled: ${reason}\n`);
      return new DisabledClient(reason);
    }
  }

  stats() { return { sent: this.sent, dropped: this.dropped }; }

  close() {
    if (!this._closed) { this._closed = true; this._sock.close(); }
  }

  _send(line) {
    const buf = Buffer.from(line, 'latin1'); // the encoder emits ASCII only
    if (this._closed || buf.length > MAX_DATAGRAM) {
      this.dropped++;
      return false;
    }
    if (!this._ready) {
      if (this._early.length >= this._max) {
        this.dropped++;
        return false;
      }
      this._early.push(buf);
      return true;
    }
    return this._transmit(buf);
  }

  _transmit(buf) {
    if (this._closed || this._inFlight >= this._max) {
      this.dropped++;
      return false;
    }
    this._inFlight++;
    try {
      this._sock.send(buf, (err) => {
        this._inFlight--;
        if (err) this.dropped++; else this.sent++;
      });
    } catch {
      this._inFlight--;
      this.dropped++;
      return false;
    }
    return true;
  }

  // start begins recording a stream written to responseStream (a Writable).
  // opts: { requestId (context.awsRequestId), expected, traceparent, bundleId,
  // clientId, startTime (ms since epoch; default now), explicitFirstUseful,
  // skipPayloadHash }.
  start(responseStream, opts = {}) {
    return new Stream(this, responseStream, opts);
  }
}

// DisabledClient stands in for a client whose address could not be used:
// streams write through and count their events as dropped.
class DisabledClient {
  constructor(reason) { this.disabled = reason; this.sent = 0; this.dropped = 0; }

  stats() { return { sent: this.sent, dropped: this.dropped }; }

  close() {}

  _send() { this.dropped++; return false; }

  start(responseStream, opts = {}) { return new Stream(this, responseStream, opts); }
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
    // Wall clock at start, advanced by the monotonic clock (as the Go client).
    const startMs = opts.startTime ?? Date.now();
    this._wall0 = BigInt(Math.round(startMs * 1e6));
    this._mono0 = process.hrtime.bigint() - (BigInt(Date.now()) * 1000000n - this._wall0);
    if (w && typeof w.on === 'function') w.on('error', () => { this._writeFailed = true; });
    this._emit(encodeStart(this._h(this._wall0), {
      expected: this._expected, traceparent: opts.traceparent, bundleId: opts.bundleId, clientId: opts.clientId,
    }));
  }

  _now() { return this._wall0 + (process.hrtime.bigint() - this._mono0); }

  _h(timeNs) { return { streamId: this.quoteId, requestId: this._requestId, seq: this._seq, timeNs }; }

  _emit(line) { if (!this._c || !this._c._send(line)) this.dropped++; }

  // write writes a payload chunk without an instrument.
  write(chunk) { return this.writeChunk(chunk); }

  // writeChunk writes to the response stream and records the chunk. opts:
  // { instrument, firstUseful, errorEnvelope, trailer }. Returns what the
  // Writable's write returned (backpressure is the caller's, as before).
  writeChunk(chunk, opts = {}) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const ok = this._w.write(buf);
    let flags = '';
    if (opts.trailer) {
      flags = 't';
    } else {
      this.delivered++;
      this.bytes += buf.length;
      if (this._hash) this._hash.update(buf);
      if (!this._firstSent && (opts.firstUseful || (!this._explicitFirst && !opts.errorEnvelope))) {
        flags += 'u';
        this._firstSent = true;
      }
      if (opts.errorEnvelope) flags += 'e';
    }
    this._seq++;
    this._emit(encodeChunk(this._h(this._now()), { instrument: opts.instrument, bytes: buf.length, flags }));
    return ok;
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
    if (this._ended) return summary;
    this._ended = true;
    this._seq++;
    this._emit(encodeEnd(this._h(this._now()), {
      delivered: this.delivered, expected: this._expected, bytes: this.bytes, sha256, declared, status, dropped: this.dropped,
    }));
    return summary;
  }
}

module.exports = { Client, Stream, STATUS, encodeEvent, escape, uuidv7, parseAddr, declaredHex, MAX_DATAGRAM };

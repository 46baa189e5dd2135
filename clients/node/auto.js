'use strict';
// Zero-code streamlens instrumentation for Node.js response-streaming
// functions. Preloaded with `node --require` (the layer's /opt/streamlens-node
// exec wrapper puts it in NODE_OPTIONS), it records every response stream of
// a handler made with awslambda.streamifyResponse, with no change to the
// function: start at handler entry, a chunk per non-empty write (bytes, time;
// the first one ends business TTFB), the time write() spent under
// backpressure (false until 'drain'), and an end whose status is complete
// (end()), error (the handler threw or rejected, or destroyed the stream) or
// aborted (the stream failed under it, e.g. the reader went away).
//
// Why it hooks awslambda.streamifyResponse: the runtime interface client
// (aws-lambda-ric, which Lambda's Node runtimes are built from) defines the
// awslambda global before it imports the handler's module, and a streaming
// handler is whatever that function marks with
// Symbol.for('aws.lambda.runtime.handler.streaming'). The RIC's loader and
// invoke loop are module-private (one bundled ES module), so the global is
// the one public seam: a setter on globalThis.awslambda sees the RIC install
// it and wraps streamifyResponse, which then returns the handler wrapped,
// carrying the same marks. CommonJS and ES module handlers both call the
// global. Handlers not made with streamifyResponse are never touched.
//
// Rules it keeps: it never throws into the function (its own work is in
// try/catch; the handler's errors and return value pass through untouched),
// it never changes the bytes written or their order (it calls the stream's
// own write with the caller's arguments and only reads them), and it yields
// to the explicit client: a stream that a Client.start claimed (the
// EXPLICIT mark, set per response stream, i.e. per request) is left to it,
// provided the claim comes before the stream's first write and before its
// first 2 ms have passed (in practice: before the handler's first await).

const { Client, EXPLICIT } = require('./index.js');

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const WRAPPED = Symbol.for('streamlens.auto.wrapped');
// How long a stream's start waits for its first write before it is sent on
// its own: a stream that hangs before its first byte must still be known.
const START_WAIT_MS = 2;

let client = null;
// The record of each response stream, for what HttpResponseStream.from
// returns if it ever returns another object than the stream it was given.
const records = new WeakMap();

function getClient() {
  if (client === null) client = Client.fromEnv();
  return client;
}

// traceparent of the function's active OpenTelemetry span, if the OTel API
// is loaded and a span is active; '' otherwise.
function activeTraceparent() {
  const api = globalThis[Symbol.for('opentelemetry.js.api.1')];
  const ctx = api && api.context && typeof api.context.active === 'function' ? api.context.active() : null;
  const span = ctx && typeof ctx.getValue === 'function' ? ctx.getValue(Symbol.for('OpenTelemetry Context Key SPAN')) : null;
  const sc = span && typeof span.spanContext === 'function' ? span.spanContext() : null;
  if (!sc || !/^[0-9a-f]{32}$/.test(sc.traceId) || !/^[0-9a-f]{16}$/.test(sc.spanId)) return '';
  if (/^0+$/.test(sc.traceId) || /^0+$/.test(sc.spanId)) return '';
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) === 1 ? '01' : '00'}`;
}

// xrayTraceparent converts the invocation's X-Ray header (context.xRayTraceId,
// "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
// to a traceparent, the way the extension reads it from INVOKE (trace id:
// the epoch and unique parts joined). Only a sampled header: the extension
// takes an X-Ray header without Sampled=1 as undecided, which a traceparent
// cannot say. It matters where the extension gets no INVOKE (Lambda Managed
// Instances); elsewhere it is the parent the extension would pick anyway.
function xrayTraceparent(h) {
  if (typeof h !== 'string') return '';
  const kv = Object.fromEntries(h.split(';').map((p) => p.trim().split('=')));
  const m = /^1-([0-9a-f]{8})-([0-9a-f]{24})$/.exec(kv.Root || '');
  if (!m || kv.Sampled !== '1' || !/^[0-9a-f]{16}$/.test(kv.Parent || '') || /^0+$/.test(kv.Parent)) return '';
  return `00-${m[1]}${m[2]}-${kv.Parent}-01`;
}

// byteView returns the bytes a non-string write puts on the wire, as the
// RIC writes them (it JSON-encodes anything not a string or bytes).
function byteView(chunk) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(JSON.stringify(chunk));
}

// Record follows one response stream.
class Record {
  constructor(rs, context) {
    this.rs = rs;
    this.requestId = context && context.awsRequestId ? String(context.awsRequestId) : 'unknown';
    this.startTime = Date.now();
    // The function's own active span, else the caller's X-Ray segment:
    // the caller's, so the extension makes the stream's span the
    // invocation's server span under it (callerParent, tpr=1).
    const own = activeTraceparent();
    this.traceparent = own || xrayTraceparent(context && context.xRayTraceId);
    this.callerParent = !own && !!this.traceparent;
    this.stream = null; // the client's Stream, made once the start is due
    this.yielded = false;
    this.done = false;
    this.blockedUs = 0; // time blocked by backpressure: write() false until 'drain'
    this.blockedMaxUs = 0; // the longest single block
    this.blockedSince = null;
    this.timer = setTimeout(() => { try { this.ensure(); } catch { /* never into the function */ } }, START_WAIT_MS);
    if (typeof this.timer.unref === 'function') this.timer.unref();
  }

  // ensure decides, once, whether the explicit client has this stream, and
  // starts recording if not. false: not ours.
  ensure() {
    if (this.yielded || this.done) return false;
    if (this.stream) return true;
    if (this.rs[EXPLICIT]) {
      this.yielded = true;
      clearTimeout(this.timer);
      return false;
    }
    this.stream = getClient().start(null, {
      requestId: this.requestId, startTime: this.startTime, traceparent: this.traceparent,
      callerParent: this.callerParent, _auto: true,
    });
    return true;
  }

  write(chunk, encoding, ret) {
    if (!this.ensure()) return;
    if (typeof chunk === 'string') {
      const enc = typeof encoding === 'string' && Buffer.isEncoding(encoding) ? encoding : 'utf8';
      const n = Buffer.byteLength(chunk, enc);
      if (n === 0) return; // nothing on the wire: not a chunk
      this.stream._record(chunk, {}, enc, n);
    } else {
      const buf = byteView(chunk);
      if (buf.length === 0) return;
      this.stream._record(buf);
    }
    if (ret === false && this.blockedSince === null) {
      this.blockedSince = process.hrtime.bigint();
      this.rs.once('drain', () => this.unblock());
    }
  }

  unblock() {
    if (this.blockedSince !== null) {
      const us = Math.round(Number(process.hrtime.bigint() - this.blockedSince) / 1e3);
      this.blockedUs += us;
      if (us > this.blockedMaxUs) this.blockedMaxUs = us;
      this.blockedSince = null;
    }
  }

  finish(status) {
    if (this.done || !this.ensure()) return;
    this.done = true;
    clearTimeout(this.timer);
    this.unblock();
    this.stream.end({ status, blockedUs: this.blockedUs, blockedMaxUs: this.blockedMaxUs });
  }
}

// instrumentStream patches rs's own write, end and destroy (the RIC hands
// the handler a plain object of bound methods, so patching them reaches
// pipe() and stream.pipeline too), and listens for its errors.
function instrumentStream(rs, rec) {
  if (!rs || typeof rs !== 'object' || typeof rs.write !== 'function' || rs[WRAPPED]) return;
  records.set(rs, rec);
  const origWrite = rs.write;
  const origEnd = rs.end;
  const origDestroy = rs.destroy;
  rs.write = function write(chunk, encoding, cb) {
    const ret = origWrite.apply(this, arguments);
    try { rec.write(chunk, encoding, ret); } catch { /* never into the function */ }
    return ret;
  };
  if (typeof origEnd === 'function') {
    rs.end = function end(chunk, encoding, cb) {
      const ret = origEnd.apply(this, arguments);
      try {
        if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') rec.write(chunk, encoding, true);
        rec.finish('complete'); // a stream that failed before was ended as aborted then
      } catch { /* never into the function */ }
      return ret;
    };
  }
  if (typeof origDestroy === 'function') {
    rs.destroy = function destroy(err) {
      // The handler gave up on its own response: the function failed.
      try { rec.finish('error'); } catch { /* never into the function */ }
      return origDestroy.apply(this, arguments);
    };
  }
  try {
    rs[WRAPPED] = true;
  } catch { /* not extensible: at worst patched twice */ }
  if (typeof rs.on === 'function') {
    // The RIC listens for 'error' on the same request already, so this
    // listener changes nothing about how an error is handled.
    rs.on('error', () => { try { rec.finish('aborted'); } catch { /* never into the function */ } });
  }
}

// instrument returns handler wrapped, with every mark the RIC reads copied.
function instrument(handler) {
  if (typeof handler !== 'function' || handler[WRAPPED] || !handler[STREAMING]) return handler;
  const wrapped = function streamlensHandler(event, responseStream, context) {
    let rec = null;
    try {
      rec = new Record(responseStream, context);
      instrumentStream(responseStream, rec);
    } catch {
      rec = null;
    }
    let result;
    try {
      result = handler.apply(this, arguments);
    } catch (err) {
      try { if (rec) rec.finish('error'); } catch { /* never into the function */ }
      throw err;
    }
    if (rec && result && typeof result.then === 'function') {
      // Observed only: the RIC awaits the very promise the handler returned.
      result.then(() => {}, () => { try { rec.finish('error'); } catch { /* never into the function */ } });
    }
    return result;
  };
  for (const key of Reflect.ownKeys(handler)) {
    if (key === 'length' || key === 'name' || key === 'prototype' || key === 'arguments' || key === 'caller') continue;
    try { Object.defineProperty(wrapped, key, Object.getOwnPropertyDescriptor(handler, key)); } catch { /* keep going */ }
  }
  wrapped[WRAPPED] = true;
  return wrapped;
}

function patchNamespace(ns) {
  if (!ns || typeof ns !== 'object') return;
  const orig = ns.streamifyResponse;
  if (typeof orig === 'function' && !orig[WRAPPED]) {
    const streamifyResponse = function streamifyResponse(handler, options) {
      const marked = orig.apply(this, arguments);
      try { return instrument(marked); } catch { return marked; }
    };
    streamifyResponse[WRAPPED] = true;
    try { ns.streamifyResponse = streamifyResponse; } catch { /* frozen: not instrumented */ }
  }
  const hrs = ns.HttpResponseStream;
  if (hrs && typeof hrs.from === 'function' && !hrs.from[WRAPPED]) {
    const origFrom = hrs.from;
    const from = function from(underlying, prelude) {
      const out = origFrom.apply(this, arguments);
      // The RIC returns the stream it was given (already instrumented); a
      // different object is instrumented with the same record.
      try { if (out !== underlying && records.has(underlying)) instrumentStream(out, records.get(underlying)); } catch { /* never into the function */ }
      return out;
    };
    from[WRAPPED] = true;
    try { hrs.from = from; } catch { /* frozen: the stream itself is still recorded */ }
  }
}

function install() {
  if ((process.env.STREAMLENS_ADDR || '') === 'off') return; // switched off without a deploy
  if (globalThis[WRAPPED]) return; // preloaded twice
  globalThis[WRAPPED] = true;
  const desc = Object.getOwnPropertyDescriptor(globalThis, 'awslambda');
  if (desc && !desc.configurable) return; // someone else owns it: leave the function alone
  let current = desc ? desc.value : undefined;
  if (current) patchNamespace(current);
  Object.defineProperty(globalThis, 'awslambda', {
    configurable: true,
    enumerable: desc ? desc.enumerable : true,
    get() { return current; },
    set(v) {
      current = v;
      try { patchNamespace(v); } catch { /* never into the runtime */ }
    },
  });
  // The socket connects during init, not on the first invocation's path.
  try { getClient(); } catch { /* fromEnv never throws; belt and braces */ }
}

try {
  install();
} catch {
  // Instrumentation is never worth a failed init.
}

module.exports = { instrument, patchNamespace, xrayTraceparent };

'use strict';
// The zero-code instrumentation (auto.js) against the Go decoder, with the
// awslambda global installed the way aws-lambda-ric installs it and response
// streams shaped as the RIC hands them to a handler (a plain object of
// methods bound to the underlying request). The real RIC runs it end to end
// in internal/e2e/node_test.go.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Writable } = require('node:stream');

const { decoder } = require('./decoder.js');

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');

// One decoder for the file: auto.js reads STREAMLENS_ADDR once, when it is
// loaded, as it does in a function's init.
let d;
let Client;
const cleanup = [];
test.after(() => cleanup.forEach((fn) => fn()));
test.before(async () => {
  d = await decoder({ after: (fn) => cleanup.push(fn) });
  process.env.STREAMLENS_ADDR = d.addr;
  require('../auto.js');
  ({ Client } = require('..'));
  // What the RIC's setupGlobals does, after auto.js was preloaded.
  globalThis.awslambda = {
    ...globalThis.awslambda,
    streamifyResponse: (handler, options) => {
      handler[STREAMING] = 'response';
      if (typeof options?.highWaterMark === 'number') handler[Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark')] = options.highWaterMark;
      return handler;
    },
    HttpResponseStream: class { static from(s) { return s; } },
  };
  await new Promise((r) => setTimeout(r, 50)); // the client's socket connects
});

// inner is the request the RIC writes to; ric() the object it hands over.
class Inner extends Writable {
  constructor(opts = {}) { super({ highWaterMark: opts.highWaterMark ?? 16384 }); this.chunks = []; this.delay = opts.delay || 0; this.held = []; }
  // With a delay, each write is held that long (a slow caller), and how
  // long it was held, as measured here, is kept: the delay injected.
  _write(c, _e, cb) {
    this.chunks.push(Buffer.from(c));
    if (!this.delay) return cb();
    const t = process.hrtime.bigint();
    setTimeout(() => { this.held.push(Number(process.hrtime.bigint() - t) / 1000); cb(); }, this.delay);
  }
}
function ric(inner) {
  const s = {};
  for (const m of ['cork', 'destroy', 'end', 'uncork', 'write', 'on', 'once', 'off', 'emit', 'removeListener', 'listenerCount']) s[m] = inner[m].bind(inner);
  Object.defineProperty(s, 'writableFinished', { get: () => inner.writableFinished });
  s.setContentType = () => {};
  return s;
}

let n = 0;
const ctx = () => ({ awsRequestId: `req-${++n}` });
const ofRequest = (rid) => d.events().filter((e) => e.requestId === rid);
async function stream(rid, count) {
  await d.until(() => ofRequest(rid).length >= count, `${count} events of ${rid}`);
  assert.deepEqual(d.errors(), []);
  return ofRequest(rid);
}

test('a streamifyResponse handler is recorded; its bytes pass unchanged', async () => {
  const handler = awslambda.streamifyResponse(async (event, rs) => {
    rs.write('{"q":1}\n');
    rs.write(''); // nothing on the wire: not a chunk
    rs.write(Buffer.from('{"q":2}\n'));
    rs.end('{"q":3}\n');
  }, { highWaterMark: 1024 });
  assert.equal(handler[STREAMING], 'response', 'the RIC still sees a streaming handler');
  assert.equal(handler[Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark')], 1024);
  const inner = new Inner();
  const c = ctx();
  await handler({}, ric(inner), c);
  const want = '{"q":1}\n{"q":2}\n{"q":3}\n';
  assert.equal(Buffer.concat(inner.chunks).toString(), want);
  const ev = await stream(c.awsRequestId, 5);
  assert.deepEqual(ev.map((e) => e.kind), ['start', 'chunk', 'chunk', 'chunk', 'end']);
  assert.equal(ev[1].flags, 'u');
  assert.deepEqual(ev.slice(1, 4).map((e) => e.bytes), [8, 8, 8]);
  assert.equal(ev[4].status, 'complete');
  assert.equal(ev[4].delivered, 3);
  assert.equal(ev[4].sha256, crypto.createHash('sha256').update(want).digest('hex'));
});

test('a throw or a rejection is the error status, and reaches the RIC unchanged', async () => {
  const boom = new Error('boom');
  const rejecting = awslambda.streamifyResponse(async (event, rs) => { rs.write('a\n'); throw boom; });
  const c1 = ctx();
  const p = rejecting({}, ric(new Inner()), c1);
  await assert.rejects(p, (err) => err === boom);
  const throwing = awslambda.streamifyResponse(function (event, rs) { throw boom; });
  const c2 = ctx();
  assert.throws(() => throwing({}, ric(new Inner()), c2), (err) => err === boom);
  const e1 = await stream(c1.awsRequestId, 3);
  assert.equal(e1[2].status, 'error');
  assert.equal(e1[2].delivered, 1);
  const e2 = await stream(c2.awsRequestId, 2);
  assert.deepEqual(e2.map((e) => [e.kind, e.status]), [['start', undefined], ['end', 'error']]);
});

test('destroy is an error; the stream failing under the writer is aborted', async () => {
  const h = awslambda.streamifyResponse(async (event, rs, context) => {
    rs.write('a\n');
    if (event.destroy) rs.destroy(new Error('feed lost'));
    else rs.emit('error', new Error('EPIPE'));
  });
  const c1 = ctx();
  const rs1 = ric(new Inner());
  rs1.on('error', () => {}); // the RIC listens on the request too
  await h({ destroy: true }, rs1, c1);
  const c2 = ctx();
  const rs2 = ric(new Inner());
  rs2.on('error', () => {});
  await h({}, rs2, c2);
  assert.equal((await stream(c1.awsRequestId, 3))[2].status, 'error');
  assert.equal((await stream(c2.awsRequestId, 3))[2].status, 'aborted');
});

test('a stream the explicit client claims is left to it: one stream per request', async () => {
  const client = new Client(d.addr);
  const h = awslambda.streamifyResponse(async (event, rs, context) => {
    const s = client.start(rs, { requestId: context.awsRequestId, expected: 2 });
    s.writeChunk('a\n', { instrument: 'X' });
    await new Promise((r) => setTimeout(r, 10)); // past the instrumentation's 2 ms
    s.writeChunk('b\n', { instrument: 'Y' });
    s.end();
    rs.end();
  });
  const c = ctx();
  await h({}, ric(new Inner()), c);
  const ev = await stream(c.awsRequestId, 4);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ofRequest(c.awsRequestId).length, 4, 'no second stream');
  assert.deepEqual(ev.map((e) => e.instrument || ''), ['', 'X', 'Y', '']);
  client.close();
});

test('time blocked by backpressure travels in the end event; the decoder accepts it', async () => {
  const h = awslambda.streamifyResponse(async (event, rs) => {
    for (let i = 0; i < 3; i++) {
      if (!rs.write('x'.repeat(64))) await new Promise((r) => rs.once('drain', r));
    }
    rs.end();
  });
  const c = ctx();
  const inner = new Inner({ highWaterMark: 16, delay: 20 });
  await h({}, ric(inner), c);
  const ev = await stream(c.awsRequestId, 5);
  assert.equal(ev[4].status, 'complete');
  const line = d.datagrams().flat().find((l) => l.startsWith('sl1 end') && l.includes(` ${c.awsRequestId} `));
  const blocked = Number(/ blocked_us=(\d+)/.exec(line)?.[1]);
  const longest = Number(/ blocked_max_us=(\d+)/.exec(line)?.[1]);
  // Within 10 % of the delay injected: every write was held, from write()
  // returning false to 'drain'.
  const injected = inner.held.reduce((a, b) => a + b, 0);
  assert.equal(inner.held.length, 3);
  assert.ok(blocked >= 0.9 * injected && blocked <= 1.1 * injected, `blocked_us=${blocked}, injected ${injected} µs, in ${line}`);
  assert.ok(longest > 0 && longest <= blocked && longest >= 0.9 * Math.max(...inner.held), `blocked_max_us=${longest} in ${line}`);
});

test('handlers not made with streamifyResponse, and odd streams, are left alone; nothing throws into the function', async () => {
  const { instrument } = require('../auto.js');
  const plain = async (event, context) => 'ok';
  assert.equal(instrument(plain), plain);
  // A stream whose listeners cannot be added: the handler runs as before.
  const h = awslambda.streamifyResponse(async (event, rs) => { rs.write('a'); rs.end(); return 'done'; });
  const inner = new Inner();
  const odd = ric(inner);
  odd.on = () => { throw new Error('no listeners here'); };
  assert.equal(await h({}, odd, ctx()), 'done');
  assert.equal(Buffer.concat(inner.chunks).toString(), 'a');
  // No context at all.
  await h({}, ric(new Inner()), undefined);
});

test('what HttpResponseStream.from returns is recorded as the same stream', async () => {
  const orig = awslambda.HttpResponseStream;
  // A RIC whose from returned a new object (the current one returns its argument).
  const h = awslambda.streamifyResponse(async (event, rs) => {
    const out = awslambda.HttpResponseStream.from(rs, { statusCode: 201 });
    out.write('a\n');
    out.end();
  });
  class Other { static from(s) { const o = { ...s }; return o; } }
  globalThis.awslambda = { ...globalThis.awslambda, HttpResponseStream: Other };
  const c = ctx();
  await h({}, ric(new Inner()), c);
  const ev = await stream(c.awsRequestId, 3);
  assert.deepEqual(ev.map((e) => e.kind), ['start', 'chunk', 'end']);
  globalThis.awslambda = { ...globalThis.awslambda, HttpResponseStream: orig };
});

test('trace context: a sampled X-Ray header becomes the stream traceparent; anything else is left to the extension', async () => {
  const { xrayTraceparent } = require('../auto.js');
  assert.equal(xrayTraceparent('Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1'),
    '00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01');
  for (const h of ['Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0',
    'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1', 'garbage', undefined]) {
    assert.equal(xrayTraceparent(h), '', String(h));
  }
  const h = awslambda.streamifyResponse(async (event, rs) => { rs.write('a'); rs.end(); });
  const c = { ...ctx(), xRayTraceId: 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1' };
  await h({}, ric(new Inner()), c);
  const ev = await stream(c.awsRequestId, 3);
  assert.equal(ev[0].traceparent, '00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01');
  // The caller's segment: the extension makes the stream's span the
  // invocation's server span under it.
  assert.equal(ev[0].callerParent, true);
});

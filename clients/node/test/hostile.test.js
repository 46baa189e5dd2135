'use strict';
// Hostile use of the zero-code instrumentation (auto.js): whatever a handler
// does to its response stream, instrumented, it sees exactly what it sees
// uninstrumented (the same return values, the same throws, the same bytes on
// the wire, the same errors on the request), and the instrumentation's
// events stay well-formed. Each scenario runs twice: the bare handler on one
// response stream, the handler as awslambda.streamifyResponse returns it
// under auto.js on another, and the two runs are compared. The response
// stream is shaped as aws-lambda-ric 3.x makes it (createResponseStream and
// toWritableResponseStream in its index.mjs): a plain object of methods
// bound to the request, whose write JSON-encodes anything not a string or
// bytes, and which listens for the request's errors and destroys it. The
// real RIC runs the same hostile handler end to end in internal/e2e
// (TestNodeZeroCodeHostile).
const test = require('node:test');
const assert = require('node:assert/strict');
const { Readable, Writable, pipeline } = require('node:stream');

const { decoder } = require('./decoder.js');

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');

let d;
const cleanup = [];
test.after(() => cleanup.forEach((fn) => fn()));
test.before(async () => {
  d = await decoder({ after: (fn) => cleanup.push(fn) });
  process.env.STREAMLENS_ADDR = d.addr;
  require('../auto.js');
  globalThis.awslambda = {
    ...globalThis.awslambda,
    streamifyResponse: (handler) => { handler[STREAMING] = 'response'; return handler; },
    HttpResponseStream: class { static from(s) { return s; } },
  };
  await new Promise((r) => setTimeout(r, 50)); // the client's socket connects
});

// Inner stands for the RIC's HTTP request: it keeps what reaches the wire.
class Inner extends Writable {
  constructor() { super({ highWaterMark: 64 }); this.chunks = []; }
  _write(c, _e, cb) { this.chunks.push(Buffer.from(c)); cb(); }
}

// ricStream makes the response stream the way the RIC does.
function ricStream(inner) {
  inner.errors = [];
  inner.on('error', (err) => { inner.errors.push(err.code || err.message); inner.destroy(err); });
  const origWrite = inner.write.bind(inner);
  inner.write = (chunk, encoding, callback) => {
    void chunk.length; // the RIC logs it first: null and undefined throw a TypeError
    let data = chunk;
    if (typeof chunk !== 'string' && !Buffer.isBuffer(chunk) && !(chunk instanceof Uint8Array)) data = JSON.stringify(chunk);
    return origWrite(data, encoding, callback);
  };
  const s = {};
  for (const m of ['cork', 'destroy', 'end', 'uncork', 'write', 'addListener', 'on', 'once', 'off', 'removeListener', 'emit', 'listenerCount']) s[m] = inner[m].bind(inner);
  for (const p of ['destroyed']) Object.defineProperty(s, p, { get: () => inner[p], set: (v) => { inner[p] = v; } });
  for (const p of ['writableFinished', 'writableEnded', 'writableNeedDrain', 'writableHighWaterMark', 'writableCorked', 'writableLength', 'writable', 'writableObjectMode']) {
    Object.defineProperty(s, p, { get: () => inner[p] });
  }
  s.setContentType = () => {};
  return s;
}

const describe = (v) => (v instanceof Error ? `throw ${v.code || v.name}: ${v.message}` : typeof v === 'object' && v !== null ? 'object' : String(v));

// run calls handler on a fresh stream and reports everything the function
// and the caller can observe. ops records each operation's result (or what
// it threw), so a throw that only the instrumented run has shows up as such.
let n = 0;
async function run(body, instrumented) {
  const inner = new Inner();
  const rs = ricStream(inner);
  const ops = [];
  const op = (name, fn) => {
    try { ops.push(`${name} -> ${describe(fn())}`); } catch (err) { ops.push(`${name} -> ${describe(err)}`); }
  };
  const fn = async (event, stream) => body(stream, op);
  const handler = instrumented ? awslambda.streamifyResponse(fn) : fn;
  const context = { awsRequestId: `hostile-${++n}` };
  let outcome;
  try {
    outcome = `resolved ${describe(await handler({}, rs, context))}`;
  } catch (err) {
    outcome = `rejected ${describe(err)}`;
  }
  await new Promise((r) => setTimeout(r, 20)); // errors and callbacks come on later ticks
  return {
    requestId: context.awsRequestId,
    seen: { ops, outcome, wire: Buffer.concat(inner.chunks).toString('latin1'), errors: inner.errors, finished: inner.writableFinished, destroyed: inner.destroyed },
  };
}

// events of one request, once its end (or, if none comes, its start) is in.
async function eventsOf(requestId, wantEnd) {
  const mine = () => d.events().filter((e) => e.requestId === requestId);
  await d.until(() => mine().some((e) => e.kind === (wantEnd ? 'end' : 'start')), `the ${wantEnd ? 'end' : 'start'} of ${requestId}`);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(d.errors(), [], 'every event the instrumentation sent decodes');
  return mine();
}

// hostile runs body bare and instrumented, requires the same observations,
// and checks the instrumentation's record against the wire: one start, at
// most one end (with status), and as many bytes in chunks as the caller got.
async function hostile(body, { status, chunks }) {
  const bare = await run(body, false);
  const inst = await run(body, true);
  if (process.env.HOSTILE_DEBUG) console.log(JSON.stringify(inst.seen));
  assert.deepEqual(inst.seen, bare.seen, 'the function and its caller see the same thing, instrumented or not');
  const ev = await eventsOf(inst.requestId, status !== undefined);
  assert.equal(ev.filter((e) => e.kind === 'start').length, 1);
  const ends = ev.filter((e) => e.kind === 'end');
  assert.equal(ends.length, status === undefined ? 0 : 1, 'one end at most');
  if (status !== undefined) assert.equal(ends[0].status, status);
  const cs = ev.filter((e) => e.kind === 'chunk');
  assert.equal(cs.length, chunks, `chunks: ${JSON.stringify(cs)}`);
  assert.equal(cs.reduce((a, e) => a + e.bytes, 0), Buffer.byteLength(inst.seen.wire, 'latin1'), 'recorded bytes are the bytes on the wire');
  return inst.seen;
}

test('write after end', async () => {
  const seen = await hostile((rs, op) => {
    op('write', () => rs.write('a\n'));
    op('end', () => rs.end());
    op('write after end', () => rs.write('b\n'));
  }, { status: 'complete', chunks: 1 });
  assert.equal(seen.wire, 'a\n');
  assert.deepEqual(seen.errors, ['ERR_STREAM_WRITE_AFTER_END']);
});

test('double end, and end with a chunk', async () => {
  const seen = await hostile((rs, op) => {
    op('write', () => rs.write('a\n'));
    op('end with a chunk', () => rs.end('z\n'));
    op('end again', () => rs.end());
    op('end again with a chunk', () => rs.end('y\n'));
  }, { status: 'complete', chunks: 2 });
  assert.equal(seen.wire, 'a\nz\n');
});

test('strings in encodings, Uint8Array, DataView, objects, null: counted as the RIC writes them', async () => {
  const seen = await hostile((rs, op) => {
    op('base64', () => rs.write('aGVsbG8=', 'base64'));
    op('hex', () => rs.write('2c20', 'hex'));
    op('latin1', () => rs.write('w\xf6rld', 'latin1'));
    op('utf16le', () => rs.write('!', 'utf16le'));
    op('utf8, the default', () => rs.write('\u00e9'));
    op('an encoding Node does not know', () => rs.write('x', 'no-such-encoding'));
    op('encoding as the callback', () => rs.write('.', () => {}));
    op('Uint8Array', () => rs.write(new Uint8Array([0x41, 0x42])));
    op('Uint8Array view', () => rs.write(new Uint8Array(Buffer.from('__CD__').buffer, Buffer.from('__CD__').byteOffset + 2, 2)));
    op('DataView', () => rs.write(new DataView(new ArrayBuffer(4))));
    op('object', () => rs.write({ quote: 1 }));
    op('array', () => rs.write([1, 2]));
    op('number', () => rs.write(42));
    op('null', () => rs.write(null));
    op('undefined', () => rs.write(undefined));
    op('BigInt', () => rs.write(1n));
    op('empty string', () => rs.write(''));
    op('empty buffer', () => rs.write(Buffer.alloc(0)));
    op('end', () => rs.end());
  }, { status: 'complete', chunks: 12 });
  // What reached the wire: hello , wörld ! é . AB CD {} {"quote":1} [1,2] 42
  assert.equal(Buffer.from(seen.wire, 'latin1').length, 5 + 2 + 5 + 2 + 2 + 1 + 2 + 2 + 2 + 11 + 5 + 2);
  assert.ok(seen.ops.includes('null -> throw TypeError: Cannot read properties of null (reading \'length\')'), seen.ops.join('\n'));
});

test('a destroyed stream: writes and ends after destroy', async () => {
  const seen = await hostile((rs, op) => {
    op('write', () => rs.write('a\n'));
    op('destroy', () => rs.destroy());
    op('write after destroy', () => rs.write('b\n'));
    op('end after destroy', () => rs.end('c\n'));
    op('destroy again', () => rs.destroy(new Error('again')));
  }, { status: 'error', chunks: 1 });
  assert.equal(seen.destroyed, true);
});

test('a stream the caller abandons: errors on the request, then the handler writes on', async () => {
  await hostile((rs, op) => {
    op('write', () => rs.write('a\n'));
    op('the request fails', () => rs.emit('error', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })));
    op('write after the failure', () => rs.write('b\n'));
    op('end', () => rs.end());
  }, { status: 'aborted', chunks: 1 });
});

test('stream.pipeline from a Readable into the response stream', async () => {
  const seen = await hostile(async (rs, op) => {
    const src = Readable.from(['q1\n', Buffer.from('q2\n'), 'q3\n']);
    await new Promise((resolve) => {
      op('pipeline', () => pipeline(src, rs, (err) => { op('pipeline done', () => (err ? err : 'ok')); resolve(); }));
    });
  }, { status: 'complete', chunks: 3 });
  assert.equal(seen.wire, 'q1\nq2\nq3\n');
  assert.equal(seen.finished, true);
});

test('stream.pipeline from a Readable that fails midway', async () => {
  const seen = await hostile(async (rs, op) => {
    const src = new Readable({ read() {} });
    await new Promise((resolve) => {
      op('pipeline', () => pipeline(src, rs, (err) => { op('pipeline done', () => (err ? err : 'ok')); resolve(); }));
      src.push('q1\n');
      setTimeout(() => src.destroy(new Error('feed lost')), 5);
    });
  }, { status: 'error', chunks: 1 });
  assert.equal(seen.wire, 'q1\n');
});

test('a handler that never ends its stream: started, never ended, nothing thrown', async () => {
  await hostile((rs, op) => {
    op('write', () => rs.write('a\n'));
  }, { status: undefined, chunks: 1 });
  // And one that never writes either: the start still goes out on its own.
  await hostile(() => {}, { status: undefined, chunks: 0 });
});

test('a handler that throws after hostile writes: the same throw reaches the RIC', async () => {
  const seen = await hostile((rs, op) => {
    op('write', () => rs.write({ partial: true }));
    op('write after', () => rs.write(new DataView(new ArrayBuffer(1))));
    throw new RangeError('model crashed');
  }, { status: 'error', chunks: 2 });
  assert.equal(seen.outcome, 'rejected throw RangeError: model crashed');
});

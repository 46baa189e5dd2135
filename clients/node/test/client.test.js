'use strict';
// Tests run against the real Go decoder: the streamlens binary in decode mode
// (`streamlens decode 127.0.0.1:0`) prints every event it decodes as JSON.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const dgram = require('node:dgram');
const { Writable } = require('node:stream');
const readline = require('node:readline');

const { Client, encodeEvent, escape } = require('..');

const root = path.join(__dirname, '..', '..', '..');
const BIN = process.env.STREAMLENS_BIN || path.join(root, 'bin', 'extensions', 'streamlens');
const VECTORS = JSON.parse(fs.readFileSync(path.join(root, 'protocol', 'testdata', 'vectors.json'), 'utf8'));

// decoder starts the Go decoder and collects what it prints.
async function decoder(t) {
  const p = spawn(BIN, ['decode', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => p.kill());
  const lines = [];
  const waiters = [];
  const rl = readline.createInterface({ input: p.stdout });
  rl.on('line', (l) => { lines.push(JSON.parse(l)); waiters.splice(0).forEach((w) => w()); });
  const until = async (pred, what) => {
    for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => { waiters.push(r); setTimeout(r, 25); });
    assert.ok(pred(), `timed out waiting for ${what}; got ${JSON.stringify(lines)}`);
  };
  await until(() => lines.length > 0 && lines[0].listening, 'the decoder to listen');
  return {
    addr: lines[0].listening,
    events: () => lines.filter((l) => l.event).map((l) => l.event),
    errors: () => lines.filter((l) => l.error),
    until,
  };
}

async function connected(client) {
  for (let i = 0; i < 100 && !client._ready; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(client._ready, 'client socket connected');
}

class Collect extends Writable {
  constructor() { super(); this.chunks = []; }
  _write(c, _e, cb) { this.chunks.push(Buffer.from(c)); cb(); }
}

test('shared vectors: the Node encoder produces what the Go decoder reads', async (t) => {
  const d = await decoder(t);
  const [host, port] = d.addr.split(':');
  const sock = dgram.createSocket('udp4');
  t.after(() => sock.close());
  for (const v of VECTORS.valid) {
    await new Promise((r) => sock.send(encodeEvent(v.event), Number(port), host, r));
  }
  await d.until(() => d.events().length + d.errors().length >= VECTORS.valid.length, 'all vectors');
  assert.deepEqual(d.errors(), []);
  const got = d.events();
  VECTORS.valid.forEach((v, i) => {
    const want = v.event;
    for (const [k, val] of Object.entries(want)) {
      if (val === '' || (k === 'dropped' && val === 0)) continue; // omitted when empty
      const g = got[i][k] === undefined && k === 'flags' ? '' : got[i][k];
      assert.deepEqual(g, val, `vector ${i} field ${k}`);
    }
  });
});

test('a recorded stream decodes to start, chunks, trailer and end', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr);
  t.after(() => c.close());
  await connected(c);
  const out = new Collect();
  const s = c.start(out, { requestId: 'req-1', expected: 3, bundleId: 'EQ EU', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
  const quotes = ['{"i":"ERR"}\n', '{"i":"SPY"}\n', '{"i":"BRK B"}\n'];
  s.writeChunk(quotes[0], { instrument: 'ZZZ', errorEnvelope: true });
  s.writeChunk(quotes[1], { instrument: 'SPY' });
  s.writeChunk(Buffer.from(quotes[2]), { instrument: 'BRK B' });
  const declared = crypto.createHash('sha256').update(quotes.join('')).digest('hex');
  s.writeChunk('{"type":"BUNDLE_COMPLETE"}\n', { trailer: true });
  const sum = s.end({ declared });
  assert.equal(sum.sha256, declared);
  assert.equal(Buffer.concat(out.chunks).toString(), quotes.join('') + '{"type":"BUNDLE_COMPLETE"}\n');
  await d.until(() => d.events().length >= 6, 'six events');
  const ev = d.events();
  assert.deepEqual(ev.map((e) => e.kind), ['start', 'chunk', 'chunk', 'chunk', 'chunk', 'end']);
  ev.forEach((e, i) => { assert.equal(e.seq, i); assert.equal(e.streamId, s.quoteId); assert.equal(e.requestId, 'req-1'); });
  assert.match(s.quoteId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(ev[0].bundleId, 'EQ EU');
  assert.equal(ev[0].expected, 3);
  assert.equal(ev[1].flags, 'e');
  assert.equal(ev[2].flags, 'u'); // the first payload chunk that is not an error
  assert.equal(ev[3].instrument, 'BRK B');
  assert.equal(ev[4].flags, 't');
  assert.equal(ev[5].delivered, 3);
  assert.equal(ev[5].sha256, declared);
  assert.equal(ev[5].declared, declared);
  assert.equal(ev[5].status, 'complete');
  assert.ok(BigInt(ev[5].timeNs) >= BigInt(ev[0].timeNs), 'timestamps move forward');
});

test('nothing listening: the response is written in full, drops are counted', async (t) => {
  const probe = dgram.createSocket('udp4');
  await new Promise((r) => probe.bind(0, '127.0.0.1', r));
  const port = probe.address().port;
  probe.close();
  const c = new Client(`127.0.0.1:${port}`);
  t.after(() => c.close());
  await connected(c);
  const out = new Collect();
  const s = c.start(out, { requestId: 'r' });
  for (let i = 0; i < 200; i++) {
    s.writeChunk('quote\n', { instrument: 'X' });
    if (i % 20 === 0) await new Promise((r) => setImmediate(r)); // let send callbacks run
  }
  const sum = s.end();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(Buffer.concat(out.chunks).length, 200 * 6);
  assert.equal(sum.delivered, 200);
  assert.ok(c.stats().dropped > 0, `drops counted: ${JSON.stringify(c.stats())}`);
});

test('a flood beyond the in-flight bound is dropped and counted, never queued', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr, { maxInFlight: 8, coalesce: 1 }); // a datagram per event
  t.after(() => c.close());
  await connected(c);
  const s = c.start(new Collect(), { requestId: 'r' });
  for (let i = 0; i < 100; i++) s.writeChunk('x'); // synchronous: nothing can complete in between
  const sum = s.end();
  assert.ok(sum.dropped >= 90, `dropped ${sum.dropped}`);
  assert.equal(sum.delivered, 100);
});

test('escaping matches the Go encoder and bad addresses name the variable', () => {
  assert.equal(escape('BRK B'), 'BRK%20B');
  assert.equal(escape('ÉDF'), '%c3%89DF');
  assert.equal(escape('a%b\n'), 'a%25b%0a');
  assert.throws(() => new Client('nonsense'), /STREAMLENS_ADDR/);
});

test('fromEnv never throws: an address it cannot use gives a client that writes through', () => {
  for (const addr of ['unix:/tmp/streamlens/events.sock', 'nonsense']) {
    const c = Client.fromEnv({ STREAMLENS_ADDR: addr });
    assert.match(c.disabled, /STREAMLENS_ADDR/);
    const out = new Collect();
    const s = c.start(out, { requestId: 'r' });
    s.writeChunk('quote\n', { instrument: 'X' });
    const sum = s.end();
    assert.equal(sum.delivered, 1);
    assert.equal(out.chunks.length, 1);
    assert.deepEqual(c.stats(), { sent: 0, dropped: 3 });
  }
});

test('a stream started right after construction loses nothing to the connect', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr); // no await: the socket is still connecting
  t.after(() => c.close());
  const s = c.start(new Collect(), { requestId: 'r', expected: 3 });
  for (let i = 0; i < 3; i++) s.writeChunk('q\n', { instrument: 'X' });
  s.end();
  await d.until(() => d.events().length >= 5, 'five events');
  assert.deepEqual(d.events().map((e) => e.kind), ['start', 'chunk', 'chunk', 'chunk', 'end']);
  assert.deepEqual(c.stats(), { sent: 2, dropped: 0 }); // start+chunk, then chunks+end
});

test('declared: hex, base64 or a Buffer reach the decoder; anything else is left out, never the end', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr);
  t.after(() => c.close());
  await connected(c);
  const digest = crypto.createHash('sha256').update('q\n').digest();
  const hex = digest.toString('hex');
  const cases = [
    [hex.toUpperCase(), hex], [digest.toString('base64'), hex], [digest.toString('base64url'), hex], [digest, hex],
    ['not a hash', undefined], [digest.subarray(0, 16), undefined],
  ];
  const sums = [];
  for (const [declared] of cases) {
    const s = c.start(new Collect(), { requestId: 'r' });
    s.writeChunk('q\n');
    sums.push(s.end({ declared }));
  }
  await d.until(() => d.events().filter((e) => e.kind === 'end').length >= cases.length, 'every end');
  assert.deepEqual(d.errors(), [], 'no end rejected');
  const ends = d.events().filter((e) => e.kind === 'end');
  cases.forEach(([, want], i) => {
    assert.equal(ends[i].declared || undefined, want, `case ${i}`);
    assert.equal(ends[i].status, 'complete');
    assert.equal(!!sums[i].declaredIgnored, want === undefined, `case ${i} declaredIgnored`);
  });
});

'use strict';
// How events share datagrams, against the Go decoder (through a relay that
// records datagram boundaries): as the Go client does, the start goes with
// the first payload chunk, the end at once with whatever waits, and chunk
// events in between share datagrams up to the coalesce count and 8,192
// bytes, waiting at most maxWaitMs.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Writable } = require('node:stream');

const { Client, MAX_DATAGRAM } = require('..');
const { decoder } = require('./decoder.js');

class Collect extends Writable {
  constructor() { super(); this.chunks = []; }
  _write(c, _e, cb) { this.chunks.push(Buffer.from(c)); cb(); }
}

async function connected(client) {
  for (let i = 0; i < 100 && !client._ready; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(client._ready, 'client socket connected');
}

const kinds = (g) => g.map((l) => l.split(' ')[1]);

test('start and first chunk share a datagram; the end goes at once with what waits', async (t) => {
  const d = await decoder(t);
  // A long wait: only the rules, never a slow machine, split the batch.
  const c = new Client(d.addr, { maxWaitMs: 5000 });
  t.after(() => c.close());
  await connected(c);
  const s = c.start(new Collect(), { requestId: 'r1', expected: 10 });
  for (let i = 0; i < 10; i++) s.writeChunk(`q${i}\n`, { instrument: `I${i}` });
  s.end();
  await d.until(() => d.events().length >= 12, 'twelve events');
  assert.deepEqual(d.errors(), []);
  assert.deepEqual(d.datagrams().map(kinds), [['start', 'chunk'], [...Array(9).fill('chunk'), 'end']]);
  assert.deepEqual(d.events().map((e) => e.seq), [...Array(12).keys()], 'every event keeps its sequence number');
  assert.equal(d.events()[1].flags, 'u');
  assert.deepEqual(c.stats(), { sent: 2, dropped: 0 });
});

test('at most coalesce events and 8,192 bytes to a datagram', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr, { maxWaitMs: 5000, coalesce: 4 });
  t.after(() => c.close());
  await connected(c);
  const s = c.start(new Collect(), { requestId: 'r2' });
  for (let i = 0; i < 20; i++) s.writeChunk('q\n');
  s.end();
  // Long instrument names (escaped to three bytes a byte): bytes, not the
  // count, close these datagrams.
  const c2 = new Client(d.addr, { maxWaitMs: 5000 });
  t.after(() => c2.close());
  await connected(c2);
  const s2 = c2.start(new Collect(), { requestId: 'r3' });
  for (let i = 0; i < 64; i++) s2.writeChunk('q\n', { instrument: ' '.repeat(100) + i });
  s2.end();
  await d.until(() => d.events().length >= 22 + 66, 'every event');
  assert.deepEqual(d.errors(), []);
  const grams = d.datagrams();
  const first = grams.filter((g) => g[0].includes(' r2 '));
  assert.ok(first.every((g) => g.length <= 4), `datagrams of ${first.map((g) => g.length)} events`);
  assert.equal(first.flat().length, 22);
  const second = grams.filter((g) => g[0].includes(' r3 '));
  assert.ok(second.length > 2, `${second.length} datagrams for 66 long events`);
  for (const g of second) assert.ok(Buffer.byteLength(g.join('\n') + '\n') <= MAX_DATAGRAM, 'a datagram over 8,192 bytes');
  assert.equal(second.flat().length, 66);
});

test('what waits goes out within the bounded delay; a slow first chunk leaves the start alone', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr); // the default 2 ms
  t.after(() => c.close());
  await connected(c);
  const s = c.start(new Collect(), { requestId: 'r4', expected: 3 });
  const t0 = Date.now();
  await d.until(() => d.events().length >= 1, 'the start, alone');
  s.writeChunk('a\n'); // the first chunk: at once
  s.writeChunk('b\n'); // waits for company, at most 2 ms
  await d.until(() => d.events().length >= 3, 'the waiting chunk');
  const waited = Date.now() - t0;
  assert.deepEqual(d.datagrams().map(kinds), [['start'], ['chunk'], ['chunk']]);
  // 2 ms by the rule; a busy 2-core machine's timers may be late, not minutes.
  assert.ok(waited < 1000, `the waiting chunk came ${waited} ms after the start`);
  s.end();
  await d.until(() => d.events().length >= 4, 'the end');
});

test('events a failed send loses are counted in the end event', async (t) => {
  const d = await decoder(t);
  const c = new Client(d.addr, { maxWaitMs: 5000, coalesce: 1, maxInFlight: 2 });
  t.after(() => c.close());
  await connected(c);
  const s = c.start(new Collect(), { requestId: 'r5' });
  for (let i = 0; i < 10; i++) s.writeChunk('q\n'); // synchronous: only two sends can be in flight
  await new Promise((r) => setTimeout(r, 50)); // the two complete: room for the end
  const sum = s.end();
  assert.equal(sum.dropped, 9, 'the start and the first chunk went; nine chunks did not');
  await d.until(() => d.events().some((e) => e.kind === 'end'), 'the end');
  assert.equal(d.events().find((e) => e.kind === 'end').dropped, 9);
  assert.deepEqual(c.stats(), { sent: 3, dropped: 9 });
});

test('STREAMLENS_COALESCE sets the count, bounded; a bad value keeps the default', () => {
  const cases = [['8', 8], ['1', 1], ['0', 1], ['1000', 64], ['junk', 64], [undefined, 64]];
  for (const [v, want] of cases) {
    const c = Client.fromEnv({ STREAMLENS_ADDR: '127.0.0.1:9', STREAMLENS_COALESCE: v });
    assert.equal(c.coalesce, want, `STREAMLENS_COALESCE=${v}`);
    c.close();
  }
});

test('STREAMLENS_ADDR=off: a client that writes through, quietly', () => {
  const c = Client.fromEnv({ STREAMLENS_ADDR: 'off' });
  assert.equal(c.disabled, 'STREAMLENS_ADDR=off');
  const out = new Collect();
  const s = c.start(out, { requestId: 'r' });
  s.writeChunk('q\n');
  assert.equal(s.end().delivered, 1);
  assert.equal(Buffer.concat(out.chunks).toString(), 'q\n');
});

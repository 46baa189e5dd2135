'use strict';
// The Go decoder (`streamlens decode 127.0.0.1:0`, the extension binary in its
// test mode) as a helper for the tests, behind a relay that records datagram
// boundaries: the decoder prints events, not datagrams, and how events share
// datagrams is part of the client's contract. (Run as a test file too, by
// node --test; it holds no tests.)
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const path = require('node:path');
const readline = require('node:readline');

const root = path.join(__dirname, '..', '..', '..');
const BIN = process.env.STREAMLENS_BIN || path.join(root, 'bin', 'extensions', 'streamlens');

// decoder starts the Go decoder and a relay in front of it; addr is the
// relay's. datagrams() lists what the relay got, each as its lines.
async function decoder(t) {
  const p = spawn(BIN, ['decode', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => p.kill());
  const lines = [];
  const grams = [];
  const waiters = [];
  const rl = readline.createInterface({ input: p.stdout });
  rl.on('line', (l) => { lines.push(JSON.parse(l)); waiters.splice(0).forEach((w) => w()); });
  const until = async (pred, what) => {
    for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => { waiters.push(r); setTimeout(r, 25); });
    assert.ok(pred(), `timed out waiting for ${what}; got ${JSON.stringify(lines)}`);
  };
  await until(() => lines.length > 0 && lines[0].listening, 'the decoder to listen');
  const [host, port] = lines[0].listening.split(':');
  const relay = dgram.createSocket('udp4');
  t.after(() => relay.close());
  relay.on('message', (msg) => {
    grams.push(msg.toString('latin1').split('\n').filter((l) => l !== ''));
    relay.send(msg, Number(port), host);
  });
  await new Promise((r) => relay.bind(0, '127.0.0.1', r));
  return {
    addr: `127.0.0.1:${relay.address().port}`,
    events: () => lines.filter((l) => l.event).map((l) => l.event),
    errors: () => lines.filter((l) => l.error),
    datagrams: () => grams,
    until,
  };
}

module.exports = { decoder };

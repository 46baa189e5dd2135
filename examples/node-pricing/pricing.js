'use strict';
// The pricing model both handlers share, the Node twin of examples/pricing
// (market.go): the same instruments, most liquid first, the same quote and
// BUNDLE_COMPLETE envelopes, and the same query parameters.

const crypto = require('node:crypto');

const MODEL_VERSION = 'bs-vol-surface-2.3.1';
// Bounds a bundle so one request cannot ask for an unbounded stream.
const MAX_INSTRUMENTS = 500;

const LIQUID = [
  'SPY', 'QQQ', 'AAPL', 'MSFT', 'NVDA', 'AMZN', 'TSLA', 'META', 'GOOGL', 'AMD',
  'IWM', 'BAC', 'JPM', 'XOM', 'NFLX', 'AVGO', 'INTC', 'F', 'PLTR', 'UBER',
  'DIS', 'WMT', 'KO', 'PFE', 'CSCO', 'ORCL', 'CRM', 'ADBE', 'PEP', 'T',
  'VZ', 'C', 'WFC', 'CVX', 'MU', 'QCOM', 'TXN', 'NKE', 'MRK', 'ABBV',
  'BA', 'GE', 'CAT', 'GS', 'MS', 'SBUX', 'PYPL', 'SHOP', 'SNOW', 'BRK B',
];

function universe(n) {
  return Array.from({ length: n }, (_, i) => (i < LIQUID.length ? LIQUID[i] : `INST${String(i + 1).padStart(4, '0')}`));
}

// fnv32a, as the Go example hashes instrument names.
function fnv32a(s) {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(s)) { h ^= c; h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}

const round = (v) => Math.round(v * 10000) / 10000;

// quote makes a deterministic, plausible two-sided quote.
function quote(quoteId, inst, now = new Date()) {
  const base = 20 + (fnv32a(inst) % 50000) / 100;
  const wiggle = Math.sin(((now.getTime() % 60000) / 60000) * 2 * Math.PI) * base * 0.001;
  const mid = base + wiggle;
  const spread = Math.max(0.01, mid * 0.0002);
  return { quoteId, instrument: inst, bid: round(mid - spread / 2), ask: round(mid + spread / 2), modelVersion: MODEL_VERSION, feedTimestamp: now.toISOString() };
}

// costFactor: options-heavy names need a volatility surface and cost more.
const costFactor = (inst) => 1 + (fnv32a('cost:' + inst) % 3);

// parse reads the query: instruments (default 50), delay_ms (per instrument,
// default 1, times the cost factor), bundle, fail_after=N (the stream is
// destroyed with an error after N quotes), throw_after=N (the handler throws
// after N quotes; 0: before the first byte), hang_after=N (stops after N
// quotes until the function times out).
function parse(q = {}) {
  const errs = [];
  const num = (name, def, min, max) => {
    if (q[name] === undefined) return def;
    const n = Number(q[name]);
    if (!Number.isInteger(n) || n < min || n > max) { errs.push(`${name}=${JSON.stringify(q[name])}: want ${min}..${max}`); return def; }
    return n;
  };
  const r = {
    instruments: num('instruments', 50, 1, MAX_INSTRUMENTS),
    delayMs: num('delay_ms', 1, 0, 10000),
    failAfter: num('fail_after', -1, 0, MAX_INSTRUMENTS),
    throwAfter: num('throw_after', -1, 0, MAX_INSTRUMENTS),
    hangAfter: num('hang_after', -1, 0, MAX_INSTRUMENTS),
    bundleId: String(q.bundle || ''),
  };
  if (r.bundleId.length > 64) errs.push('bundle: at most 64 characters');
  if (!r.bundleId) r.bundleId = `EQ-${r.instruments}`;
  return { req: r, error: errs.join('; ') };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// bundleComplete is the trailer of a successful stream: the SHA-256 of every
// quote line written before it, in order.
function bundleComplete(quoteId, req, sha256) {
  return JSON.stringify({ type: 'BUNDLE_COMPLETE', quoteId, bundleId: req.bundleId, instruments: req.instruments, sha256 }) + '\n';
}

const newQuoteId = () => crypto.randomUUID();

module.exports = { universe, quote, costFactor, parse, sleep, bundleComplete, newQuoteId, MAX_INSTRUMENTS };

'use strict';
// The pricing function with the explicit streamlens client (CommonJS): it
// names each chunk's instrument, says how many quotes the bundle will carry,
// marks BUNDLE_COMPLETE as a trailer and announces the bundle's SHA-256, so
// the extension can check the bytes and count missing quotes. Under the
// layer's exec wrapper too, the zero-code instrumentation sees the client
// claim the stream and leaves it alone: one stream, recorded once.

const crypto = require('node:crypto');
const { universe, quote, costFactor, parse, sleep, bundleComplete } = require('./pricing.js');
// Deployed, the client is a dependency (@streamlens/client); in this
// repository it is loaded from clients/node.
let streamlens;
try {
  streamlens = require('@streamlens/client');
} catch {
  streamlens = require('../../clients/node');
}

// One client per process, at init: its socket is connected before the first
// invocation.
const sl = streamlens.Client.fromEnv();

exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const start = Date.now();
  const { req, error } = parse(event.queryStringParameters);
  if (error) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, { statusCode: 400, headers: { 'Content-Type': 'text/plain' } });
    // write, then end: the RIC writes the status prelude on the first
    // write(), and end(data) does not go through write().
    responseStream.write(error + '\n');
    responseStream.end();
    return;
  }
  responseStream.setContentType('application/x-ndjson');
  // Claimed before the first await, as the zero-code instrumentation needs
  // to see to stand aside.
  const s = sl.start(responseStream, { requestId: context.awsRequestId, expected: req.instruments, bundleId: req.bundleId, startTime: start });
  const bundle = crypto.createHash('sha256');
  const instruments = universe(req.instruments);
  try {
    for (let i = 0; i < instruments.length; i++) {
      if (i === req.failAfter) {
        s.end({ status: 'error' });
        responseStream.destroy(new Error('pricing engine: market data feed lost'));
        return;
      }
      if (i === req.throwAfter) throw new Error('pricing engine: model crashed');
      if (i === req.hangAfter) await sleep(3_600_000); // the platform's timeout ends this
      await sleep(req.delayMs * costFactor(instruments[i]));
      const line = JSON.stringify(quote(s.quoteId, instruments[i])) + '\n';
      bundle.update(line);
      s.writeChunk(line, { instrument: instruments[i] });
    }
  } catch (err) {
    s.end({ status: 'error' });
    throw err;
  }
  const sum = bundle.digest();
  s.writeChunk(bundleComplete(s.quoteId, req, sum.toString('hex')), { trailer: true });
  s.end({ declared: sum });
  responseStream.end();
});

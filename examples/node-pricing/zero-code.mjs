// The pricing function with no streamlens code at all (an ES module): the
// layer's exec wrapper (AWS_LAMBDA_EXEC_WRAPPER=/opt/streamlens-node) preloads
// the instrumentation, which records this stream from the outside: every
// write a chunk (the BUNDLE_COMPLETE line too: it has no way to know it is a
// trailer), no expected count, no instrument names. examples/node-pricing/
// explicit.js is the same function telling the client all of that.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { universe, quote, costFactor, parse, sleep, bundleComplete, newQuoteId } = require('./pricing.js');

export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
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
  const quoteId = newQuoteId();
  const bundle = createHash('sha256');
  const instruments = universe(req.instruments);
  for (let i = 0; i < instruments.length; i++) {
    if (i === req.failAfter) {
      responseStream.destroy(new Error('pricing engine: market data feed lost'));
      return;
    }
    if (i === req.throwAfter) throw new Error('pricing engine: model crashed');
    if (i === req.hangAfter) await sleep(3_600_000); // the platform's timeout ends this
    await sleep(req.delayMs * costFactor(instruments[i]));
    const line = JSON.stringify(quote(quoteId, instruments[i])) + '\n';
    bundle.update(line);
    responseStream.write(line);
  }
  responseStream.write(bundleComplete(quoteId, req, bundle.digest('hex')));
  responseStream.end();
});

/**
 * The runnable demo behind `npm start`: the demo service (src/cli/demo-service.ts: payments and
 * an OpenAI-shaped streaming completion endpoint, no idempotency of its own) with the idem
 * gateway in front of it on the embedded SQLite store. Prints the URLs and curl commands that
 * show a retry being replayed. Same as `npx idem demo`.
 *
 *   npm start        (or: npx node --conditions=idem-source examples/demo-service/start.ts)
 *
 * Environment: PORT (gateway, default 8080), UPSTREAM_PORT (demo service, default 4000),
 * IDEM_STORE (default sqlite:.idem/demo.db, kept across runs), DEMO_DELAY_MS (default 250).
 * A port in use, a bad value or a store that does not answer ends it with one line on stderr and
 * exit code 1; SIGINT or SIGTERM close both servers and exit 0.
 */
import { startDemo } from '../../src/cli/demo.ts';
import { describeFailure } from '../../src/cli/failure.ts';

function fail(line: string): never {
  console.error(`npm start: ${line}`);
  process.exit(1);
}

function envNumber(name: string, fallback: number, max = 65_535): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > max) fail(`${name}=${raw} is not a number from 0 to ${max}`);
  return n;
}

const options = {
  port: envNumber('PORT', 8080),
  upstreamPort: envNumber('UPSTREAM_PORT', 4000),
  store: process.env.IDEM_STORE || 'sqlite:.idem/demo.db',
  delayMs: envNumber('DEMO_DELAY_MS', 250, 600_000),
  settings: {
    port: 'the PORT variable, e.g. PORT=8081 npm start',
    upstreamPort: 'the UPSTREAM_PORT variable, e.g. UPSTREAM_PORT=4001 npm start',
  },
};
const demo = await startDemo(options).catch((error) =>
  fail(describeFailure(error).line.replace(/^idem: /, '')),
);
console.log(demo.banner);

let closing = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (closing) process.exit(130);
    closing = true;
    setTimeout(() => process.exit(1), 5_000).unref(); // close() waits for in-flight requests, not forever
    Promise.all([demo.gateway.close(), demo.service.close()]).then(
      () => process.exit(0),
      (error) => fail(`closing: ${describeFailure(error).line}`),
    );
  });
}

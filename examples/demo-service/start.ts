/**
 * The runnable demo: the demo service (src/cli/demo-service.ts: payments and an
 * OpenAI-shaped streaming completion endpoint, no idempotency of its own) with the idem
 * gateway in front of it on the embedded SQLite store. Prints the URLs and curl commands that
 * show a retry being replayed. Same as `idem demo`.
 *
 *   npx node --conditions=source examples/demo-service/start.ts
 *
 * Environment: PORT (gateway, default 8080), UPSTREAM_PORT (demo service, default 4000),
 * IDEM_STORE (default sqlite:.idem/demo.db), DEMO_DELAY_MS (default 250).
 */
import { startDemo } from '../../src/cli/demo.ts';

const env = (name: string) => (process.env[name] === undefined ? undefined : Number(process.env[name]));

const demo = await startDemo({
  port: env('PORT') ?? 8080,
  upstreamPort: env('UPSTREAM_PORT') ?? 4000,
  store: process.env.IDEM_STORE ?? 'sqlite:.idem/demo.db',
  ...(env('DEMO_DELAY_MS') !== undefined && { delayMs: env('DEMO_DELAY_MS') }),
});
console.log(demo.banner);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    await demo.gateway.close();
    await demo.service.close();
    process.exit(0);
  });
}

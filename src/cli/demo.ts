/**
 * `idem demo`: the demo upstream plus a gateway in front of it on the embedded SQLite store,
 * with ready-to-paste curl commands that show a retry being replayed.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { GatewayConfig } from '../gateway/config.ts';
import { createGateway, type Gateway, redact } from '../gateway/index.ts';
import { checkStore } from '../stores/spec.ts';
import { createDemoService, type DemoService } from './demo-service.ts';
import { cliFailure, EXIT_FAILED, listenFailure } from './failure.ts';

/** Options of {@link startDemo}. */
export interface DemoOptions {
  /** Gateway port. Default 8080 (0: any free port). */
  port?: number;
  /** Demo service port. Default 4000 (0: any free port). */
  upstreamPort?: number;
  host?: string;
  /** Store spec. Default `sqlite:.idem/demo.db`. */
  store?: string;
  /** Time one payment takes, and before the first token. Default 250 ms. */
  delayMs?: number;
  /** Time between streamed tokens. Default 40 ms. */
  tokenDelayMs?: number;
  /**
   * How the caller names the two port settings, for the message when a port is taken. Default
   * `{ port: 'port', upstreamPort: 'upstreamPort' }`; the CLI passes its flags, `npm start` its
   * environment variables.
   */
  settings?: { port: string; upstreamPort: string };
}

/** The demo's routes: payments wait for an in-flight duplicate, completions attach to it. */
export const DEMO_ROUTES: GatewayConfig['routes'] = [
  { path: '/payments', methods: ['POST'], concurrency: 'wait' },
  { path: '/v1/chat/completions', methods: ['POST'], concurrency: 'attach' },
];

/**
 * Starts the demo service and a gateway in front of it; answers both (to close them) and
 * the text to print.
 *
 * @example
 * const demo = await startDemo({ port: 8080 });
 * console.log(demo.banner);
 */
export async function startDemo(options: DemoOptions = {}): Promise<{
  service: DemoService;
  gateway: Gateway;
  gatewayUrl: string;
  upstreamUrl: string;
  banner: string;
}> {
  const host = options.host ?? '127.0.0.1';
  const service = createDemoService({
    ...(options.delayMs !== undefined && { delayMs: options.delayMs }),
    ...(options.tokenDelayMs !== undefined && { tokenDelayMs: options.tokenDelayMs }),
  });
  const settings = options.settings ?? { port: 'port', upstreamPort: 'upstreamPort' };
  const upstreamUrl = await service.listen(options.upstreamPort ?? 4000, host).catch((error) => {
    throw cliFailure(`demo service: ${listenFailure(error, settings.upstreamPort)}`, EXIT_FAILED, error);
  });
  const store = options.store ?? 'sqlite:.idem/demo.db';
  let gateway: Gateway | undefined;
  let gatewayUrl: string;
  try {
    gateway = await createGateway({
      upstream: upstreamUrl,
      store,
      routes: DEMO_ROUTES,
    });
    await checkStore(gateway.store, store);
    gatewayUrl = await gateway.listen(options.port ?? 8080, host).catch((error) => {
      throw cliFailure(`gateway: ${listenFailure(error, settings.port)}`, EXIT_FAILED, error);
    });
  } catch (error) {
    await gateway?.close().catch(() => {});
    await service.close();
    throw error;
  }
  return {
    service,
    gateway,
    gatewayUrl,
    upstreamUrl,
    banner: banner(gatewayUrl, upstreamUrl, redact(store)),
  };
}

function banner(gw: string, up: string, store: string): string {
  const key = `demo-${randomBytes(4).toString('hex')}`;
  return [
    `idem demo`,
    `  demo service (no idempotency of its own)  ${up}`,
    `  idem gateway in front of it               ${gw}  (store ${store})`,
    ``,
    `Create a payment, then paste the same command again: the second answer is the stored one`,
    `(same payment id, Idempotent-Replayed: true) and the service did not run twice:`,
    ``,
    `  curl -i ${gw}/payments -H 'content-type: application/json' -H 'idempotency-key: ${key}' -d '{"amount":1240.55,"currency":"EUR"}'`,
    ``,
    `The same key with another body is refused (422):`,
    ``,
    `  curl -i ${gw}/payments -H 'content-type: application/json' -H 'idempotency-key: ${key}' -d '{"amount":99,"currency":"EUR"}'`,
    ``,
    `A streamed (SSE) completion; run it twice, or twice at once: one execution, identical events:`,
    ``,
    `  curl -N ${gw}/v1/chat/completions -H 'content-type: application/json' -H 'idempotency-key: ${key}-chat' -d '{"model":"demo-1","stream":true,"messages":[{"role":"user","content":"hi"}]}'`,
    ``,
    `How often the service really executed:   curl ${up}/stats`,
    `Gateway metrics / health / policy:       ${gw}/metrics  ${gw}/healthz  ${gw}/.well-known/idempotency-policy`,
    `Check any endpoint:                      npx idem check ${gw}/payments`,
    `The service alone fails the same check:  npx idem check ${up}/payments`,
  ].join('\n');
}

/**
 * The child processes of the gateway benchmark (bench/sections/gateway.ts), so the load
 * generator, the upstream and each gateway run on their own event loops, as they would in
 * production:
 *
 * ```
 * gateway-child.ts upstream <delayMs>                 the demo service (src/cli/demo-service.ts)
 * gateway-child.ts gateway <upstreamUrl> <storeSpec>  createGateway() on that store, defaults otherwise
 * ```
 *
 * Each sends `{ type: 'ready', url }` once listening, answers `{ type: 'stats' }` with
 * `{ type: 'stats', executions, cpuUs, inflight, storeUs }` (payments the upstream ran; the
 * process's CPU time so far; requests the gateway received and has not finished handling, which
 * may still call the upstream after their client left; the time its store calls took so far,
 * from its `idem_store_operation_duration_seconds` histogram), and closes and exits on `{ type: 'close' }`.
 *
 * @module
 */
import { createDemoService } from '../../src/cli/demo-service.ts';
import { createGateway } from '../../src/gateway/index.ts';

/** Messages from a child. */
export type ChildMessage =
  | { type: 'ready'; url: string }
  | { type: 'stats'; executions: number; cpuUs: number; inflight: number; storeUs: number }
  | { type: 'error'; message: string };

const [role, a, b] = process.argv.slice(2);
const send = (m: ChildMessage) => process.send?.(m);
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

try {
  let executions = () => 0;
  let inflight = async () => 0;
  let storeUs = async () => 0;
  let close: () => Promise<void>;
  if (role === 'upstream') {
    const demo = createDemoService({ delayMs: Number(a) });
    demo.server.keepAliveTimeout = 60_000;
    send({ type: 'ready', url: await demo.listen(0, '127.0.0.1') });
    executions = () => demo.executions.payments;
    close = () => demo.close();
  } else if (role === 'gateway' && a && b) {
    const gateway = await createGateway({
      upstream: a,
      store: b,
      purgeEvery: false,
      // a JSON line per request would measure stdout, not the gateway
      logLevel: process.env.IDEM_LOG_LEVEL === undefined ? 'warn' : undefined,
    });
    // every request the handler finishes is counted once in idem_gateway_requests_total
    let received = 0;
    gateway.server.on('request', () => void received++);
    const finished = gateway.metrics.registry.getSingleMetric('idem_gateway_requests_total');
    inflight = async () => received - (await finished!.get()).values.reduce((n, v) => n + v.value, 0);
    const latency = gateway.metrics.registry.getSingleMetric('idem_store_operation_duration_seconds');
    storeUs = async () =>
      (await latency!.get()).values
        // a histogram's values are its buckets, then `_sum` and `_count` per label set
        .filter(
          (v) => (v as { metricName?: string }).metricName === 'idem_store_operation_duration_seconds_sum',
        )
        .reduce((n, v) => n + v.value * 1e6, 0);
    send({ type: 'ready', url: await gateway.listen(0, '127.0.0.1') });
    close = () => gateway.close();
  } else {
    throw new Error(`usage: gateway-child.ts upstream <delayMs> | gateway <upstreamUrl> <storeSpec>`);
  }
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'stats') {
      Promise.all([inflight(), storeUs()]).then(([n, us]) =>
        send({ type: 'stats', executions: executions(), cpuUs: cpuUs(), inflight: n, storeUs: us }),
      );
    }
    if (m?.type === 'close') {
      close().finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
} catch (error) {
  send({ type: 'error', message: String((error as Error)?.stack ?? error) });
  process.exit(1);
}

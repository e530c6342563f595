/**
 * The child processes of the gateway benchmark (bench/sections/gateway.ts), so the load
 * generator, the upstream and each gateway run on their own event loops, as they would in
 * production:
 *
 * ```
 * gateway-child.ts upstream <delayMs>                 the demo service (src/cli/demo-service.ts)
 * gateway-child.ts gateway <upstreamUrl> <storeSpec> [workers]
 *     createGateway() on that store, defaults otherwise; with workers > 1 this process is the
 *     primary of that many workers, started as `idem serve --workers N` starts them
 *     (src/gateway/cluster.ts), and its counters are the sums over the workers (and itself)
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
import cluster from 'node:cluster';
import { createDemoService } from '../../src/cli/demo-service.ts';
import { isServeWorker, onShutdown, reportReady, startWorkers } from '../../src/gateway/cluster.ts';
import { answerAdminCalls, primaryAdminSource } from '../../src/gateway/cluster-admin.ts';
import { clusterWake } from '../../src/gateway/cluster-wake.ts';
import { createGateway, type Gateway } from '../../src/gateway/index.ts';
import { storeFromSpec } from '../../src/stores/spec.ts';

/** Messages from a child. */
export type ChildMessage =
  | { type: 'ready'; url: string }
  | { type: 'stats'; executions: number; cpuUs: number; inflight: number; storeUs: number }
  | { type: 'error'; message: string };

const [role, a, b, c] = process.argv.slice(2);
const workers = Number(c ?? 1);
const send = (m: ChildMessage) => process.send?.(m);
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

try {
  let executions = () => 0;
  let inflight = async () => 0;
  let storeUs = async () => 0;
  let workerCpu = async () => cpuUs();
  let close: () => Promise<void>;
  if (role === 'upstream') {
    const demo = createDemoService({ delayMs: Number(a) });
    demo.server.keepAliveTimeout = 60_000;
    send({ type: 'ready', url: await demo.listen(0, '127.0.0.1') });
    executions = () => demo.executions.payments;
    close = () => demo.close();
  } else if (role === 'gateway' && a && b && isServeWorker()) {
    // one worker of a cluster: answers the primary's stats requests
    const gateway = await createGateway(
      {
        upstream: a,
        store: clusterWake(await storeFromSpec(b)),
        purgeEvery: false,
        // a JSON line per request would measure stdout, not the gateway
        logLevel: process.env.IDEM_LOG_LEVEL === undefined ? 'warn' : undefined,
      },
      { admin: primaryAdminSource() },
    );
    const counters = gatewayCounters(gateway);
    answerAdminCalls(gateway.admin);
    process.on('message', (m: { type?: string; id?: number }) => {
      if (m?.type === 'worker-stats') {
        void Promise.all([counters.inflight(), counters.storeUs()]).then(([inflight, storeUs]) =>
          process.send?.({ type: 'worker-stats', id: m.id, cpuUs: cpuUs(), inflight, storeUs }),
        );
      }
    });
    onShutdown(() => gateway.close().then(() => gateway.store.close?.()));
    reportReady(await gateway.listen(0, '127.0.0.1'));
    close = () => gateway.close();
  } else if (role === 'gateway' && a && b && workers > 1) {
    const started = await startWorkers({ workers, args: process.argv.slice(2) });
    let id = 0;
    const sum = async () => {
      const answers = await Promise.all(
        Object.values(cluster.workers ?? {}).map(
          (w) =>
            new Promise<{ cpuUs: number; inflight: number; storeUs: number }>((resolve) => {
              const mine = id++;
              const on = (m: {
                type?: string;
                id?: number;
                cpuUs: number;
                inflight: number;
                storeUs: number;
              }) => {
                if (m?.type !== 'worker-stats' || m.id !== mine) return;
                w?.off('message', on);
                resolve(m);
              };
              w?.on('message', on);
              w?.send({ type: 'worker-stats', id: mine });
            }),
        ),
      );
      return answers.reduce(
        (t, x) => ({
          cpuUs: t.cpuUs + x.cpuUs,
          inflight: t.inflight + x.inflight,
          storeUs: t.storeUs + x.storeUs,
        }),
        { cpuUs: cpuUs(), inflight: 0, storeUs: 0 },
      );
    };
    let last: Promise<{ cpuUs: number; inflight: number; storeUs: number }> | undefined;
    const stats = () => (last = sum());
    inflight = async () => (await stats()).inflight;
    storeUs = async () => (await (last ?? stats())).storeUs;
    workerCpu = async () => (await (last ?? stats())).cpuUs;
    send({ type: 'ready', url: started.url });
    close = () => started.close().then(() => undefined);
  } else if (role === 'gateway' && a && b) {
    const gateway = await createGateway({
      upstream: a,
      store: b,
      purgeEvery: false,
      // a JSON line per request would measure stdout, not the gateway
      logLevel: process.env.IDEM_LOG_LEVEL === undefined ? 'warn' : undefined,
    });
    const counters = gatewayCounters(gateway);
    inflight = counters.inflight;
    storeUs = counters.storeUs;
    send({ type: 'ready', url: await gateway.listen(0, '127.0.0.1') });
    close = () => gateway.close();
  } else {
    throw new Error(
      `usage: gateway-child.ts upstream <delayMs> | gateway <upstreamUrl> <storeSpec> [workers]`,
    );
  }
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'stats') {
      // inflight first: in a cluster primary it gathers the workers' counters the others read
      inflight().then(async (n) => {
        const [us, cpu] = await Promise.all([storeUs(), workerCpu()]);
        send({ type: 'stats', executions: executions(), cpuUs: cpu, inflight: n, storeUs: us });
      });
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

/** A gateway's requests still being handled, and the time its store calls took so far. */
function gatewayCounters(gateway: Gateway) {
  // every request the handler finishes is counted once in idem_gateway_requests_total
  let received = 0;
  gateway.server.on('request', () => void received++);
  const finished = gateway.metrics.registry.getSingleMetric('idem_gateway_requests_total');
  const latency = gateway.metrics.registry.getSingleMetric('idem_store_operation_duration_seconds');
  return {
    inflight: async () => received - (await finished!.get()).values.reduce((n, v) => n + v.value, 0),
    storeUs: async () =>
      (await latency!.get()).values
        // a histogram's values are its buckets, then `_sum` and `_count` per label set
        .filter(
          (v) => (v as { metricName?: string }).metricName === 'idem_store_operation_duration_seconds_sum',
        )
        .reduce((n, v) => n + v.value * 1e6, 0),
  };
}

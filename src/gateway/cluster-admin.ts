/**
 * Admin data across the workers of `idem serve --workers N`: each worker answers
 * {@link AdminSource} calls about itself over the cluster IPC channel, and the primary gathers
 * every worker's answers into one `AdminSource` (metrics aggregated with prom-client's
 * `AggregatorRegistry`, keys merged newest first, savings summed).
 *
 * ```
 * admin server / a worker's /metrics ──▶ primary: clusterAdminSource() ──▶ every worker: answerAdminCalls(local)
 * ```
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { SavingsReport, SavingsTotals } from '../ai/savings.ts';
import type { AdminSource, KeyLifecycle } from './admin-source.ts';

const REQUEST = 'idem:admin-request';
const RESPONSE = 'idem:admin-response';
const GATHER = 'idem:admin-gather';
const GATHERED = 'idem:admin-gathered';
/** Call ids, unique in this process, so several sources never take each other's answers. */
let nextId = 0;
const METHODS = new Set(['metricsText', 'metricsJson', 'recentKeys', 'findKey', 'savings']);

type Method = keyof AdminSource;
interface Call {
  idem: string;
  id: number;
  method: Method;
  args: unknown[];
}
interface Answer {
  idem: string;
  id: number;
  result?: unknown;
  error?: string;
}

/**
 * In a cluster worker: answers the primary's admin calls from `source`. Answers a function that
 * stops answering.
 *
 * @example
 * const stop = answerAdminCalls(gateway.admin); // this worker's own metrics, savings and recent keys
 */
export function answerAdminCalls(source: AdminSource): () => void {
  const onMessage = (m: Call) => {
    if (m?.idem !== REQUEST) return;
    void answer(source, m, RESPONSE).then((a) => process.send?.(a));
  };
  process.on('message', onMessage);
  return () => void process.off('message', onMessage);
}

/** Options of {@link clusterAdminSource}. */
export interface ClusterAdminOptions {
  /** Longest wait for one worker's answer; a worker that does not answer in time is left out. Default 2000. */
  timeoutMs?: number;
  /** The workers asked. Default: every connected worker of `node:cluster`. */
  workers?: () => Worker[];
}

/**
 * In the cluster primary: one `AdminSource` over every worker (each running
 * {@link answerAdminCalls}). Also answers the workers' own requests for the whole view
 * ({@link primaryAdminSource}), so each worker's `/metrics` shows all workers.
 *
 * @example
 * const admin = clusterAdminSource();
 * const { text } = await admin.metricsText(); // counters summed over the workers
 * // with the dashboard: createAdminServer(admin, { token })
 */
export function clusterAdminSource(options: ClusterAdminOptions = {}): AdminSource & { stop(): void } {
  const timeoutMs = options.timeoutMs ?? 2000;
  const workers =
    options.workers ??
    (() => Object.values(cluster.workers ?? {}).filter((w) => w?.isConnected()) as Worker[]);
  const pending = new Map<number, (a: Answer) => void>();
  const onMessage = (worker: Worker, m: Answer & Partial<Call>) => {
    if (m?.idem === RESPONSE) pending.get(m.id)?.(m);
    else if (m?.idem === GATHER) void answer(source, m as Call, GATHERED).then((a) => worker.send(a));
  };
  cluster.on('message', onMessage);

  /** Every worker's answer to one call, leaving out those that fail or do not answer in time. */
  const ask = async <T>(method: Method, args: unknown[]): Promise<T[]> => {
    const answers = await Promise.all(
      workers().map(
        (worker) =>
          new Promise<T | undefined>((resolve) => {
            const id = nextId++;
            const timer = setTimeout(() => finish(undefined), timeoutMs);
            function finish(a: Answer | undefined) {
              clearTimeout(timer);
              pending.delete(id);
              resolve(a && a.error === undefined ? (a.result as T) : undefined);
            }
            pending.set(id, finish);
            try {
              worker.send({ idem: REQUEST, id, method, args } satisfies Call);
            } catch {
              finish(undefined);
            }
          }),
      ),
    );
    return answers.filter((a): a is Awaited<T> => a !== undefined) as T[];
  };
  const aggregated = async () => AggregatorRegistry.aggregate(await ask<object[]>('metricsJson', []));

  const source: AdminSource & { stop(): void } = {
    async metricsText() {
      const registry = await aggregated();
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
    metricsJson: async () => (await aggregated()).getMetricsAsJSON(),
    async recentKeys(limit) {
      return newestFirst((await ask<KeyLifecycle[]>('recentKeys', [limit])).flat()).slice(0, limit);
    },
    findKey: async (rawKey) => newestFirst((await ask<KeyLifecycle[]>('findKey', [rawKey])).flat()),
    savings: async () => sumSavings(await ask<SavingsReport>('savings', [])),
    stop: () => void cluster.off('message', onMessage),
  };
  return source;
}

/**
 * In a cluster worker: the whole cluster's admin view, asked of the primary (which runs
 * {@link clusterAdminSource}). What a worker's `/metrics` and `/savings` answer with.
 *
 * @example
 * const gateway = await createGateway(config, { admin: primaryAdminSource() });
 */
export function primaryAdminSource(timeoutMs = 5000): AdminSource {
  let next = 0;
  const pending = new Map<number, (a: Answer) => void>();
  process.on('message', (m: Answer) => {
    if (m?.idem === GATHERED) pending.get(m.id)?.(m);
  });
  const call = <T>(method: Method, args: unknown[]) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the idem serve primary did not answer ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, (a) => {
        clearTimeout(timer);
        pending.delete(id);
        if (a.error !== undefined) reject(new Error(a.error));
        else resolve(a.result as T);
      });
      process.send?.({ idem: GATHER, id, method, args } satisfies Call);
    });
  return {
    metricsText: () => call('metricsText', []),
    metricsJson: () => call('metricsJson', []),
    recentKeys: (limit) => call('recentKeys', [limit]),
    findKey: (rawKey) => call('findKey', [rawKey]),
    savings: () => call('savings', []),
  };
}

async function answer(source: AdminSource, m: Call, kind: string): Promise<Answer> {
  try {
    if (!METHODS.has(m.method)) throw new Error(`unknown admin call ${String(m.method)}`);
    const fn = source[m.method] as (...args: unknown[]) => Promise<unknown>;
    return { idem: kind, id: m.id, result: await fn.apply(source, m.args ?? []) };
  } catch (error) {
    return { idem: kind, id: m.id, error: (error as Error)?.message ?? String(error) };
  }
}

/** The suppressed keys a merged savings report keeps (a worker's report keeps 100 by default). */
const SAVINGS_KEYS = 100;

const newestFirst = (keys: KeyLifecycle[]) => keys.sort((a, b) => b.lastSeenAt - a.lastSeenAt);

/**
 * The savings of several workers as one report: totals and per-model totals summed, the
 * earliest `since`, the suppressed keys merged newest first.
 *
 * @example
 * sumSavings([a.savings.report(), b.savings.report()]).duplicatesSuppressed; // a's + b's
 */
export function sumSavings(reports: SavingsReport[]): SavingsReport {
  const total = emptyTotals();
  const byModel: Record<string, SavingsTotals> = {};
  for (const r of reports) {
    addTotals(total, r);
    for (const [model, t] of Object.entries(r.byModel)) {
      byModel[model] ??= emptyTotals();
      addTotals(byModel[model], t);
    }
  }
  const keys = reports.flatMap((r) => r.keys).sort((a, b) => b.lastAt - a.lastAt);
  return {
    ...total,
    since: reports.length ? Math.min(...reports.map((r) => r.since)) : Date.now(),
    pricesAsOf: reports[0]?.pricesAsOf ?? '',
    byModel,
    keys: keys.slice(0, SAVINGS_KEYS),
  };
}

function emptyTotals(): SavingsTotals {
  return {
    duplicatesSuppressed: 0,
    tokensSaved: { input: 0, cached: 0, output: 0 },
    costSavedUsd: 0,
    unpriced: 0,
  };
}

function addTotals(into: SavingsTotals, t: SavingsTotals): void {
  into.duplicatesSuppressed += t.duplicatesSuppressed;
  into.costSavedUsd += t.costSavedUsd;
  into.unpriced += t.unpriced;
  const tokens = into.tokensSaved as unknown as Record<string, number>;
  for (const [kind, n] of Object.entries(t.tokensSaved)) tokens[kind] = (tokens[kind] ?? 0) + (n as number);
}

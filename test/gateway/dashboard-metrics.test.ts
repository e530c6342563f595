/**
 * The dashboard's metric reading (browser code, run here as it runs in the page) against a real
 * gateway registry: the snapshot's counters, rates between two snapshots, and quantiles of what
 * a histogram saw between them.
 */
import { expect, it } from 'vitest';
import { READ_METRICS_SCRIPT } from '../../src/gateway/dashboard/read-metrics.ts';
import { gatewayMetrics } from '../../src/gateway/metrics.ts';
import { keyTracker } from '../../src/gateway/recent-keys.ts';

type Buckets = Record<string, number>;
interface Snapshot {
  at: number;
  executed: number;
  replayed: number;
  conflict: number;
  storeLatency: Buckets;
  waitTime: Buckets;
  [field: string]: unknown;
}
const page = new Function(`${READ_METRICS_SCRIPT}\nreturn { snapshot, rate, quantileMs };`)() as {
  snapshot(metrics: unknown[]): Snapshot;
  rate(prev: Snapshot, cur: Snapshot, field: string): number;
  quantileMs(prev: Buckets, cur: Buckets, q: number): number | null;
};

it('reads counters, rates and histogram quantiles from getMetricsAsJSON()', async () => {
  const metrics = gatewayMetrics();
  keyTracker({ metrics, keyHeader: 'idempotency-key' }); // registers idem_gateway_wait_duration_seconds
  const before = { ...page.snapshot(await metrics.registry.getMetricsAsJSON()), at: 0 };
  metrics.request('/a', 'executed');
  metrics.request('/b', 'executed');
  metrics.request('/a', 'replayed');
  metrics.onEvent({ type: 'replayed', recordId: 'r', attempt: 1, shared: false });
  metrics.onEvent({ type: 'replayed', recordId: 'r', attempt: 1, shared: true });
  metrics.onEvent({ type: 'in_progress', recordId: 'r' });
  const histogram = metrics.registry.getSingleMetric('idem_store_operation_duration_seconds') as unknown as {
    labels(labels: Record<string, string>): { observe(v: number): void };
  };
  // 90 fast operations (in the 1–2.5 ms bucket) and 10 slow ones (in the 100–250 ms bucket)
  for (let i = 0; i < 90; i++)
    histogram.labels({ idem_store_operation: i % 2 ? 'get' : 'claim' }).observe(0.002);
  for (let i = 0; i < 10; i++) histogram.labels({ idem_store_operation: 'complete' }).observe(0.2);
  const after = { ...page.snapshot(await metrics.registry.getMetricsAsJSON()), at: 2000 };

  expect(after).toMatchObject({ executed: 2, replayed: 2, conflict: 1 });
  expect(page.rate(before, after, 'executed')).toBe(1); // 2 in 2 s
  expect(page.rate(before, after, 'replayed')).toBe(1);
  const p50 = page.quantileMs(before.storeLatency, after.storeLatency, 0.5)!;
  expect(p50).toBeGreaterThan(1);
  expect(p50).toBeLessThanOrEqual(2.5);
  const p99 = page.quantileMs(before.storeLatency, after.storeLatency, 0.99)!;
  expect(p99).toBeGreaterThan(100);
  expect(p99).toBeLessThanOrEqual(250);
  // nothing observed between two snapshots: no value (a gap in the line), not 0
  expect(page.quantileMs(after.storeLatency, after.storeLatency, 0.5)).toBeNull();
  expect(page.quantileMs(before.waitTime, after.waitTime, 0.5)).toBeNull();
});

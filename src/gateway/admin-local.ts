/**
 * The {@link AdminSource} of one in-process gateway: its metrics registry, its recent-keys ring,
 * its savings, and its store for keys the ring no longer (or never) held.
 *
 * @module
 */
import type { Savings, SavingsReport } from '../ai/savings.ts';
import { InvalidKeyError } from '../core/errors.ts';
import { recordIdOf, validateKey } from '../core/keys.ts';
import { listedStateOf, type Store } from '../core/store.ts';
import { engineKey, parseIdempotencyKey } from '../http/key.ts';
import { MAX_KEY_LENGTH_BOUND } from '../http/options.ts';
import { ANONYMOUS_SCOPE } from '../http/scope.ts';
import type { AdminSource, KeyLifecycle } from './admin-source.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { KeyTracker } from './recent-keys.ts';

/** What {@link localAdminSource} reads. */
export interface LocalAdminParts {
  metrics: GatewayMetrics;
  savings: Savings;
  tracker: KeyTracker;
  store: Store;
  /** The gateway's `namespace`: the first scope part of its records. */
  namespace: string;
}

/**
 * The admin view of one gateway in this process.
 *
 * @example
 * const source = localAdminSource({ metrics, savings, tracker, store, namespace: 'gateway' });
 * const [key] = await source.findKey('order-42');
 */
export function localAdminSource(parts: LocalAdminParts): AdminSource {
  const { metrics, savings, tracker, store, namespace } = parts;
  return {
    async metricsText() {
      return { contentType: metrics.registry.contentType, text: await metrics.registry.metrics() };
    },
    async metricsJson() {
      return metrics.registry.getMetricsAsJSON();
    },
    async recentKeys(limit) {
      return tracker.recent(limit);
    },
    async findKey(rawKey) {
      const key = checkedKey(rawKey);
      const found = tracker.find(key);
      // A key sent without credentials has the same record id everywhere: the store knows it
      // even when this process never saw it (another instance, a restart, an evicted entry).
      const recordId = recordIdOf([namespace, ANONYMOUS_SCOPE], validateKey(engineKey(key)));
      if (found.some((k) => k.recordId === recordId)) return found;
      const record = await store.get(recordId);
      if (!record || record.expiresAt <= Date.now()) return found;
      const at = Date.now();
      const stored: KeyLifecycle = {
        recordId,
        route: '',
        method: '',
        events: [
          {
            at,
            type: 'found_in_store',
            detail: `attempt ${record.attempt}, expires ${new Date(record.expiresAt).toISOString()}`,
          },
        ],
        state: listedStateOf(record),
        replays: 0,
        firstSeenAt: at,
        lastSeenAt: at,
        pid: process.pid,
      };
      return [...found, stored];
    },
    async savings(): Promise<SavingsReport> {
      return savings.report();
    },
  };
}

/** A raw key as the gateway accepts it in `Idempotency-Key` (a bare token or an sf-string). */
function checkedKey(rawKey: string): string {
  if (typeof rawKey !== 'string') throw new InvalidKeyError('the key must be a string');
  const parsed = parseIdempotencyKey(rawKey, MAX_KEY_LENGTH_BOUND);
  if (!parsed.ok) throw new InvalidKeyError(parsed.detail);
  return parsed.key;
}

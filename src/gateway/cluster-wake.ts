/**
 * Waking waiters across the workers of `idem serve --workers N` for stores that cannot
 * `subscribe` (SQLite): a worker that completes or releases a record tells the primary, which
 * tells every other worker, whose waiters re-claim at once instead of at their next poll.
 * Postgres (LISTEN/NOTIFY) and Redis (pub/sub) wake waiters themselves and are left as they are.
 *
 * ```
 * worker A: complete(id) ──▶ primary ──▶ workers B, C: subscribers of id wake
 * ```
 *
 * @module
 */
import type { Store } from '../core/store.ts';

/** The message a worker sends when a record changed, and the primary relays. */
export const CHANGED = 'idem:changed';

/**
 * In a cluster worker: the store with `subscribe` added, fed by the other workers' changes via
 * the primary (see `startWorkers`). A store that can `subscribe` is answered as is.
 *
 * @example
 * const store = clusterWake(await storeFromSpec('sqlite:.idem/gateway.db'));
 */
export function clusterWake(store: Store): Store {
  if (store.subscribe || !process.send) return store;
  const listeners = new Map<string, Set<() => void>>();
  const wake = (id: string) => {
    for (const listener of listeners.get(id) ?? []) listener();
  };
  const changed = (id: string) => {
    wake(id);
    process.send?.({ idem: CHANGED, id });
  };
  process.on('message', (m: { idem?: string; id?: unknown }) => {
    if (m?.idem === CHANGED && typeof m.id === 'string') wake(m.id);
  });
  return {
    ...store,
    async complete(id, token, outcome, ttlMs) {
      const done = await store.complete(id, token, outcome, ttlMs);
      if (done) changed(id);
      return done;
    },
    async release(id, token, guardMs) {
      const done = await store.release(id, token, guardMs);
      if (done) changed(id);
      return done;
    },
    subscribe(id, onChange) {
      const set = listeners.get(id) ?? new Set<() => void>();
      listeners.set(id, set);
      set.add(onChange);
      return () => {
        set.delete(onChange);
        if (set.size === 0) listeners.delete(id);
      };
    },
  };
}

/**
 * LISTEN/NOTIFY wake-ups for waiters. One connection per store, opened on the first
 * subscribe and held until `close()`. When it drops it is reopened with backoff, and every
 * waiter is woken once (a notification may have been missed); the engine's polling covers
 * the gap in between.
 *
 * ```
 * subscribe(id) ─▶ LISTEN (once) ─▶ mark id awaited ─▶ not in progress any more? wake now
 * complete/release of an awaited record ─▶ NOTIFY channel, id ─▶ wake the id's waiters
 * connection lost ─▶ reconnect (100 ms … 5 s) ─▶ LISTEN ─▶ re-mark all ids ─▶ wake all
 * ```
 *
 * @module
 */
import type { PgClientLike, PgPoolLike } from './connection.ts';

export interface ListenerOptions {
  pool: () => Promise<PgPoolLike>;
  channel: string;
  timeoutMs: number;
  /** Marks ids as awaited; answers the ids still in progress. */
  markAwaited: (ids: string[]) => Promise<Set<string>>;
  /** How often the idle connection is pinged to find a silently dead socket. */
  pingMs?: number;
}

export interface Listener {
  subscribe(id: string, onChange: () => void): () => void;
  close(): Promise<void>;
}

export function createListener(options: ListenerOptions): Listener {
  const { channel, timeoutMs, markAwaited } = options;
  const pingMs = options.pingMs ?? 30_000;
  const subs = new Map<string, Set<() => void>>();
  let client: PgClientLike | undefined;
  let opening: Promise<void> | undefined;
  let closed = false;
  let failures = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let ping: ReturnType<typeof setInterval> | undefined;

  const wake = (id: string) => {
    for (const fn of subs.get(id) ?? []) queueMicrotask(fn);
  };
  const wakeAll = () => {
    for (const id of subs.keys()) wake(id);
  };

  const onNotification = (msg: { channel: string; payload?: string | undefined }) => {
    if (msg.channel === channel && msg.payload) wake(msg.payload);
  };

  // Marks ids and wakes those no longer in progress; failures leave them to polling.
  const mark = (ids: string[]) => {
    if (ids.length === 0) return;
    markAwaited(ids).then(
      (live) => {
        for (const id of ids) if (!live.has(id)) wake(id);
      },
      () => {},
    );
  };

  const drop = (c: PgClientLike, err: Error) => {
    if (client !== c) return;
    client = undefined;
    clearInterval(ping);
    c.release(err); // destroyed, never handed back to the pool while LISTENing
    if (!closed && subs.size > 0) scheduleOpen();
  };

  const scheduleOpen = () => {
    if (retry || closed) return;
    const delay = Math.min(5000, 100 * 2 ** failures);
    retry = setTimeout(() => {
      retry = undefined;
      ensureOpen();
    }, delay);
    retry.unref?.();
  };

  const openHeld = async () => {
    const pool = await options.pool();
    const c = await withDeadline(pool.connect(), timeoutMs, (late) => late.release());
    const onError = (err: Error) => drop(c, err);
    c.on('error', onError);
    c.on('notification', onNotification);
    try {
      await withDeadline(c.query({ text: `LISTEN "${channel}"` }), timeoutMs);
    } catch (err) {
      c.release(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    if (closed) {
      c.release(new Error('idem: store closed'));
      return;
    }
    client = c;
    failures = 0;
    ping = setInterval(() => {
      withDeadline(c.query({ text: 'SELECT 1' }), timeoutMs).catch((err) => drop(c, err));
    }, pingMs);
    ping.unref?.();
    mark([...subs.keys()]);
    wakeAll();
  };

  const ensureOpen = () => {
    if (client || opening || closed) return;
    opening = openHeld()
      .catch(() => {
        failures++;
        scheduleOpen();
      })
      .finally(() => {
        opening = undefined;
      });
  };

  return {
    subscribe(id, onChange) {
      const set = subs.get(id) ?? new Set<() => void>();
      subs.set(id, set);
      set.add(onChange);
      if (client) mark([id]);
      else ensureOpen(); // marks every subscribed id once LISTEN is on
      return () => {
        set.delete(onChange);
        if (set.size === 0 && subs.get(id) === set) subs.delete(id);
      };
    },

    async close() {
      closed = true;
      clearTimeout(retry);
      await opening;
      if (client) drop(client, new Error('idem: store closed'));
      subs.clear();
    },
  };
}

/** Rejects after `ms`; a value that arrives later is handed to `late` (to release it). */
function withDeadline<T>(p: Promise<T>, ms: number, late?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      reject(new Error(`no answer within ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (expired) late?.(v);
        else resolve(v);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

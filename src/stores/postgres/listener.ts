/**
 * LISTEN/NOTIFY wake-ups for waiters. One connection per store, opened on the first
 * subscribe and held until `close()`. When it drops it is reopened with backoff and every
 * waiter is woken once (a notification may have been missed); the engine's polling covers
 * the gap in between.
 *
 * ```
 * claim finds a holder ─▶ row marked awaited ─▶ subscribe(id) ─▶ LISTEN (once per store)
 * holder completes/releases an awaited row ─▶ NOTIFY channel, id ─▶ wake the id's waiters
 * a NOTIFY that lands just before subscribe(id) ─▶ remembered 2 s ─▶ wakes it at once
 * connection lost ─▶ reconnect (100 ms … 5 s) ─▶ LISTEN ─▶ wake every waiter once
 * ```
 *
 * @module
 */
import { withDeadline } from '../../core/deadline.ts';
import type { PgClientLike, PgPoolLike } from './connection.ts';

export interface ListenerOptions {
  pool: () => Promise<PgPoolLike>;
  channel: string;
  timeoutMs: number;
  /** How often the held connection is pinged to find a silently dead socket. */
  pingMs?: number;
}

export interface Listener {
  subscribe(id: string, onChange: () => void): () => void;
  close(): Promise<void>;
}

/** How long a notification counts for a subscriber that arrives just after it. */
const RECENT_MS = 2000;

export function createListener(options: ListenerOptions): Listener {
  const { channel, timeoutMs } = options;
  const noAnswer = () => new Error(`no answer within ${timeoutMs} ms`);
  const pingMs = options.pingMs ?? 30_000;
  const subs = new Map<string, Set<() => void>>();
  const recent = new Map<string, number>(); // id → when notified (monotonic ms)
  let client: PgClientLike | undefined;
  let opening: Promise<void> | undefined;
  let closed = false;
  let failures = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let ping: ReturnType<typeof setInterval> | undefined;

  const wake = (id: string) => {
    const set = subs.get(id);
    // a callback unsubscribed between here and the microtask is not called
    if (set) for (const fn of set) queueMicrotask(() => set.has(fn) && fn());
  };
  const wakeAll = () => {
    for (const id of subs.keys()) wake(id);
  };

  const onNotification = (msg: { channel: string; payload?: string | undefined }) => {
    if (msg.channel !== channel || !msg.payload) return;
    const t = performance.now();
    recent.delete(msg.payload); // re-insert at the end, so the map stays ordered by time
    recent.set(msg.payload, t);
    for (const [id, at] of recent) {
      if (t - at < RECENT_MS) break; // insertion order: the rest are newer
      recent.delete(id);
    }
    wake(msg.payload);
  };

  const drop = (c: PgClientLike, err: Error) => {
    if (client !== c) return;
    client = undefined;
    clearInterval(ping);
    c.release(err); // destroyed: a LISTENing connection never goes back to the pool
    if (!closed && subs.size > 0) scheduleOpen();
  };

  const scheduleOpen = () => {
    if (retry || closed) return;
    retry = setTimeout(
      () => {
        retry = undefined;
        ensureOpen();
      },
      Math.min(5000, 100 * 2 ** failures),
    );
    retry.unref?.();
  };

  const open = async () => {
    const pool = await options.pool();
    const c = await withDeadline(pool.connect(), timeoutMs, noAnswer, (late) => late.release());
    c.on('error', (err: Error) => drop(c, err));
    c.on('notification', onNotification);
    try {
      await withDeadline(c.query({ text: `LISTEN "${channel}"` }), timeoutMs, noAnswer);
    } catch (err) {
      c.release(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
    if (closed) return c.release(new Error('idem: store closed'));
    client = c;
    failures = 0;
    ping = setInterval(() => {
      withDeadline(c.query({ text: 'SELECT 1' }), timeoutMs, noAnswer).catch((err: Error) => drop(c, err));
    }, pingMs);
    ping.unref?.();
    wakeAll();
  };

  const ensureOpen = () => {
    if (client || opening || closed) return;
    opening = open()
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
      ensureOpen();
      const at = recent.get(id);
      if (at !== undefined && performance.now() - at < RECENT_MS) queueMicrotask(onChange);
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
      recent.clear();
    },
  };
}

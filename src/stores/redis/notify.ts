/**
 * Wake-ups over pub/sub: complete and release publish on a channel named like the record's
 * key, and one lazily created subscriber connection fans messages out to local listeners.
 * Best effort by design: a missed message only means the waiter's polling finds the change.
 *
 * @module
 */
import type { RedisClientLike, SubscriberLike } from './client.ts';

/** 'PUBLISH' for standalone Redis, 'SPUBLISH' (sharded, Redis 7+) for Cluster, '' for none. */
export type NotifyCommand = 'PUBLISH' | 'SPUBLISH' | '';

export interface Notifier {
  listen(channel: string, onChange: () => void): () => void;
  close(): void;
}

/**
 * A notifier whose subscriber is `client.duplicate()`, created on the first `listen`. A channel
 * stays subscribed for `lingerMs` after its last listener leaves, so a waiter that listens
 * anew between polls costs no SUBSCRIBE/UNSUBSCRIBE pair.
 */
export function createNotifier(
  client: () => Promise<RedisClientLike>,
  command: NotifyCommand,
  lingerMs = 5_000,
): Notifier {
  const sharded = command === 'SPUBLISH';
  const channels = new Map<string, { fns: Set<() => void>; linger?: NodeJS.Timeout }>();
  let sub: Promise<SubscriberLike | undefined> | undefined;
  let closed = false;

  const send = (s: SubscriberLike, on: boolean, channel: string) => {
    const p = sharded
      ? on
        ? s.ssubscribe(channel)
        : s.sunsubscribe(channel)
      : on
        ? s.subscribe(channel)
        : s.unsubscribe(channel);
    p.catch(() => {}); // polling stays the fallback
  };

  const open = async (): Promise<SubscriberLike | undefined> => {
    const c = await client();
    const s = duplicate(c, sharded);
    s.on('error', () => {});
    s.on(sharded ? 'smessage' : 'message', (channel: string) => {
      for (const fn of [...(channels.get(channel)?.fns ?? [])]) {
        try {
          fn();
        } catch {}
      }
    });
    // After a reconnect, subscribe again to whatever the last connection may have missed.
    s.on('ready', () => {
      for (const channel of channels.keys()) send(s, true, channel);
    });
    if (closed) s.disconnect();
    return closed ? undefined : s;
  };

  return {
    listen(channel, onChange) {
      if (command === '' || closed) return () => {};
      let entry = channels.get(channel);
      if (!entry) {
        const created = { fns: new Set<() => void>() };
        channels.set(channel, created);
        sub ??= open().catch(() => undefined);
        void sub.then((s) => s && channels.get(channel) === created && send(s, true, channel));
        entry = created;
      }
      const e = entry;
      clearTimeout(e.linger);
      e.fns.add(onChange);
      return () => {
        if (!e.fns.delete(onChange) || e.fns.size > 0 || channels.get(channel) !== e) return;
        e.linger = setTimeout(() => {
          if (e.fns.size > 0 || channels.get(channel) !== e) return;
          channels.delete(channel);
          void sub?.then((s) => s && !channels.has(channel) && send(s, false, channel));
        }, lingerMs);
        e.linger.unref();
      };
    },
    close() {
      closed = true;
      for (const e of channels.values()) clearTimeout(e.linger);
      channels.clear();
      void sub?.then((s) => s?.disconnect());
    },
  };
}

function duplicate(client: RedisClientLike, sharded: boolean): SubscriberLike {
  // The subscriber waits out outages in its offline queue and names channels in full.
  const own = { keyPrefix: '', enableOfflineQueue: true, commandTimeout: undefined };
  const dup = client.duplicate as unknown as (...args: unknown[]) => SubscriberLike;
  if (client.isCluster) {
    return dup.call(client, [], {
      ...own,
      shardedSubscribers: sharded,
      redisOptions: { keyPrefix: '', maxRetriesPerRequest: null },
    });
  }
  return dup.call(client, { ...own, autoResubscribe: true, maxRetriesPerRequest: null });
}

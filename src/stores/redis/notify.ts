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

/** A notifier whose subscriber is `client.duplicate()`, created on the first `listen`. */
export function createNotifier(client: () => Promise<RedisClientLike>, command: NotifyCommand): Notifier {
  const sharded = command === 'SPUBLISH';
  const listeners = new Map<string, Set<() => void>>();
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
    const onMessage = (channel: string) => {
      for (const fn of [...(listeners.get(channel) ?? [])]) {
        try {
          fn();
        } catch {}
      }
    };
    s.on(sharded ? 'smessage' : 'message', onMessage);
    // After a reconnect, subscribe again to whatever the last connection may have missed.
    s.on('ready', () => {
      for (const channel of listeners.keys()) send(s, true, channel);
    });
    if (closed) s.disconnect();
    return closed ? undefined : s;
  };

  return {
    listen(channel, onChange) {
      if (command === '' || closed) return () => {};
      let set = listeners.get(channel);
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
        sub ??= open().catch(() => undefined);
        void sub.then((s) => s && listeners.has(channel) && send(s, true, channel));
      }
      set.add(onChange);
      return () => {
        if (!set.delete(onChange) || set.size > 0 || listeners.get(channel) !== set) return;
        listeners.delete(channel);
        void sub?.then((s) => s && !listeners.has(channel) && send(s, false, channel));
      };
    },
    close() {
      closed = true;
      listeners.clear();
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

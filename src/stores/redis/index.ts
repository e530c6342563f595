/**
 * The Redis / Valkey store: one Lua script per transition, timed by Redis `TIME`, retention
 * by key expiry, one hash per record under a hash-tagged key so Redis Cluster keeps each
 * record in one slot. Works with an ioredis `Redis` or `Cluster` client, or a URL.
 *
 * ```
 * key      <prefix>:{<id>}    hash: s state (p | c), f fingerprint, t token, a attempt,
 *                             l leaseUntil, e expiresAt, o outcome, x outcome encoding,
 *                             w awaited (a waiting claim found the record held);
 *                             for inspect only: b createdAt, d completedAt, h scope hash
 *                             (absent on records written before them, and h when unscoped)
 * channel  <prefix>:{<id>}    'c' on complete, 'r' on release of an awaited record (SPUBLISH in Cluster)
 * ```
 *
 * @module
 */
import { withDeadline } from '../../core/deadline.ts';
import { InvalidOptionError, isIdemError, StoreUnavailableError } from '../../core/errors.ts';
import type { ClaimRequest, ClaimResult, Store, StoreRecord } from '../../core/store.ts';
import { createDeadlines, type Deadline } from '../deadlines.ts';
import {
  clusterNodesOf,
  connectUrl,
  holdWrites,
  type RedisClientLike,
  type ScriptCall,
  whenReady,
} from './client.ts';
import { redisCounters } from './counters.ts';
import { redisInspect } from './inspect.ts';
import { SCRIPTS } from './lua.generated.ts';
import { createNotifier, type NotifyCommand } from './notify.ts';
import { fromReply, isRecord, toReply } from './record.ts';

export type { RedisClientLike } from './client.ts';

/**
 * Options of {@link redisStore}: give a `client` or a `url`.
 *
 * @example
 * const options: RedisStoreOptions = { url: 'redis://127.0.0.1:6379', prefix: 'billing', commandTimeout: 1000 };
 */
export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster` client. The store never closes it. */
  client?: RedisClientLike;
  /**
   * A `redis://` or `rediss://` URL, or `redis+cluster://host:port,host:port` (`rediss+cluster://`
   * with TLS) for a Cluster; the store connects (ioredis, loaded lazily) and closes.
   */
  url?: string;
  /** Key prefix, without braces. Defaults to 'idem'. */
  prefix?: string;
  /**
   * Longest wait for one operation, connecting included, in ms; past it the operation
   * rejects with `StoreUnavailableError`. Defaults to 2000.
   */
  commandTimeout?: number;
  /**
   * How complete/release wake waiters: 'sharded' (SPUBLISH, Redis 7+, the default for
   * Cluster), 'classic' (PUBLISH, the default otherwise) or 'off' (waiters poll).
   */
  pubsub?: 'sharded' | 'classic' | 'off';
}

/**
 * A store on Redis or Valkey (5+; Cluster with sharded pub/sub needs 7+).
 *
 * @example
 * import Redis from 'ioredis';
 * import { createIdem } from 'idem';
 * import { redisStore } from 'idem/redis';
 * const idem = createIdem({ store: redisStore({ client: new Redis(process.env.REDIS_URL) }) });
 */
export function redisStore(options: RedisStoreOptions): Store {
  const { client: given, url, prefix = 'idem', commandTimeout = 2000 } = options;
  if (!given === !url) throw new InvalidOptionError('redisStore needs exactly one of { client, url }');
  if (!prefix || /[{}]/.test(prefix)) {
    throw new InvalidOptionError(`redisStore prefix must be non-empty and free of braces, got "${prefix}"`);
  }
  if (!(commandTimeout > 0 && Number.isFinite(commandTimeout))) {
    throw new InvalidOptionError(`redisStore commandTimeout must be a positive number of ms`);
  }
  const clustered = given ? given.isCluster === true : clusterNodesOf(url!) !== undefined;
  const pubsub = options.pubsub ?? (clustered ? 'sharded' : 'classic');
  const notify: NotifyCommand = pubsub === 'sharded' ? 'SPUBLISH' : pubsub === 'classic' ? 'PUBLISH' : '';

  let connecting: Promise<RedisClientLike> | undefined;
  /** The client once connected and its scripts defined: calls on a ready one skip every await. */
  let live: RedisClientLike | undefined;
  const client = () => {
    connecting ??= (given ? Promise.resolve(given) : connectUrl(url!, commandTimeout)).then((c) => {
      live = define(c);
      return c;
    });
    return connecting;
  };
  const notifier = createNotifier(client, notify);
  const deadlines = createDeadlines(commandTimeout);
  let closed = false;

  /** The connected client once ready, for inspect and counters (they send plain commands). */
  const readyClient = async () => {
    if (closed) throw new StoreUnavailableError('the redis store is closed');
    const c = await client();
    await whenReady(c, commandTimeout);
    return c;
  };
  const timedOut = (name: ScriptName) =>
    new StoreUnavailableError(`redis ${name} did not answer within ${commandTimeout} ms`);
  const failed = (name: ScriptName, e: unknown) =>
    isIdemError(e)
      ? e
      : new StoreUnavailableError(`redis ${name} failed: ${(e as Error)?.message ?? e}`, { cause: e });

  /** One script call within the deadline; every failure becomes StoreUnavailableError. */
  const call = (name: ScriptName, id: string, ...args: (string | number)[]): Promise<unknown> => {
    if (closed) return Promise.reject(new StoreUnavailableError('the redis store is closed'));
    return new Promise((resolve, reject) => {
      const d = deadlines.start(() => reject(timedOut(name)));
      const c = live;
      let sent: Promise<unknown>;
      try {
        // a ready connection takes the command at once; otherwise wait for it within the deadline
        sent =
          c?.status === 'ready'
            ? run(c, name, keyOf(id), args)
            : connected(d).then((ready) => run(ready, name, keyOf(id), args));
      } catch (e) {
        sent = Promise.reject(e);
      }
      sent.then(
        (value) => deadlines.end(d) && resolve(value),
        (e) => deadlines.end(d) && reject(failed(name, e)),
      );
    });
  };
  /** The client once it is ready, waiting no longer than the deadline `d` leaves. */
  const connected = async (d: Deadline) => {
    const c = await client();
    await whenReady(c, d.at - performance.now());
    return c;
  };
  const keyOf = (id: string) => `${prefix}:{${id}}`;
  const channelOf = (id: string) => `${keyPrefixOf(given)}${keyOf(id)}`;

  return {
    name: 'redis',

    async claim(req: ClaimRequest): Promise<ClaimResult> {
      const reply = String(
        await call(
          'claim',
          req.id,
          req.fingerprint,
          req.token,
          ms('leaseMs', req.leaseMs),
          ms('ttlMs', req.ttlMs),
          req.scopeHash ?? '',
        ),
      );
      if (isRecord(reply)) {
        const { record, now } = fromReply(req.id, reply);
        return { status: 'existing', record, now };
      }
      const comma = reply.indexOf(',');
      const attempt = Number(reply.slice(0, comma));
      return {
        status: 'acquired',
        attempt,
        leaseUntil: Number(reply.slice(comma + 1)),
        takeover: attempt > 1,
      };
    },

    async complete(id, token, outcome, ttlMs) {
      if (!token) return false; // '' marks a released record: nobody holds it
      const [text, encoding] = toReply(outcome);
      return Number(await call('complete', id, token, text, encoding, ms('ttlMs', ttlMs), notify)) === 1;
    },

    async release(id, token, guardMs = 0) {
      if (!token) return false;
      return Number(await call('release', id, token, notify, ms('guardMs', guardMs))) === 1;
    },

    async renew(id, token, leaseMs) {
      if (!token) return undefined;
      const leaseUntil = await call('renew', id, token, ms('leaseMs', leaseMs));
      return leaseUntil == null ? undefined : Number(leaseUntil);
    },

    async get(id): Promise<StoreRecord | undefined> {
      const reply = await call('get', id);
      return reply == null ? undefined : fromReply(id, String(reply)).record;
    },

    /** Redis deletes expired records itself (PEXPIREAT), so there is never anything to purge. */
    async purgeExpired(limit) {
      ms('limit', limit);
      return 0;
    },

    // On a Cluster client, list SCANs each master in turn (src/stores/redis/inspect.ts)
    inspect: redisInspect({
      client: readyClient,
      prefix,
      keyPrefix: keyPrefixOf(given),
      timeoutMs: commandTimeout,
    }),

    counters: redisCounters({
      client: readyClient,
      prefix,
      timeoutMs: commandTimeout,
    }),

    subscribe(id, onChange) {
      return notifier.listen(channelOf(id), onChange);
    },

    async close() {
      if (closed) return;
      closed = true;
      notifier.close();
      if (given || !connecting) return;
      const c = await connecting.catch(() => undefined);
      if (!c) return;
      // QUIT lets replies in flight arrive; a frozen server gets commandTimeout, then the socket closes.
      await withDeadline(c.quit(), commandTimeout, () => new Error('quit timed out')).catch(() => {});
      c.disconnect();
    },
  };
}

// --- Internal helpers ---

type ScriptName = keyof typeof SCRIPTS;

/** The command each script is defined as; the sha in the name keeps two idem versions apart. */
const COMMANDS = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, s]) => [name, `idem_${name}_${s.sha1.slice(0, 10)}`]),
) as Record<ScriptName, string>;

/** Sends the script `name` on `c` (defined by {@link define}), batched with this tick's other calls. */
function run(c: RedisClientLike, name: ScriptName, key: string, args: (string | number)[]): Promise<unknown> {
  holdWrites(c);
  return (c as unknown as Record<string, ScriptCall>)[COMMANDS[name]]!(key, ...args);
}

/** Registers the scripts; ioredis then sends EVALSHA (EVAL once per new connection). */
function define(client: RedisClientLike): RedisClientLike {
  for (const [name, script] of Object.entries(SCRIPTS)) {
    const key = COMMANDS[name as ScriptName];
    if (typeof (client as unknown as Record<string, unknown>)[key] !== 'function') {
      client.defineCommand(key, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    }
  }
  return client;
}

/** A duration or count the scripts can do integer arithmetic with. */
function ms(what: string, value: number): number {
  const n = Math.ceil(value);
  if (!(n >= 0 && n <= 1e15))
    throw new InvalidOptionError(`${what} must be a finite number >= 0, got ${value}`);
  return n;
}

function keyPrefixOf(client: RedisClientLike | undefined): string {
  const prefix = (client?.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
  return typeof prefix === 'string' ? prefix : '';
}

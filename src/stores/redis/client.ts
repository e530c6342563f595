/**
 * The slice of an ioredis client the Redis store uses, declared structurally so that
 * `idem/redis` never imports ioredis unless asked to connect by URL.
 *
 * @module
 */
import { withDeadline } from '../../core/deadline.ts';
import { InvalidOptionError, StoreUnavailableError } from '../../core/errors.ts';

/**
 * What the store needs from a client: an ioredis `Redis` or `Cluster` (Valkey too) fits.
 * Scripts are registered with `defineCommand`, so calls go by EVALSHA.
 *
 * @example
 * const client: RedisClientLike = new Redis(process.env.REDIS_URL);
 */
export interface RedisClientLike {
  /** ioredis connection status: 'wait' | 'connecting' | 'connect' | 'ready' | 'reconnecting' | 'end' … */
  readonly status: string;
  /** True for an ioredis `Cluster`. */
  readonly isCluster?: boolean;
  readonly options?: object;
  defineCommand(name: string, definition: { numberOfKeys: number; lua: string }): void;
  /** Used once, for the store's own subscriber connection. */
  duplicate(...args: never[]): unknown;
  connect?(): Promise<unknown>;
  once(event: string, listener: () => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/** A subscriber connection (a duplicate of the client). */
export interface SubscriberLike {
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  on(event: string, listener: (...args: string[]) => void): unknown;
  disconnect(): void;
}

/** The scripts once defined: `client[name](key, ...args)`. */
export type ScriptCall = (key: string, ...args: (string | number)[]) => Promise<unknown>;

/** Options the store sets on the connection it creates from a URL. */
export function ownedConnectionOptions(commandTimeout: number): Record<string, unknown> {
  return {
    commandTimeout,
    // Never queue a command while disconnected, nor resend one after a reconnect: a claim the
    // caller was told failed must not run later behind its back.
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(times * 50, 1000),
  };
}

/** Connects to `url` with ioredis, imported on first use. */
export async function connectUrl(url: string, commandTimeout: number): Promise<RedisClientLike> {
  let mod: { Redis?: unknown; default?: unknown };
  try {
    mod = (await import('ioredis')) as typeof mod;
  } catch (cause) {
    throw new InvalidOptionError(
      `redisStore({ url }) needs the optional peer dependency "ioredis" (npm install ioredis): ${String(cause)}`,
    );
  }
  const cluster = clusterNodesOf(url);
  if (cluster) {
    const Cluster = (mod as { Cluster?: unknown }).Cluster as new (
      nodes: { host: string; port: number }[],
      options: object,
    ) => RedisClientLike;
    const owned = ownedConnectionOptions(commandTimeout);
    const client = new Cluster(cluster.nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: owned.retryStrategy,
      redisOptions: { ...owned, ...cluster.auth, ...(cluster.tls && { tls: {} }) },
    });
    (client as unknown as { on(e: string, f: () => void): void }).on('error', () => {});
    return client;
  }
  const Redis = (mod.Redis ?? mod.default) as new (url: string, options: object) => RedisClientLike;
  const client = new Redis(url, ownedConnectionOptions(commandTimeout));
  (client as unknown as { on(e: string, f: () => void): void }).on('error', () => {});
  return client;
}

/**
 * The seed nodes of a `redis+cluster://[user:password@]host:port,host:port` URL
 * (`rediss+cluster://` for TLS), or undefined for any other URL.
 *
 * @example
 * clusterNodesOf('redis+cluster://10.0.0.1:7000,10.0.0.2:7000') // { nodes: [{ host: '10.0.0.1', port: 7000 }, …], … }
 */
export function clusterNodesOf(
  url: string,
):
  | { nodes: { host: string; port: number }[]; auth: { username?: string; password?: string }; tls: boolean }
  | undefined {
  const m = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?(?:[?#].*)?$/.exec(url);
  if (!m) return undefined;
  const [, scheme, userinfo, hosts, path] = m;
  if (path && path !== '/') {
    throw new InvalidOptionError(
      `redis+cluster URL: "${path}" after the hosts: a Redis Cluster has only database 0, so the URL takes no path`,
    );
  }
  const nodes = hosts!.split(',').map((h) => {
    const hm = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(h.trim());
    const port = Number(hm?.[2] ?? 6379);
    if (!hm || port < 1 || port > 65535) {
      throw new InvalidOptionError(
        `redis+cluster URL: "${h}" is not host:port (list the seed nodes as host:port,host:port)`,
      );
    }
    return { host: hm[1]!.replace(/^\[|\]$/g, ''), port };
  });
  const auth: { username?: string; password?: string } = {};
  if (userinfo) {
    const decode = (part: string) => {
      try {
        return decodeURIComponent(part);
      } catch {
        throw new InvalidOptionError('redis+cluster URL: the user or password is not valid percent-encoding');
      }
    };
    const [user = '', ...rest] = userinfo.split(':');
    if (user) auth.username = decode(user);
    if (rest.length) auth.password = decode(rest.join(':'));
  }
  return { nodes, auth, tls: scheme === 'rediss' };
}

/** The socket of an ioredis `Redis` (a `Cluster` has one per node and none of its own). */
interface CorkableLike {
  cork(): void;
  uncork(): void;
}

/** Sockets whose writes are held until the end of the current tick. */
const held = new WeakSet<CorkableLike>();

/**
 * Holds `client`'s socket writes until the end of the current tick (Node's `cork`), so the
 * commands that concurrent calls send together leave in one write: under concurrency a reply
 * batch wakes many callers at once, and their next commands then cost one syscall instead of
 * one each. Unlike ioredis' `enableAutoPipelining` nothing waits for the next event-loop turn,
 * so a lone caller pays nothing measurable. A client without its own socket (a `Cluster`) is
 * left alone.
 *
 * @example
 * holdWrites(client); // then send: this tick's commands leave together
 * const reply = await client.get(key);
 */
export function holdWrites(client: RedisClientLike): void {
  const socket = (client as { stream?: Partial<CorkableLike> }).stream;
  if (!socket || typeof socket.cork !== 'function' || typeof socket.uncork !== 'function') return;
  const s = socket as CorkableLike;
  if (held.has(s)) return;
  held.add(s);
  s.cork();
  process.nextTick(release, s);
}

function release(s: CorkableLike): void {
  held.delete(s);
  s.uncork();
}

const pendingReady = new WeakMap<RedisClientLike, Promise<void>>();

/**
 * Resolves once `client` is ready to take commands, or rejects with StoreUnavailableError after
 * `ms`. Waiting here instead of in ioredis' offline queue means a command that timed out is
 * never sent later. Concurrent callers share one 'ready' listener.
 */
export function whenReady(client: RedisClientLike, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'end') {
    return Promise.reject(new StoreUnavailableError('redis connection is closed'));
  }
  if (client.status === 'wait') client.connect?.().catch(() => {});
  let ready = pendingReady.get(client);
  if (!ready) {
    ready = new Promise<void>((resolve) => {
      client.once('ready', () => {
        pendingReady.delete(client);
        resolve();
      });
    });
    pendingReady.set(client, ready);
  }
  return withDeadline(
    ready,
    ms,
    () =>
      new StoreUnavailableError(
        `redis${addressOf(client)} is not connected (status "${client.status}") after ${Math.round(ms)} ms`,
      ),
  );
}

/** ` at host:port` of a client (the first startup node of a Cluster), or '' when it does not say. */
function addressOf(client: RedisClientLike): string {
  const o = client.options as { host?: unknown; port?: unknown } | undefined;
  const nodes = (client as { startupNodes?: unknown[] }).startupNodes;
  const first = Array.isArray(nodes) ? (nodes[0] as { host?: unknown; port?: unknown } | string) : undefined;
  if (typeof first === 'string') return ` at ${first}`;
  const at = first ?? o;
  if (at && (typeof at.host === 'string' || typeof at.port === 'number')) {
    return ` at ${typeof at.host === 'string' ? at.host : 'localhost'}:${String(at.port ?? 6379)}`;
  }
  return '';
}

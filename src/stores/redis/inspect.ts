/**
 * `inspect` for the Redis store: SCAN over the prefix, one pipeline of HMGET + HSTRLEN per
 * page, Redis `TIME` as the clock. On a Cluster client `list` SCANs each master in turn (the
 * cursor names the master and its SCAN cursor) and reads each record through the cluster, so
 * every command goes to the node that holds its key; `get` and `delete` name their key, so a
 * Cluster client sends them to that node (`get` is one pipeline of HMGET + HSTRLEN + TIME: the
 * record is judged by its own node's clock).
 *
 * @module
 */
import { withDeadline } from '../../core/deadline.ts';
import { InvalidOptionError, isIdemError, StoreUnavailableError } from '../../core/errors.ts';
import {
  checkListOptions,
  type ListedRecord,
  type ListOptions,
  type ListPage,
  listedStateOf,
  type StoreInspect,
} from '../../core/store.ts';
import type { RedisClientLike } from './client.ts';

/** The commands inspect sends, beyond the scripts. */
interface ScanClient {
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  time(): Promise<[string, string]>;
  del(key: string): Promise<number>;
  pipeline(): {
    hmget(key: string, ...fields: string[]): unknown;
    hstrlen(key: string, field: string): unknown;
    time(): unknown;
    exec(): Promise<[Error | null, unknown][] | null>;
  };
}

/** A Cluster client: its masters, and per-key commands it routes to the node holding the key. */
interface ClusterClient {
  nodes(role: 'master'): (ScanClient & { options: { host?: string; port?: number } })[];
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  hstrlen(key: string, field: string): Promise<number>;
}

const nodeName = (n: { options: { host?: string; port?: number } }) =>
  `${n.options.host ?? ''}:${String(n.options.port ?? 0).padStart(5, '0')}`;

/** `<master>.<SCAN cursor>` (absent: the first master, from its start). */
function parseClusterCursor(cursor: string | undefined, masters: number): [number, string] {
  if (cursor === undefined) return [0, '0'];
  const m = /^(\d{1,4})\.(\d{1,20})$/.exec(cursor);
  if (!m || Number(m[1]) >= masters) {
    throw new InvalidOptionError(
      `list: "${cursor}" is not a cursor of this Redis Cluster store (pass back the cursor a page answered)`,
    );
  }
  return [Number(m[1]), m[2]!];
}

/**
 * The fields inspect reads (never the outcome `o`, whose size HSTRLEN gives): b createdAt,
 * d completedAt and h scope hash are absent on records written before the store kept them.
 */
const FIELDS = ['s', 'a', 'l', 'e', 'f', 't', 'b', 'd', 'h'] as const;

/**
 * Builds the capability over a connected client. `keyOf(id)` is the record key, `keyPrefix`
 * the client's own ioredis `keyPrefix` (SCAN patterns and replies carry it, commands add it).
 *
 * @example
 * const inspect = redisInspect({ client, prefix: 'idem', keyPrefix: '', timeoutMs: 2000 });
 */
export function redisInspect(o: {
  client: () => Promise<RedisClientLike>;
  prefix: string;
  keyPrefix: string;
  timeoutMs: number;
}): StoreInspect {
  const head = `${o.prefix}:{`;
  const within = <T>(what: string, work: () => Promise<T>): Promise<T> =>
    withDeadline(
      work(),
      o.timeoutMs,
      () => new StoreUnavailableError(`redis ${what} did not answer within ${o.timeoutMs} ms`),
    ).catch((e: unknown) => {
      throw isIdemError(e)
        ? e
        : new StoreUnavailableError(`redis ${what} failed: ${(e as Error)?.message ?? e}`, { cause: e });
    });
  const pattern = `${globEscape(o.keyPrefix + head)}*}`;

  /**
   * One page on a Cluster: the cursor is `<master>.<SCAN cursor>`, masters in host:port order.
   * A master's page is read through the cluster client (each record from its own node, judged by
   * that node's TIME); when a master is done and the page still has room, the next one is
   * SCANned. While slots move between masters (resharding, failover) a record may be listed
   * twice or missed, as SCAN itself allows for keys that move.
   */
  const clusterPage = async (c: ClusterClient, opts: ListOptions): Promise<ListPage> => {
    const masters = c
      .nodes('master')
      .slice()
      .sort((a, b) => nodeName(a).localeCompare(nodeName(b)));
    // no masters known (the slot map is being refreshed): say so, never answer an empty listing
    if (masters.length === 0)
      throw new StoreUnavailableError('redis list: the Cluster client knows no master yet');
    let [index, cursor] = parseClusterCursor(opts.cursor, masters.length);
    const records: ListedRecord[] = [];
    let now = 0;
    let listed = 0;
    while (index < masters.length && listed < opts.limit) {
      const node = masters[index]!;
      const { next, found } = await scanPage(node, pattern, cursor, opts.limit - listed);
      const keys = found.map((k) => k.slice(o.keyPrefix.length));
      const [time, rows] = await Promise.all([
        node.time(),
        Promise.all(keys.map((k) => Promise.all([c.hmget(k, ...FIELDS), c.hstrlen(k, 'o')]))),
      ]);
      const nodeNow = clockOf(time);
      now = Math.max(now, nodeNow);
      listed += keys.length;
      keys.forEach((k, i) => {
        const [fields, bytes] = rows[i]!;
        const r = recordOf(k.slice(head.length, -1), fields, bytes, nodeNow);
        if (r && (opts.state === undefined || r.state === opts.state)) records.push(r);
      });
      if (next !== '0') {
        cursor = next; // this master has more: the next page goes on from here
        break;
      }
      index++;
      cursor = '0';
    }
    return {
      records,
      cursor: index < masters.length ? `${index}.${cursor}` : undefined,
      now: now || Date.now(),
    };
  };

  return {
    async list(opts): Promise<ListPage> {
      checkListOptions(opts);
      const c = await o.client();
      if (c.isCluster) return within('list', () => clusterPage(c as unknown as ClusterClient, opts));
      const sc = c as unknown as ScanClient;
      return within('list', async () => {
        const { next, found } = await scanPage(sc, pattern, opts.cursor ?? '0', opts.limit);
        const keys = found.map((k) => k.slice(o.keyPrefix.length));
        const p = sc.pipeline();
        for (const k of keys) {
          p.hmget(k, ...FIELDS);
          p.hstrlen(k, 'o');
        }
        const [[, time], replies] = await Promise.all([
          sc.time().then((t) => [null, t] as const),
          keys.length ? p.exec() : Promise.resolve([]),
        ]);
        const now = clockOf(time);
        const records: ListedRecord[] = [];
        keys.forEach((k, i) => {
          const [err, v] = replies?.[2 * i] ?? [null, null];
          if (err) throw err;
          const r = recordOf(k.slice(head.length, -1), v, replies?.[2 * i + 1]?.[1], now);
          if (r && (opts.state === undefined || r.state === opts.state)) records.push(r);
        });
        return { records, cursor: next === '0' ? undefined : next, now };
      });
    },

    async get(id) {
      // no SCAN: a Cluster client sends the pipeline to the node that holds the key
      const c = (await o.client()) as unknown as ScanClient;
      return within('get', async () => {
        const p = c.pipeline();
        p.hmget(`${head}${id}}`, ...FIELDS);
        p.hstrlen(`${head}${id}}`, 'o');
        p.time();
        const [fields, bytes, time] = ((await p.exec()) ?? []).map(([err, value]) => {
          if (err) throw err;
          return value;
        });
        return recordOf(id, fields, bytes, clockOf(time as [string, string]));
      });
    },

    async delete(id) {
      const c = (await o.client()) as unknown as ScanClient;
      // Redis expires records itself, so a key that exists is live.
      return within('delete', async () => (await c.del(`${head}${id}}`)) === 1);
    },
  };
}

/** SCAN round trips one page may take before it answers with what it found (maybe nothing). */
const MAX_SCANS_PER_PAGE = 16;
/** The largest `COUNT` a page's SCAN grows to. */
const MAX_SCAN_COUNT = 1000;

/**
 * One page of matching keys: SCAN with `COUNT` = `limit` first (the page size, as the contract
 * says), then, while it finds fewer than `limit` keys, again from where it stopped with twice
 * the `COUNT` (up to 1000), for at most 16 round trips. A prefix that is a small part of a
 * shared Redis (keys of other applications, of queues, of caches) is then listed in a few round
 * trips per page instead of one per `limit` slots (5 records among 100,000 other keys took
 * 22,811 SCANs of COUNT 4 to list at `limit: 4`; a CI run's `idem keys list --limit 4` paging
 * spent 107 s in them). A page may hold more than `limit` keys, as a single SCAN's could
 * (COUNT is a hint).
 */
async function scanPage(c: ScanClient, pattern: string, cursor: string, limit: number) {
  const found: string[] = [];
  let next = cursor;
  let count = limit;
  for (let scans = 0; scans < MAX_SCANS_PER_PAGE; scans++) {
    const [after, keys] = await c.scan(next, 'MATCH', pattern, 'COUNT', count);
    found.push(...keys);
    next = after;
    if (next === '0' || found.length >= limit) break;
    count = Math.min(count * 2, MAX_SCAN_COUNT);
  }
  return { next, found };
}

/**
 * The record `id` as listed from its {@link FIELDS} and outcome size, or undefined when it is
 * gone or expired at `now`.
 */
function recordOf(id: string, fields: unknown, outcomeBytes: unknown, now: number): ListedRecord | undefined {
  const [s, a, l, e, f, t, b, d, h] = (fields ?? []) as (string | null)[];
  if (s == null || Number(e) <= now) return undefined; // gone meanwhile, or expired
  const completed = s === 'c';
  const attempt = Number(a);
  return {
    id,
    state: listedStateOf({ state: completed ? 'completed' : 'in_progress', attempt, token: t ?? '' }),
    attempt,
    leaseUntil: completed ? 0 : Number(l),
    expiresAt: Number(e),
    fingerprint: f ?? '',
    outcomeBytes: Number(outcomeBytes ?? 0),
    createdAt: Number(b ?? 0),
    completedAt: completed ? Number(d ?? 0) : 0,
    scopeHash: h ?? '',
  };
}

/** Redis `TIME` ([seconds, microseconds]) in epoch ms. */
function clockOf(time: [string, string]): number {
  return Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
}

/** `s` with Redis glob characters escaped, for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

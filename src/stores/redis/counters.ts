/**
 * The Redis store's `counters`, under the store's prefix and never matching its records' SCAN
 * pattern (`<prefix>:{*}`):
 *
 * ```
 * <prefix>:counters:{<prefix>}:<hour>  hash: <name> the hour's total, <name>@<mm> minute mm's;
 *                                      expires 35 days after the hour (all in one slot)
 * <prefix>:replays:{<id>}              hash: n replays, l last replay (epoch ms); in the record's
 *                                      slot, expires with the record and at least 7 days after l
 * ```
 *
 * `add` sends every command at once without waiting between them (one round trip on the wire):
 * HINCRBY + PEXPIRE per hour hash, one small script per record (HINCRBY, then PEXPIRE to the
 * longer of 7 days and the record's PTTL; both keys in one slot, so Redis Cluster takes it).
 * Hour hashes keep minute fields, so `read({ since })` is exact to the minute while reading at
 * most one hash per hour.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import {
  BUCKET_RETENTION_MS,
  COUNTER_NAMES,
  MINUTE_MS,
  normalizeBatch,
  RECORD_RETENTION_MS,
  readFrom,
  type StoreCounters,
  zeroTotals,
} from '../../core/counters.ts';
import { withDeadline } from '../../core/deadline.ts';
import { isIdemError, StoreUnavailableError } from '../../core/errors.ts';
import type { RedisClientLike } from './client.ts';

const HOUR_MS = 3_600_000;

/** KEYS[1] replay key, KEYS[2] record key; ARGV[1] replays, ARGV[2] last replay, ARGV[3] least ms kept. */
const REPLAY_LUA = `local n = redis.call('HINCRBY', KEYS[1], 'n', ARGV[1])
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if tonumber(ARGV[2]) > l then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end
local keep = tonumber(ARGV[3])
local left = redis.call('PTTL', KEYS[2])
if left > keep then keep = left end
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return n`;
const REPLAY_COMMAND = `idem_counters_${createHash('sha1').update(REPLAY_LUA).digest('hex').slice(0, 10)}`;

/** The commands counters send, beyond what the store declares. */
interface CountersClient {
  hincrby(key: string, field: string, by: number): Promise<number>;
  pexpire(key: string, ms: number): Promise<number>;
  hgetall(key: string): Promise<Record<string, string>>;
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  del(key: string): Promise<number>;
}

/**
 * Counters over the store's connection (`client()` answers it ready, or rejects).
 *
 * @example
 * const counters = redisCounters({ client: ready, prefix: 'idem', timeoutMs: 2000 });
 */
export function redisCounters(o: {
  client: () => Promise<RedisClientLike>;
  prefix: string;
  timeoutMs: number;
}): StoreCounters {
  const hourKey = (hour: number) => `${o.prefix}:counters:{${o.prefix}}:${hour}`;
  const within = async <T>(what: string, work: (c: CountersClient) => Promise<T>): Promise<T> => {
    try {
      return await withDeadline(
        o.client().then((c) => work(ready(c))),
        o.timeoutMs,
        () => new StoreUnavailableError(`redis counters ${what} did not answer within ${o.timeoutMs} ms`),
      );
    } catch (e) {
      throw isIdemError(e)
        ? e
        : new StoreUnavailableError(`redis counters ${what} failed: ${(e as Error)?.message ?? e}`, {
            cause: e,
          });
    }
  };

  return {
    async add(batch) {
      const now = Date.now();
      const { buckets, records } = normalizeBatch(batch, now);
      await within('add', (c) => {
        const sent: Promise<unknown>[] = [];
        const hours = new Set<number>();
        for (const b of buckets) {
          const hour = Math.floor(b.minute / HOUR_MS) * HOUR_MS;
          const mm = String((b.minute - hour) / MINUTE_MS).padStart(2, '0');
          hours.add(hour);
          sent.push(
            c.hincrby(hourKey(hour), b.name, b.value),
            c.hincrby(hourKey(hour), `${b.name}@${mm}`, b.value),
          );
        }
        for (const hour of hours)
          sent.push(c.pexpire(hourKey(hour), hour + HOUR_MS + BUCKET_RETENTION_MS - now));
        const script = (c as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[
          REPLAY_COMMAND
        ]!;
        for (const r of records) {
          sent.push(
            script.call(
              c,
              `${o.prefix}:replays:{${r.id}}`,
              `${o.prefix}:{${r.id}}`,
              r.replays,
              r.lastReplayAt,
              Math.max(1, r.lastReplayAt + RECORD_RETENTION_MS - now),
            ),
          );
        }
        return Promise.all(sent);
      });
    },
    async read(options = {}) {
      const now = Date.now();
      const from = readFrom(options.since, now);
      const first = Math.floor(from / HOUR_MS) * HOUR_MS;
      const hours: number[] = [];
      for (let h = first; h <= now; h += HOUR_MS) hours.push(h);
      const hashes = await within('read', (c) => Promise.all(hours.map((h) => c.hgetall(hourKey(h)))));
      const totals = zeroTotals();
      const fromMm = (from - first) / MINUTE_MS;
      hashes.forEach((fields, i) => {
        for (const name of COUNTER_NAMES) {
          if (i > 0 || fromMm === 0) totals[name] += Number(fields[name] ?? 0);
          else {
            for (let mm = fromMm; mm < 60; mm++)
              totals[name] += Number(fields[`${name}@${String(mm).padStart(2, '0')}`] ?? 0);
          }
        }
      });
      return totals;
    },
    async record(id) {
      const [n, l] = await within('record', (c) => c.hmget(`${o.prefix}:replays:{${id}}`, 'n', 'l'));
      return n == null ? undefined : { replays: Number(n), lastReplayAt: Number(l ?? 0) };
    },
    async forget(id) {
      await within('forget', (c) => c.del(`${o.prefix}:replays:{${id}}`));
    },
  };
}

/** The client with the replay script defined (once per client). */
function ready(c: RedisClientLike): CountersClient {
  if (typeof (c as unknown as Record<string, unknown>)[REPLAY_COMMAND] !== 'function') {
    c.defineCommand(REPLAY_COMMAND, { numberOfKeys: 2, lua: REPLAY_LUA });
  }
  return c as unknown as CountersClient;
}

/**
 * The DynamoDB store's `counters`, as items in the store's table under keys no record id can
 * take (record ids are base64url hashes, without `:`):
 *
 * ```
 * idem:counters:<hour>  c:<name> the hour's total, c:<name>:<mm> minute mm's (N); expires 35 days after the hour
 * idem:replays:<id>     r replays, w last replay (N); expires 7 days after the last replay
 * ```
 *
 * Both carry `e` (expiresAt, epoch ms, so `purgeExpired` deletes them when the table has no TTL)
 * and the table's TTL attribute. `add` sends one `UpdateItem ADD` per hour and per record, all at
 * once; `read` fetches the hour items with `BatchGetItem` (100 keys a request). An item is its own
 * write, so a failed `add` may have applied part of the batch: the recorder then writes it again,
 * and those counts may come out high (never low) by that part.
 *
 * @module
 */
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
import type { Operation } from './client.ts';
import { type Item, N, seconds } from './item.ts';

const HOUR_MS = 3_600_000;

/**
 * Counters over the store's request function.
 *
 * @example
 * const counters = dynamoCounters({ request, keyAttribute: 'id', ttlAttribute: 'expiration', table: 'idem' });
 */
export function dynamoCounters(deps: {
  request(operation: Operation, input: Record<string, unknown>): Promise<Record<string, unknown>>;
  keyAttribute: string;
  ttlAttribute: string;
  table: string;
}): StoreCounters {
  const { request, keyAttribute, ttlAttribute, table } = deps;
  const hourKey = (hour: number) => ({ [keyAttribute]: { S: `idem:counters:${hour}` } });
  const replayKey = (id: string) => ({ [keyAttribute]: { S: `idem:replays:${id}` } });

  return {
    async add(batch) {
      const now = Date.now();
      const { buckets, records } = normalizeBatch(batch, now);
      const hours = new Map<number, Map<string, number>>();
      for (const b of buckets) {
        const hour = Math.floor(b.minute / HOUR_MS) * HOUR_MS;
        const mm = String((b.minute - hour) / MINUTE_MS).padStart(2, '0');
        const fields = hours.get(hour) ?? new Map<string, number>();
        hours.set(hour, fields);
        fields.set(`c:${b.name}`, (fields.get(`c:${b.name}`) ?? 0) + b.value);
        fields.set(`c:${b.name}:${mm}`, b.value);
      }
      const writes: Promise<unknown>[] = [];
      for (const [hour, fields] of hours) {
        const names: Record<string, string> = { '#x': ttlAttribute };
        const values: Record<string, unknown> = {};
        const adds: string[] = [];
        [...fields].forEach(([field, value], i) => {
          names[`#a${i}`] = field;
          values[`:a${i}`] = N(value);
          adds.push(`#a${i} :a${i}`);
        });
        const until = hour + HOUR_MS + BUCKET_RETENTION_MS;
        values[':e'] = N(until);
        values[':x'] = N(seconds(until));
        writes.push(
          request('UpdateItem', {
            Key: hourKey(hour),
            UpdateExpression: `ADD ${adds.join(', ')} SET e = :e, #x = :x`,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          }),
        );
      }
      for (const r of records) {
        const until = r.lastReplayAt + RECORD_RETENTION_MS;
        writes.push(
          request('UpdateItem', {
            Key: replayKey(r.id),
            // a row past its expiry that TTL has not deleted yet starts again from 0
            UpdateExpression: 'SET r = if_not_exists(r, :zero) + :n, w = :w, e = :e, #x = :x',
            ConditionExpression: 'attribute_not_exists(e) OR e > :now',
            ExpressionAttributeNames: { '#x': ttlAttribute },
            ExpressionAttributeValues: {
              ':zero': N(0),
              ':n': N(r.replays),
              ':w': N(r.lastReplayAt),
              ':e': N(until),
              ':x': N(seconds(until)),
              ':now': N(now),
            },
          }).catch((e: unknown) => {
            if ((e as { name?: unknown })?.name !== 'ConditionalCheckFailedException') throw e;
            return request('PutItem', {
              Item: {
                ...replayKey(r.id),
                r: N(r.replays),
                w: N(r.lastReplayAt),
                e: N(until),
                [ttlAttribute]: N(seconds(until)),
              },
            });
          }),
        );
      }
      const settled = await Promise.allSettled(writes);
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },

    async read(options = {}) {
      const now = Date.now();
      const from = readFrom(options.since, now);
      const first = Math.floor(from / HOUR_MS) * HOUR_MS;
      let keys: Item[] = [];
      for (let h = first; h <= now; h += HOUR_MS) keys.push(hourKey(h) as Item);
      const items = new Map<string, Item>();
      for (let round = 0; keys.length > 0; round++) {
        const chunk = keys.slice(0, 100);
        keys = keys.slice(100);
        const answer = await request('BatchGetItem', { RequestItems: { [table]: { Keys: chunk } } });
        for (const item of ((answer.Responses as Record<string, Item[]> | undefined)?.[table] ??
          []) as Item[]) {
          items.set((item[keyAttribute] as { S: string }).S, item);
        }
        const left = (answer.UnprocessedKeys as Record<string, { Keys?: Item[] }> | undefined)?.[table]?.Keys;
        if (left?.length) {
          if (round > 50)
            throw new Error('dynamodb counters read: BatchGetItem kept leaving keys unprocessed');
          keys.push(...left);
          await new Promise((r) => setTimeout(r, Math.min(1000, 20 * 2 ** Math.min(round, 6))));
        }
      }
      const totals = zeroTotals();
      const fromMm = (from - first) / MINUTE_MS;
      const num = (item: Item, attribute: string) =>
        Number((item[attribute] as { N?: string } | undefined)?.N ?? 0);
      for (let h = first; h <= now; h += HOUR_MS) {
        const item = items.get(`idem:counters:${h}`);
        if (!item || num(item, 'e') <= now) continue;
        for (const name of COUNTER_NAMES) {
          if (h > first || fromMm === 0) totals[name] += num(item, `c:${name}`);
          else
            for (let mm = fromMm; mm < 60; mm++)
              totals[name] += num(item, `c:${name}:${String(mm).padStart(2, '0')}`);
        }
      }
      return totals;
    },

    async record(id) {
      const item = (await request('GetItem', { Key: replayKey(id), ConsistentRead: true })).Item as
        | Item
        | undefined;
      const n = (a: string) => Number((item?.[a] as { N?: string } | undefined)?.N ?? 0);
      if (!item || n('e') <= Date.now()) return undefined;
      return { replays: n('r'), lastReplayAt: n('w') };
    },

    async forget(id) {
      await request('DeleteItem', { Key: replayKey(id) });
    },
  };
}

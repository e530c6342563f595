/**
 * `inspect` for the DynamoDB store: one Scan page per `list` call (Limit = limit, the cursor
 * is the scan's LastEvaluatedKey, base64url JSON), one consistent GetItem for `get`, and a
 * DeleteItem for `delete`. Records are judged by the store's skew-adjusted clock, as the
 * store's `get` judges them.
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts';
import { checkListOptions, type ListedRecord, listedRecordOf, type StoreInspect } from '../../core/store.ts';
import type { Operation } from './client.ts';
import { type Item, storedScopeHash, toRecord } from './item.ts';

/** The attributes inspect reads: the record's, without m, n, j and the TTL attribute. */
const PROJECTION = '#k, s, f, t, a, l, e, o, b, d, h';

/**
 * The capability over the store's request function.
 *
 * @example
 * const inspect = dynamoInspect({ request, keyAttribute: 'id', clock });
 */
export function dynamoInspect(deps: {
  request(operation: Operation, input: Record<string, unknown>): Promise<Record<string, unknown>>;
  keyAttribute: string;
  clock(): { now: number; judge: number };
}): StoreInspect {
  const { request, keyAttribute, clock } = deps;
  return {
    async list(o) {
      checkListOptions(o);
      let start: Item | undefined;
      if (o.cursor !== undefined) {
        try {
          start = JSON.parse(Buffer.from(o.cursor, 'base64url').toString('utf8')) as Item;
        } catch {
          throw new InvalidOptionError(`list: not a cursor this store gave: ${o.cursor}`);
        }
      }
      const { judge } = clock();
      const page = await request('Scan', {
        Limit: o.limit,
        ProjectionExpression: PROJECTION,
        ExpressionAttributeNames: { '#k': keyAttribute },
        ...(start && { ExclusiveStartKey: start }),
      });
      const records: ListedRecord[] = [];
      for (const item of (page.Items as Item[] | undefined) ?? []) {
        const id = (item[keyAttribute] as { S?: string } | undefined)?.S ?? '';
        const r = listed(id, item, judge);
        if (r && (o.state === undefined || r.state === o.state)) records.push(r);
      }
      const last = page.LastEvaluatedKey as Item | undefined;
      return {
        records,
        cursor: last && Buffer.from(JSON.stringify(last)).toString('base64url'),
        now: judge,
      };
    },

    async get(id) {
      const read = await request('GetItem', {
        Key: { [keyAttribute]: { S: id } },
        ConsistentRead: true,
        ProjectionExpression: PROJECTION,
        ExpressionAttributeNames: { '#k': keyAttribute },
      });
      const item = read.Item as Item | undefined;
      return item && listed(id, item, clock().judge);
    },

    async delete(id) {
      const old = await request('DeleteItem', {
        Key: { [keyAttribute]: { S: id } },
        ReturnValues: 'ALL_OLD',
      });
      const item = old.Attributes as Item | undefined;
      return item !== undefined && toRecord(id, item).expiresAt > clock().judge;
    },
  };
}

/**
 * The record `id` as listed, or undefined when it is expired at `judge` or not a record. Items
 * written before b, d and h existed list with createdAt 0, completedAt 0 and scopeHash ''.
 */
function listed(id: string, item: Item, judge: number): ListedRecord | undefined {
  if (!item.s) return undefined; // not a record: the counters' items (src/stores/dynamodb/counters.ts)
  const r = toRecord(id, item);
  if (r.expiresAt <= judge) return undefined;
  const stored = (item.o as { S?: string } | undefined)?.S;
  return listedRecordOf(r, {
    outcomeBytes: stored === undefined ? 0 : Buffer.byteLength(stored),
    createdAt: numberOf(item.b),
    completedAt: r.state === 'completed' ? numberOf(item.d) : 0,
    scopeHash: storedScopeHash(item),
  });
}

function numberOf(v: unknown): number {
  const n = (v as { N?: string } | undefined)?.N;
  return n === undefined ? 0 : Number(n);
}

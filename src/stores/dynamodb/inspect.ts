/**
 * `inspect` for the DynamoDB store: one Scan page per `list` call (Limit = limit, the cursor
 * is the scan's LastEvaluatedKey, base64url JSON), and a DeleteItem for `delete`. Records are
 * judged by the store's skew-adjusted clock, as `get` judges them.
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts';
import { checkListOptions, type ListedRecord, listedStateOf, type StoreInspect } from '../../core/store.ts';
import type { Operation } from './client.ts';
import { type Item, toRecord } from './item.ts';

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
        ProjectionExpression: '#k, s, f, t, a, l, e, o',
        ExpressionAttributeNames: { '#k': keyAttribute },
        ...(start && { ExclusiveStartKey: start }),
      });
      const records: ListedRecord[] = [];
      for (const item of (page.Items as Item[] | undefined) ?? []) {
        if (!item.s) continue; // not a record: the counters' items (src/stores/dynamodb/counters.ts)
        const id = (item[keyAttribute] as { S?: string } | undefined)?.S ?? '';
        const r = toRecord(id, item);
        if (r.expiresAt <= judge) continue;
        const state = listedStateOf(r);
        if (o.state !== undefined && state !== o.state) continue;
        const stored = (item.o as { S?: string } | undefined)?.S;
        records.push({
          id,
          state,
          attempt: r.attempt,
          leaseUntil: r.leaseUntil,
          expiresAt: r.expiresAt,
          fingerprint: r.fingerprint,
          outcomeBytes: stored === undefined ? 0 : Buffer.byteLength(stored),
        });
      }
      const last = page.LastEvaluatedKey as Item | undefined;
      return {
        records,
        cursor: last && Buffer.from(JSON.stringify(last)).toString('base64url'),
        now: judge,
      };
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

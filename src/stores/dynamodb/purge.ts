/**
 * `purgeExpired` for tables without TTL (or to trim one sooner than DynamoDB's TTL does).
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts';
import type { Operation } from './client.ts';
import { type Item, N } from './item.ts';

/** Scan pages one purgeExpired call reads at most. */
const MAX_PURGE_PAGES = 50;

/** What the purge needs from the store. */
export interface PurgeDeps {
  request(operation: Operation, input: Record<string, unknown>): Promise<Record<string, unknown>>;
  /** A conditional write: true when applied. */
  write(
    operation: 'DeleteItem',
    input: Record<string, unknown>,
    id: string,
    read: boolean,
  ): Promise<true | { item: Item | undefined }>;
  keyAttribute: string;
  clock(): { now: number; judge: number };
}

/**
 * `purge(limit)` deletes up to `limit` items past their expiresAt: it scans on from where the
 * last call stopped (wrapping around at most once a call, at most 50 pages), and deletes each
 * item with a `DeleteItem` conditioned on it still being expired, so a key claimed again
 * meanwhile stays.
 *
 * @example
 * const purge = createPurge({ request, write, keyAttribute: 'id', clock });
 * const deleted = await purge(500);
 */
export function createPurge(deps: PurgeDeps): (limit: number) => Promise<number> {
  const { request, write, keyAttribute, clock } = deps;
  let cursor: Item | undefined;
  return async (limit) => {
    if (!Number.isInteger(limit) || limit < 0) {
      throw new InvalidOptionError(`purgeExpired: limit must be a non-negative integer, got ${limit}`);
    }
    let deleted = 0;
    let wrapped = cursor === undefined;
    for (let page = 0; page < MAX_PURGE_PAGES && deleted < limit; page++) {
      const { judge } = clock();
      const scanned = await request('Scan', {
        ProjectionExpression: '#k',
        FilterExpression: 'e <= :j',
        ExpressionAttributeNames: { '#k': keyAttribute },
        ExpressionAttributeValues: { ':j': N(judge) },
        ...(cursor && { ExclusiveStartKey: cursor }),
      });
      const items = ((scanned.Items as Item[] | undefined) ?? []).slice(0, limit - deleted);
      const results = await Promise.all(
        items.map((item) =>
          write(
            'DeleteItem',
            {
              Key: { [keyAttribute]: item[keyAttribute] },
              ConditionExpression: 'e <= :j',
              ExpressionAttributeValues: { ':j': N(judge) },
            },
            '',
            false,
          ),
        ),
      );
      deleted += results.filter((r) => r === true).length;
      cursor = scanned.LastEvaluatedKey as Item | undefined;
      if (cursor === undefined) {
        if (wrapped) break; // the whole table was read in this call
        wrapped = true;
      }
    }
    return deleted;
  };
}

/**
 * The DynamoDB store: one conditional write per transition (`ConditionExpression`, with
 * `ReturnValuesOnConditionCheckFailure: 'ALL_OLD'` so a failed claim answers the record that
 * stands in the way in the same round trip), on an AWS SDK v3 `DynamoDBClient`.
 *
 * Clock rule: DynamoDB has no clock a client can read, so leases run on the caller's clock and
 * every record is judged on `Date.now() − clockSkewMs`. A lease is taken over, and a record
 * counts as expired, only `clockSkewMs` after its time on the writer's clock, so two machines
 * whose clocks differ by at most `clockSkewMs` never take over a live lease.
 *
 * DynamoDB's TTL deletes late (often within days), so the store treats an item past `e`
 * (expiresAt) as absent; the TTL attribute only keeps the table small.
 *
 * @module
 */
import { InvalidOptionError, OutcomeTooLargeError, StoreUnavailableError } from '../../core/errors.ts';
import {
  type ClaimRequest,
  type ClaimResult,
  guardMsOf,
  type Store,
  type StoreRecord,
} from '../../core/store.ts';
import { isConditionFailed, isItemTooLarge, send } from './client.ts';
import { dynamoCounters } from './counters.ts';
import { dynamoInspect } from './inspect.ts';
import {
  completedItemBytes,
  encodeOutcome,
  type Item,
  MAX_ITEM_BYTES,
  N,
  S,
  seconds,
  storedScopeHash,
  toRecord,
} from './item.ts';
import { type DynamoDBStoreOptions, resolveOptions } from './options.ts';
import { createPurge } from './purge.ts';

export type { ClientConfig, DynamoDBClientLike } from './client.ts';
export type { DynamoDBStoreOptions } from './options.ts';
export { type CreateTableOptions, createTable } from './table.ts';

/** Failed conditions a claim may meet in a row (each one a concurrent writer winning) before it gives up. */
const MAX_CLAIM_ROUNDS = 10;
/** In-progress records this store remembers having found held, for a one-request takeover. */
const MAX_SIGHTINGS = 10_000;
/** Holders whose attempt and fingerprint size this store remembers (claims it won). */
const MAX_HELD = 100_000;

/**
 * A store on a DynamoDB table, through the AWS SDK v3.
 *
 * @example
 * import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
 * import { createIdem } from 'idem';
 * import { dynamodbStore } from 'idem/dynamodb';
 * const idem = createIdem({ store: dynamodbStore({ client: new DynamoDBClient({}), table: 'idem' }) });
 */
export function dynamodbStore(options: DynamoDBStoreOptions): Store {
  const { client, owned, table, keyAttribute, ttlAttribute, clockSkewMs, requestTimeout } =
    resolveOptions(options);

  let closed = false;
  /** token → what the claim knew, so release and complete need no read. */
  const held = new Map<string, { attempt: number; fingerprintBytes: number; scopeBytes: number }>();
  const hold = (token: string, attempt: number, fingerprint: string, scopeHash: string) => {
    if (held.size >= MAX_HELD) held.delete(held.keys().next().value!);
    held.set(token, {
      attempt,
      fingerprintBytes: Buffer.byteLength(fingerprint),
      scopeBytes: Buffer.byteLength(scopeHash),
    });
  };

  /** id → the in-progress item a claim here last found held (see claim). */
  const sightings = new Map<string, Item>();
  const see = (id: string, item: Item) => {
    if (sightings.size >= MAX_SIGHTINGS) sightings.delete(sightings.keys().next().value!);
    sightings.set(id, item);
  };

  const key = (id: string) => ({ [keyAttribute]: S(id) });
  /** The caller's clock, and the time records are judged by (the skew margin earlier). */
  const clock = () => {
    const now = Date.now();
    return { now, judge: now - clockSkewMs };
  };
  const request = (operation: Parameters<typeof send>[1], input: Record<string, unknown>) => {
    if (closed) return Promise.reject(new StoreUnavailableError('the dynamodb store is closed'));
    return send(client, operation, { TableName: table, ...input }, requestTimeout);
  };
  /**
   * A conditional write: true when it was applied, else the item as it stood (`ALL_OLD`). A
   * server without `ALL_OLD` (dynalite) answers no item: then, when `read` is set, one
   * consistent read fetches it.
   */
  const write = async (
    operation: 'PutItem' | 'UpdateItem' | 'DeleteItem',
    input: Record<string, unknown>,
    id: string,
    read: boolean,
  ): Promise<true | { item: Item | undefined }> => {
    try {
      await request(operation, { ...input, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' });
      return true;
    } catch (e) {
      if (!isConditionFailed(e)) throw e;
      const item = (e as { Item?: Item }).Item;
      if (item || !read) return { item };
      return { item: await readItem(id) };
    }
  };
  const readItem = async (id: string): Promise<Item | undefined> =>
    (await request('GetItem', { Key: key(id), ConsistentRead: true })).Item as Item | undefined;

  const purge = createPurge({ request, write, keyAttribute, clock });

  return {
    name: 'dynamodb',

    async claim(req: ClaimRequest): Promise<ClaimResult> {
      const leaseMs = ms('leaseMs', req.leaseMs);
      const margin = Math.max(leaseMs, ms('ttlMs', req.ttlMs));
      const scopeHash = req.scopeHash ?? '';
      let { now, judge } = clock();
      // b (created at) and h (scope hash, only when there is one) ride on the claim's own write;
      // a takeover's UpdateItem leaves them as they are
      const fresh = (): Item => ({
        ...key(req.id),
        s: S('p'),
        f: S(req.fingerprint),
        t: S(req.token),
        a: N(1),
        l: N(now + leaseMs),
        e: N(now + leaseMs + margin),
        m: N(margin),
        n: N(seconds(margin)),
        [ttlAttribute]: N(seconds(now + leaseMs + margin)),
        b: N(now),
        ...(scopeHash !== '' && { h: S(scopeHash) }),
      });
      // absent or expired (an item another tool wrote, without e, counts as expired): attempt 1
      const put = () =>
        write(
          'PutItem',
          {
            Item: fresh(),
            ConditionExpression: 'attribute_not_exists(#k) OR attribute_not_exists(e) OR e <= :j',
            ExpressionAttributeNames: { '#k': keyAttribute },
            ExpressionAttributeValues: { ':j': N(judge) },
          },
          req.id,
          true,
        );
      const takeable = (r: StoreRecord) =>
        r.state === 'in_progress' &&
        r.fingerprint === req.fingerprint &&
        r.expiresAt > judge &&
        (r.token === '' || r.leaseUntil <= judge);
      // A record an earlier claim here found held, whose lease has run out since (a waiter or a
      // rescuer polling): straight to the fenced takeover, one request. Had it changed meanwhile,
      // the failed condition answers it as it now is.
      const seen = sightings.get(req.id);
      sightings.delete(req.id);
      let answer = seen && takeable(toRecord(req.id, seen)) ? { item: seen } : await put();
      for (let round = 0; round < MAX_CLAIM_ROUNDS; round++) {
        if (answer === true) {
          hold(req.token, 1, req.fingerprint, scopeHash);
          return { status: 'acquired', attempt: 1, leaseUntil: now + leaseMs, takeover: false };
        }
        const old = answer.item && toRecord(req.id, answer.item);
        if (old?.token === req.token && old.state === 'in_progress') {
          // our own write landed and its answer was lost (the SDK retried it): the claim is ours
          hold(req.token, old.attempt, req.fingerprint, storedScopeHash(answer.item));
          return {
            status: 'acquired',
            attempt: old.attempt,
            leaseUntil: old.leaseUntil,
            takeover: old.attempt > 1,
          };
        }
        if (old && old.expiresAt > judge) {
          if (!takeable(old)) {
            if (old.state === 'in_progress') see(req.id, answer.item!);
            return { status: 'existing', record: old, now: judge };
          }
          // a takeover (attempt + 1) or a released marker (attempt 0 → 1), fenced on the record as read
          const leaseUntil = now + leaseMs;
          const expiresAt = Math.max(old.expiresAt, leaseUntil + margin);
          const attempt = old.attempt + 1;
          const taken = await write(
            'UpdateItem',
            {
              Key: key(req.id),
              UpdateExpression: 'SET t = :t, a = :a, l = :l, e = :e, m = :m, n = :n, #x = :x',
              ConditionExpression: 's = :p AND f = :f AND t = :ot AND a = :oa AND l = :ol AND e = :oe',
              ExpressionAttributeNames: { '#x': ttlAttribute },
              ExpressionAttributeValues: {
                ':t': S(req.token),
                ':a': N(attempt),
                ':l': N(leaseUntil),
                ':e': N(expiresAt),
                ':m': N(expiresAt - leaseUntil),
                ':n': N(seconds(expiresAt - leaseUntil)),
                ':x': N(seconds(expiresAt)),
                ':p': S('p'),
                ':f': S(req.fingerprint),
                ':ot': S(old.token),
                ':oa': N(old.attempt),
                ':ol': N(old.leaseUntil),
                ':oe': N(old.expiresAt),
              },
            },
            req.id,
            true,
          );
          if (taken === true) {
            hold(req.token, attempt, req.fingerprint, storedScopeHash(answer.item));
            return { status: 'acquired', attempt, leaseUntil, takeover: attempt > 1 };
          }
          answer = taken;
          continue;
        }
        // gone or expired since the write failed: claim it as new
        ({ now, judge } = clock());
        answer = await put();
      }
      throw new StoreUnavailableError(`dynamodb claim on ${req.id} kept changing under concurrent writers`);
    },

    async complete(id, token, outcome, ttlMs) {
      const ttl = ms('ttlMs', ttlMs);
      if (!token) return false; // '' marks a released record: nobody holds it
      const [text, escaped] = encodeOutcome(outcome);
      const claimed = held.get(token);
      const bytes = completedItemBytes(
        keyAttribute,
        ttlAttribute,
        id,
        token,
        claimed?.fingerprintBytes ?? 0,
        text,
        escaped,
        claimed?.scopeBytes ?? 0,
      );
      const room = MAX_ITEM_BYTES - (bytes - Buffer.byteLength(text));
      if (bytes > MAX_ITEM_BYTES) throw new OutcomeTooLargeError(Buffer.byteLength(text), room);
      const { now, judge } = clock();
      let done: Awaited<ReturnType<typeof write>>;
      try {
        done = await write(
          'UpdateItem',
          {
            Key: key(id),
            UpdateExpression: `SET s = :c, o = :o, l = :zero, e = :e, d = :d, #x = :x${escaped ? ', j = :one' : ''} REMOVE m, n${escaped ? '' : ', j'}`,
            ConditionExpression: 't = :t AND s = :p AND e > :j',
            ExpressionAttributeNames: { '#x': ttlAttribute },
            ExpressionAttributeValues: {
              ':c': S('c'),
              ':o': S(text),
              ':zero': N(0),
              ':e': N(now + ttl),
              ':d': N(now),
              ':x': N(seconds(now + ttl)),
              ...(escaped && { ':one': N(1) }),
              ':t': S(token),
              ':p': S('p'),
              ':j': N(judge),
            },
          },
          id,
          true,
        );
      } catch (e) {
        if (isItemTooLarge(e)) throw new OutcomeTooLargeError(Buffer.byteLength(text), room);
        throw e;
      }
      held.delete(token);
      if (done === true) return true;
      // completing again with the same token answers true and changes nothing
      const r = done.item && toRecord(id, done.item);
      return r?.state === 'completed' && r.token === token && r.expiresAt > judge;
    },

    async release(id, token, guardMs) {
      const guard = guardMsOf(guardMs);
      if (!token) return false;
      let attempt = held.get(token)?.attempt ?? 1; // a token this store did not claim: guess, then learn
      for (let round = 0; round < 2; round++) {
        const { judge } = clock();
        const fenced = {
          ConditionExpression: 't = :t AND s = :p AND a = :a AND e > :j',
          ExpressionAttributeValues: { ':t': S(token), ':p': S('p'), ':a': N(attempt), ':j': N(judge) },
        };
        const later = attempt !== 1;
        const done =
          !later && guard === 0
            ? await write('DeleteItem', { Key: key(id), ...fenced }, id, round === 0)
            : await write(
                'UpdateItem',
                {
                  Key: key(id),
                  // after a takeover: the lease ends now, no token, retention unchanged;
                  // attempt 1 with a guard: a released marker (attempt 0) until now + guard
                  UpdateExpression: later
                    ? 'SET t = :empty, l = :now'
                    : 'SET t = :empty, a = :zero, l = :now, e = :e, m = :g, n = :gs, #x = :x',
                  ...fenced,
                  ...(!later && { ExpressionAttributeNames: { '#x': ttlAttribute } }),
                  ExpressionAttributeValues: {
                    ...fenced.ExpressionAttributeValues,
                    ':empty': S(''),
                    ':now': N(judge),
                    ...(!later && {
                      ':zero': N(0),
                      ':e': N(judge + guard),
                      ':g': N(guard),
                      ':gs': N(seconds(guard)),
                      ':x': N(seconds(judge + guard)),
                    }),
                  },
                },
                id,
                round === 0,
              );
        if (done === true) {
          held.delete(token);
          return true;
        }
        const r = done.item && toRecord(id, done.item);
        if (
          !r ||
          r.token !== token ||
          r.state !== 'in_progress' ||
          r.expiresAt <= judge ||
          r.attempt === attempt
        ) {
          held.delete(token);
          return false;
        }
        attempt = r.attempt; // the token holds it at another attempt than guessed
      }
      return false;
    },

    async renew(id, token, leaseMs) {
      const lease = ms('leaseMs', leaseMs);
      if (!token) return undefined;
      const { now, judge } = clock();
      const leaseUntil = now + lease;
      const done = await write(
        'UpdateItem',
        {
          Key: key(id),
          // expiresAt moves with the lease: e = leaseUntil + m keeps the retention margin
          UpdateExpression: 'SET l = :l, e = m + :l, #x = n + :ls',
          ConditionExpression: 't = :t AND s = :p AND e > :j',
          ExpressionAttributeNames: { '#x': ttlAttribute },
          ExpressionAttributeValues: {
            ':l': N(leaseUntil),
            ':ls': N(seconds(leaseUntil)),
            ':t': S(token),
            ':p': S('p'),
            ':j': N(judge),
          },
        },
        id,
        false,
      );
      if (done === true) return leaseUntil;
      held.delete(token);
      return undefined;
    },

    async get(id): Promise<StoreRecord | undefined> {
      const item = await readItem(id);
      if (!item) return undefined;
      const record = toRecord(id, item);
      return record.expiresAt > clock().judge ? record : undefined;
    },

    purgeExpired: (limit) => purge(limit),

    inspect: dynamoInspect({ request, keyAttribute, clock }),
    counters: dynamoCounters({ request, keyAttribute, ttlAttribute, table }),

    async close() {
      closed = true;
      held.clear();
      sightings.clear();
      owned?.destroy();
    },
  };
}

/** A duration the store can do integer arithmetic with. */
function ms(what: string, value: number): number {
  const n = Math.ceil(value);
  if (!(n >= 0 && n <= 1e15))
    throw new InvalidOptionError(`${what} must be a finite number >= 0, got ${value}`);
  return n;
}

/**
 * `createTable`: the table the DynamoDB store expects, created from code (tests, scripts, a
 * first deploy). Infrastructure-as-code users take the CloudFormation/CDK snippet in the docs.
 *
 * @module
 */
import { InvalidOptionError, StoreUnavailableError } from '../../core/errors.ts';
import { type DynamoDBClientLike, send } from './client.ts';

/**
 * Options of {@link createTable}.
 *
 * @example
 * const options: CreateTableOptions = { client, table: 'idem', timeToLive: true };
 */
export interface CreateTableOptions {
  client: DynamoDBClientLike;
  table: string;
  /** The partition key attribute (type S). Default 'id'. */
  keyAttribute?: string;
  /** The TTL attribute. Default 'expiration'. */
  ttlAttribute?: string;
  /**
   * Turn on DynamoDB TTL on `ttlAttribute` (UpdateTimeToLive). Default true. Emulators without
   * TTL (dynalite) need false; then call `purgeExpired` now and then instead.
   */
  timeToLive?: boolean;
  /** Resolve once the table exists; answer false (not an error) when it existed already. Default true. */
  ifNotExists?: boolean;
  /** How long to wait for the table to become ACTIVE, in ms. Default 60 000. */
  timeoutMs?: number;
}

/**
 * Creates the store's table (on-demand billing, partition key `id` of type S), waits until it
 * is ACTIVE and turns on TTL. Answers true when it created the table.
 *
 * @example
 * import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
 * import { createTable } from 'idem/dynamodb';
 * await createTable({ client: new DynamoDBClient({}), table: 'idem' });
 */
export async function createTable(options: CreateTableOptions): Promise<boolean> {
  const { client, table, keyAttribute = 'id', ttlAttribute = 'expiration' } = options;
  const { timeToLive = true, ifNotExists = true, timeoutMs = 60_000 } = options;
  if (typeof client?.send !== 'function') throw new InvalidOptionError('createTable needs { client }');
  if (typeof table !== 'string' || !/^[a-zA-Z0-9_.-]{3,255}$/.test(table)) {
    throw new InvalidOptionError(`createTable: table must be a DynamoDB table name, got ${String(table)}`);
  }
  let created = true;
  try {
    await send(
      client,
      'CreateTable',
      {
        TableName: table,
        KeySchema: [{ AttributeName: keyAttribute, KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: keyAttribute, AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
      },
      timeoutMs,
    );
  } catch (e) {
    const name = (e as { cause?: { name?: unknown } }).cause?.name;
    if (!(ifNotExists && name === 'ResourceInUseException')) throw e;
    created = false;
  }
  const end = Date.now() + timeoutMs;
  for (;;) {
    const described = await send(client, 'DescribeTable', { TableName: table }, timeoutMs);
    if ((described.Table as { TableStatus?: string } | undefined)?.TableStatus === 'ACTIVE') break;
    if (Date.now() > end)
      throw new StoreUnavailableError(`table ${table} was not ACTIVE within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // Not only when this call created the table: a first call may have created it and then
  // failed to turn TTL on, so every call checks TTL and turns it on when it is off.
  if (timeToLive) {
    const described = await send(client, 'DescribeTimeToLive', { TableName: table }, timeoutMs);
    const ttl = described.TimeToLiveDescription as
      | { TimeToLiveStatus?: string; AttributeName?: string }
      | undefined;
    const on = ttl?.TimeToLiveStatus === 'ENABLED' || ttl?.TimeToLiveStatus === 'ENABLING';
    if (on && ttl?.AttributeName !== ttlAttribute) {
      throw new InvalidOptionError(
        `createTable: table ${table} has TTL on attribute ${String(ttl?.AttributeName)}, not ${ttlAttribute}: pass ttlAttribute: '${String(ttl?.AttributeName)}'`,
      );
    }
    if (!on) {
      await send(
        client,
        'UpdateTimeToLive',
        { TableName: table, TimeToLiveSpecification: { AttributeName: ttlAttribute, Enabled: true } },
        timeoutMs,
      );
    }
  }
  return created;
}

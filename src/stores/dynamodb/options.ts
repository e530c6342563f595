/**
 * The options of the DynamoDB store, checked where they enter.
 *
 * @module
 */

import { InvalidOptionError } from '../../core/errors.ts';
import { nearestName } from '../../core/names.ts';
import { type ClientConfig, type DynamoDBClientLike, ownClient } from './client.ts';

/**
 * Options of {@link dynamodbStore}.
 *
 * @example
 * const options: DynamoDBStoreOptions = { client, table: 'idem', clockSkewMs: 1000 };
 */
export interface DynamoDBStoreOptions {
  /** An AWS SDK v3 `DynamoDBClient` (from `@aws-sdk/client-dynamodb`). The store never destroys it. */
  client?: DynamoDBClientLike;
  /**
   * Instead of `client`: the store creates its own `DynamoDBClient` with this config on the first
   * request (region and credentials otherwise from the environment) and destroys it on close.
   */
  clientConfig?: ClientConfig;
  /** The table name. Create it with {@link createTable} or the CloudFormation snippet in the docs. */
  table: string;
  /** The partition key attribute (type S). Defaults to 'id', like Powertools' tables. */
  keyAttribute?: string;
  /** The TTL attribute (epoch seconds). Defaults to 'expiration', like Powertools' tables. */
  ttlAttribute?: string;
  /**
   * The largest difference between the clocks of any two callers, in ms: leases are taken over
   * and records expire this much later than their writer's clock says. Defaults to 1000.
   */
  clockSkewMs?: number;
  /** Longest wait for one request (the SDK's retries included); then `StoreUnavailableError`. Default 2000. */
  requestTimeout?: number;
}

/** The options with defaults filled in, and the client the store sends on (its own, if `owned`). */
export interface ResolvedOptions {
  client: DynamoDBClientLike;
  owned: (DynamoDBClientLike & { destroy(): void }) | undefined;
  table: string;
  keyAttribute: string;
  ttlAttribute: string;
  clockSkewMs: number;
  requestTimeout: number;
}

/**
 * Checks {@link DynamoDBStoreOptions} and fills in the defaults; anything wrong is an
 * `InvalidOptionError` naming the option.
 *
 * @example
 * const { table, clockSkewMs } = resolveOptions({ client, table: 'idem' }); // clockSkewMs 1000
 */
export function resolveOptions(options: DynamoDBStoreOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('dynamodbStore needs options: { client, table }');
  }
  const { table, keyAttribute = 'id', ttlAttribute = 'expiration' } = options;
  const { clockSkewMs = 1000, requestTimeout = 2000 } = options;
  for (const key of Object.keys(options)) {
    if (KNOWN.includes(key)) continue;
    const near = nearestName(key, KNOWN);
    const hint = near ? ` — did you mean ${near}?` : ` (known: ${KNOWN.join(', ')})`;
    throw new InvalidOptionError(`dynamodbStore: unknown option ${key}${hint}`);
  }
  if (!options.client === !options.clientConfig) {
    throw new InvalidOptionError('dynamodbStore needs exactly one of { client, clientConfig }');
  }
  if (options.client && typeof options.client.send !== 'function') {
    throw new InvalidOptionError('dynamodbStore: client must be an AWS SDK v3 DynamoDBClient');
  }
  const owned = options.clientConfig ? ownClient(options.clientConfig) : undefined;
  const client = options.client ?? owned!;
  if (typeof table !== 'string' || !/^[a-zA-Z0-9_.-]{3,255}$/.test(table)) {
    throw new InvalidOptionError(`dynamodbStore: table must be a DynamoDB table name, got ${String(table)}`);
  }
  for (const [what, name] of [
    ['keyAttribute', keyAttribute],
    ['ttlAttribute', ttlAttribute],
  ] as const) {
    if (typeof name !== 'string' || name === '' || RESERVED.includes(name)) {
      throw new InvalidOptionError(
        `dynamodbStore: ${what} must be a non-empty name other than ${RESERVED.join(', ')}, got "${name}"`,
      );
    }
  }
  if (keyAttribute === ttlAttribute) {
    throw new InvalidOptionError('dynamodbStore: keyAttribute and ttlAttribute must differ');
  }
  if (!(Number.isFinite(clockSkewMs) && clockSkewMs >= 0)) {
    throw new InvalidOptionError(
      `dynamodbStore: clockSkewMs must be a number of ms >= 0, got ${clockSkewMs}`,
    );
  }
  if (!(Number.isFinite(requestTimeout) && requestTimeout > 0)) {
    throw new InvalidOptionError(`dynamodbStore: requestTimeout must be a positive number of ms`);
  }

  return { client, owned, table, keyAttribute, ttlAttribute, clockSkewMs, requestTimeout };
}

const KNOWN = [
  'client',
  'clientConfig',
  'table',
  'keyAttribute',
  'ttlAttribute',
  'clockSkewMs',
  'requestTimeout',
];
/** Attribute names the record uses itself. */
const RESERVED = ['s', 'f', 't', 'a', 'l', 'e', 'o', 'j', 'm', 'n', 'b', 'd', 'h'];

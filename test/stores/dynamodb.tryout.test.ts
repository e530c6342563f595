/**
 * What an outside tryout found in the DynamoDB store's setup: `createTable` never turned TTL on
 * when a first call created the table and then failed to (it now checks TTL on every call),
 * and a `dynamodb://` spec silently ignored unknown query parameters (now refused, naming the
 * nearest known one). Dynalite has no TTL API: the TTL calls are answered by a recording
 * wrapper around a dynalite client, which keeps the table calls real.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidOptionError, StoreUnavailableError } from '../../src/core/errors.ts';
import { createTable, type DynamoDBClientLike } from '../../src/stores/dynamodb/index.ts';
import { storeFromSpec } from '../../src/stores/spec.ts';
import { dynamoClient, startDynalite } from '../helpers/dynalite.ts';
import { uniqueName } from '../helpers/services.ts';

const dynalite = await startDynalite();
const client = dynamoClient(dynalite.endpoint);
afterAll(async () => {
  client.destroy();
  await dynalite.stop();
});

/** Dynalite plus a TTL setting kept here; the first `failTtl` UpdateTimeToLive calls fail. */
function withTtl(failTtl: number) {
  const ttl = { status: 'DISABLED', attribute: undefined as string | undefined };
  const updates: string[] = [];
  const wrapped: DynamoDBClientLike = {
    async send(command, options) {
      const c = command as { constructor: { name: string }; input: Record<string, unknown> };
      const name = c.constructor.name;
      if (name === 'DescribeTimeToLiveCommand')
        return { TimeToLiveDescription: { TimeToLiveStatus: ttl.status, AttributeName: ttl.attribute } };
      if (name === 'UpdateTimeToLiveCommand') {
        const spec = c.input.TimeToLiveSpecification as { AttributeName: string };
        updates.push(spec.AttributeName);
        if (failTtl-- > 0) throw Object.assign(new Error('throttled'), { name: 'LimitExceededException' });
        Object.assign(ttl, { status: 'ENABLED', attribute: spec.AttributeName });
        return {};
      }
      return client.send(command as never, options);
    },
  };
  return { client: wrapped, ttl, updates };
}

describe('DynamoDB setup: tryout findings', () => {
  it('createTable turns TTL on in a later call when the first created the table but failed to', async () => {
    const table = uniqueName('idem_ddb_ttl');
    const fake = withTtl(1);
    await expect(createTable({ client: fake.client, table })).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(fake.ttl.status).toBe('DISABLED');
    expect(await createTable({ client: fake.client, table })).toBe(false);
    expect(fake.ttl).toEqual({ status: 'ENABLED', attribute: 'expiration' });
    // once on, it is left alone; on another attribute, a clear error
    expect(await createTable({ client: fake.client, table })).toBe(false);
    expect(fake.updates).toEqual(['expiration', 'expiration']);
    await expect(createTable({ client: fake.client, table, ttlAttribute: 'ttl' })).rejects.toThrow(
      InvalidOptionError,
    );
  });

  it('a dynamodb:// spec refuses an unknown parameter, naming the nearest known one', async () => {
    await expect(storeFromSpec('dynamodb://tbl?regoin=us-east-1')).rejects.toThrow(/did you mean region/);
    await expect(storeFromSpec('dynamodb://tbl?endpont=http://x')).rejects.toThrow(/did you mean endpoint/);
    await expect(storeFromSpec('dynamodb://tbl?consistent=1')).rejects.toThrow(InvalidOptionError);
  });
});

/**
 * Redis restarted without persistence while a holder ran: its record is gone. The holder
 * learns that the record was lost (nobody holds the key), not that another holder decides.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { LeaseLostError } from '../../src/core/errors.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const up = await serviceAvailable('redis');
const prefix = uniqueName('idem_lost');

describe.skipIf(!up)('redis: a record lost under its holder', () => {
  const admin = up ? new Redis(SERVICES.redis) : (undefined as never);
  const store = up ? redisStore({ url: SERVICES.redis, prefix }) : (undefined as never);
  afterAll(async () => {
    await store?.close?.();
    await deletePrefix(admin, prefix);
    await admin?.quit();
  });

  it("complete answers LeaseLostError with reason 'record_lost'; the next call runs as attempt 1", async () => {
    const idem = createIdem({ store, lease: '30s' });
    const { recordId } = idem.ids('job');
    const err = await idem
      .run('job', async () => {
        expect(await admin.del(`${prefix}:{${recordId}}`)).toBe(1); // FLUSHALL / restart, for this key
        return 'done';
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err.reason).toBe('record_lost');
    expect(err.value).toBe('done');
    const again = await idem.execute('job', (ctx) => ctx.attempt);
    expect(again).toMatchObject({ value: 1, replayed: false });
  });

  it("a heartbeat that finds the record gone aborts the signal with reason 'record_lost'", async () => {
    const idem = createIdem({ store, lease: 150 });
    const { recordId } = idem.ids('beat');
    const err = await idem
      .run('beat', async (ctx) => {
        await admin.del(`${prefix}:{${recordId}}`);
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        throw ctx.signal.reason;
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err.reason).toBe('record_lost');
  });
});

import { createIdem, InvalidOptionError, isIdemError, memoryStore, StoreUnavailableError, toMs } from 'idem';
import { describe, expect, it } from 'vitest';

describe('durations', () => {
  it('accepts milliseconds and unit strings', () => {
    expect(toMs(1500, 'x')).toBe(1500);
    expect(toMs('1500ms', 'x')).toBe(1500);
    expect(toMs('30s', 'x')).toBe(30_000);
    expect(toMs('1.5m', 'x')).toBe(90_000);
    expect(toMs('24h', 'x')).toBe(86_400_000);
    expect(toMs('7d', 'x')).toBe(604_800_000);
  });

  it('rejects anything else with an InvalidOptionError naming the option', () => {
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, '30', '30 parsecs', 's', '', '1e3s', null]) {
      expect(() => toMs(bad as never, 'lease')).toThrow(/lease must be/);
    }
  });

  it('createIdem validates its options up front', () => {
    const store = memoryStore();
    expect(() => createIdem({ store, lease: 'soon' as never })).toThrow(InvalidOptionError);
    expect(() => createIdem({ store, ttl: -5 })).toThrow(InvalidOptionError);
    expect(() => createIdem({ store, lease: 10 })).toThrow(/at least 50 ms/);
    expect(() => createIdem({ store, onInProgress: 'retry' as never })).toThrow(InvalidOptionError);
    expect(() => createIdem({} as never)).toThrow(InvalidOptionError);
  });

  it('per-call options are validated too, without running the action', async () => {
    const idem = createIdem({ store: memoryStore() });
    let ran = false;
    const err = await idem.run('k', () => (ran = true), { lease: 'forever' as never }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(ran).toBe(false);
  });
});

describe('errors and events', () => {
  it('a store that throws surfaces as StoreUnavailableError (503), and onEvent sees it', async () => {
    const events: string[] = [];
    const broken = {
      ...memoryStore(),
      name: 'broken',
      claim: () => Promise.reject(new Error('ECONNREFUSED')),
    };
    const idem = createIdem({ store: broken, onEvent: (e) => events.push(e.type) });
    const err = await idem.run('k', () => 1).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(isIdemError(err)).toBe(true);
    expect(err.status).toBe(503);
    expect(err.cause.message).toBe('ECONNREFUSED');
    expect(events).toEqual(['store_error']);
  });

  it('a store method that throws synchronously is still a StoreUnavailableError', async () => {
    const sync = {
      ...memoryStore(),
      claim: () => {
        throw new Error('driver bug');
      },
    };
    const err = await createIdem({ store: sync })
      .run('k', () => 1)
      .catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.cause.message).toBe('driver bug');
  });

  it('emits one event per transition, with record ids and never raw keys', async () => {
    const events: Array<{ type: string; recordId: string }> = [];
    const idem = createIdem({ store: memoryStore(), onEvent: (e) => events.push(e) });
    await idem.run('secret-key', () => 1);
    await idem.run('secret-key', () => 1);
    await idem.run('secret-key', () => 1, { input: 'other' }).catch(() => {});
    expect(events.map((e) => e.type)).toEqual(['acquired', 'completed', 'replayed', 'mismatch']);
    expect(JSON.stringify(events)).not.toContain('secret-key');
  });

  it('a throwing onEvent hook never breaks the action', async () => {
    const idem = createIdem({
      store: memoryStore(),
      onEvent: () => {
        throw new Error('metrics down');
      },
    });
    expect(await idem.run('k', () => 'fine')).toBe('fine');
  });

  it('releaseIf hands the value back but frees the key', async () => {
    const idem = createIdem({ store: memoryStore() });
    let n = 0;
    const action = () => ({ status: ++n === 1 ? 429 : 200 });
    const opts = { releaseIf: (v: { status: number }) => v.status === 429 };
    expect(await idem.execute('k', action, opts)).toMatchObject({ value: { status: 429 }, replayed: false });
    expect(await idem.run('k', action, opts)).toEqual({ status: 200 });
    expect(await idem.execute('k', action, opts)).toMatchObject({ value: { status: 200 }, replayed: true });
  });

  it('an unserializable result is stored as an error, so the action never runs twice', async () => {
    const idem = createIdem({ store: memoryStore() });
    let n = 0;
    const action = () => {
      n++;
      return { fn: () => 1 };
    };
    await expect(idem.run('k', action)).rejects.toThrow(/cannot be stored/);
    await expect(idem.run('k', action)).rejects.toThrow(/cannot be stored/);
    expect(n).toBe(1);
  });

  it('purgeExpired loops over batches', async () => {
    const idem = createIdem({ store: memoryStore(), ttl: 10 });
    for (let i = 0; i < 25; i++) await idem.run(`k${i}`, () => i);
    await new Promise((r) => setTimeout(r, 30));
    expect(await idem.purgeExpired({ batchSize: 10 })).toBe(25);
  });
});

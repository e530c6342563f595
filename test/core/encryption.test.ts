/**
 * Encryption at rest: outcomes are sealed before they reach the store, open only with a key the
 * instance holds, rotate by key id, and refuse to open when altered or moved to another record.
 */
import { randomBytes } from 'node:crypto';
import {
  createIdem,
  definitive,
  type EncryptionOptions,
  InvalidOptionError,
  memoryStore,
  OutcomeUnreadableError,
  type Store,
} from 'idem';
import { describe, expect, it } from 'vitest';

const K1 = randomBytes(32);
const K2 = randomBytes(32);
const SECRET = 'card 4242-4242-4242-4242 of Ada Lovelace';

async function rawOutcome(store: Store, idem: ReturnType<typeof createIdem>, key: string) {
  return (await store.get(idem.ids(key).recordId))?.outcome ?? '';
}

describe('encryption at rest', () => {
  it('stores sealed outcomes and replays them', async () => {
    const store = memoryStore();
    const idem = createIdem({ store, encryption: { keys: { k1: K1 } } });
    let runs = 0;
    const first = await idem.run('pay-1', () => ({ runs: ++runs, note: SECRET }));
    const again = await idem.execute('pay-1', () => ({ runs: ++runs, note: SECRET }));
    expect(again).toMatchObject({ replayed: true, value: first });
    expect(runs).toBe(1);
    const raw = await rawOutcome(store, idem, 'pay-1');
    expect(raw).toMatch(/^e1:k1\./);
    expect(raw).not.toContain('Lovelace');
    // without encryption the same outcome is readable in the store: the check above can fail
    const plain = createIdem({ store: memoryStore() });
    await plain.run('pay-1', () => ({ note: SECRET }));
    expect(await rawOutcome(plain.store, plain, 'pay-1')).toContain('Lovelace');
  });

  it('seals stored errors too', async () => {
    const store = memoryStore();
    const idem = createIdem({ store, encryption: { keys: { k1: K1 } } });
    const fail = () => {
      throw definitive(new Error(SECRET));
    };
    await expect(idem.run('err-1', fail)).rejects.toThrow(SECRET);
    await expect(idem.run('err-1', () => 'never')).rejects.toThrow(SECRET);
    expect(await rawOutcome(store, idem, 'err-1')).not.toContain('Lovelace');
  });

  it('rotates by key id: old records open with the retired key, new ones use current', async () => {
    const store = memoryStore();
    const before = createIdem({ store, encryption: { keys: { k1: K1 } } });
    await before.run('old', () => 'sealed with k1');
    const after = createIdem({ store, encryption: { keys: { k2: K2, k1: K1 }, current: 'k2' } });
    expect(await after.run('old', () => 'ran again')).toBe('sealed with k1');
    await after.run('new', () => 'sealed with k2');
    expect(await rawOutcome(store, after, 'new')).toMatch(/^e1:k2\./);
    // a key dropped too early: typed error, the record stays
    const dropped = createIdem({ store, encryption: { keys: { k2: K2 } } });
    const e = await dropped.run('old', () => 'x').catch((error: unknown) => error);
    expect(e).toBeInstanceOf(OutcomeUnreadableError);
    expect(e).toMatchObject({ code: 'outcome_unreadable', status: 500 });
    expect((e as Error).message).toContain('"k1"');
    expect(await store.get(after.ids('old').recordId)).toBeDefined();
  });

  it('refuses an altered outcome and one copied from another record', async () => {
    const store = memoryStore();
    const idem = createIdem({ store, encryption: { keys: { k1: K1 } } });
    await idem.run('a', () => ({ to: 'alice', amount: 10 }));
    const sealed = await rawOutcome(store, idem, 'a');

    // the sealed outcome of 'a' written onto record 'b' by someone with store access
    const b = idem.ids('b').recordId;
    await store.claim({ id: b, fingerprint: '', leaseMs: 10_000, ttlMs: 60_000, token: 't' });
    await store.complete(b, 't', sealed, 60_000);
    await expect(idem.run('b', () => 'x')).rejects.toThrow(OutcomeUnreadableError);

    // one character of the ciphertext changed
    const c = idem.ids('c').recordId;
    const flipped = sealed.slice(0, -2) + (sealed.at(-2) === 'A' ? 'B' : 'A') + sealed.at(-1);
    await store.claim({ id: c, fingerprint: '', leaseMs: 10_000, ttlMs: 60_000, token: 't' });
    await store.complete(c, 't', flipped, 60_000);
    await expect(idem.run('c', () => 'x')).rejects.toThrow(/does not authenticate/);
  });

  it('reads plaintext records written before encryption, unless told to refuse', async () => {
    const store = memoryStore();
    await createIdem({ store }).run('legacy', () => 'plain');
    expect(await createIdem({ store, encryption: { keys: { k1: K1 } } }).run('legacy', () => 'x')).toBe(
      'plain',
    );
    const strict = createIdem({ store, encryption: { keys: { k1: K1 }, plaintext: 'refuse' } });
    await expect(strict.run('legacy', () => 'x')).rejects.toThrow(OutcomeUnreadableError);
  });

  it('accepts keys as hex and base64, and refuses bad configuration at createIdem', () => {
    const store = memoryStore();
    const ok = (encryption: EncryptionOptions) => createIdem({ store, encryption });
    expect(() => ok({ keys: { hex: K1.toString('hex') } })).not.toThrow();
    expect(() => ok({ keys: { b64: K1.toString('base64') } })).not.toThrow();
    expect(() => ok({ keys: { b64u: K1.toString('base64url') } })).not.toThrow();
    const bad: Array<[unknown, RegExp]> = [
      [{ keys: {} }, /at least one key/],
      [{ keys: { k1: randomBytes(16) } }, /must be 32 bytes/],
      [{ keys: { k1: 'short' } }, /must be 32 bytes/],
      [{ keys: { 'bad id': K1 } }, /key id "bad id"/],
      [{ keys: { k1: K1 }, current: 'k9' }, /"k9", which is not in encryption.keys/],
      [{ keys: { k1: K1 }, plaintext: 'maybe' }, /'read' or 'refuse'/],
      [{ keys: { k1: K1 }, key: K1 }, /encryption.key is not an option/],
      ['secret', /must be an object/],
    ];
    for (const [encryption, message] of bad) {
      expect(() => createIdem({ store, encryption: encryption as EncryptionOptions })).toThrow(
        InvalidOptionError,
      );
      expect(() => createIdem({ store, encryption: encryption as EncryptionOptions })).toThrow(message);
    }
  });
});

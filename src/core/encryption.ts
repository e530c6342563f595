/**
 * Encryption at rest of stored outcomes: AES-256-GCM with a key id in every sealed outcome, so
 * keys rotate without rewriting records (new outcomes use `current`; older ones open with the
 * key they name). The record id is the additional authenticated data, so a sealed outcome
 * copied onto another record does not open. Fingerprints and record ids are hashes already;
 * only outcomes (responses, return values, errors) carry user data.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { InvalidOptionError, OutcomeUnreadableError } from './errors.ts';
import type { ClaimRequest, ClaimResult, Store, StoreRecord } from './store.ts';

/**
 * `createIdem({ encryption })`: the keys outcomes are sealed with.
 *
 * @example
 * const encryption: EncryptionOptions = {
 *   keys: { '2026-12': process.env.IDEM_KEY_2026_12!, '2026-06': process.env.IDEM_KEY_2026_06! },
 *   current: '2026-12',
 * };
 */
export interface EncryptionOptions {
  /**
   * Keys by id (1–32 characters of `A-Z a-z 0-9 _ -`): 32 bytes each, as bytes, 64 hex
   * characters, or base64 / base64url. Keep every key that sealed a record still alive.
   */
  keys: Record<string, Uint8Array | string>;
  /** The id new outcomes are sealed with. Default: the first key. */
  current?: string;
  /**
   * An outcome stored before encryption was turned on: `'read'` (default, so it can be
   * switched on for a live store) or `'refuse'` (`OutcomeUnreadableError`).
   */
  plaintext?: 'read' | 'refuse';
}

/** Turns outcomes into what the store keeps and back. */
export interface OutcomeCodec {
  seal(recordId: string, outcome: string): string;
  open(recordId: string, stored: string): string;
}

const PREFIX = 'e1:';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const IV_BYTES = 12;
const OPTIONS = new Set(['keys', 'current', 'plaintext']);

/** The codec that stores outcomes as they are. */
export const plainCodec: OutcomeCodec = { seal: (_id, s) => s, open: (_id, s) => s };

/**
 * Checks `options` and builds the AES-256-GCM codec (or the plain one when `options` is
 * undefined).
 *
 * @example
 * const codec = outcomeCodec({ keys: { k1: randomBytes(32) } });
 * codec.open('rec', codec.seal('rec', 'j1:{"ok":true}')) // 'j1:{"ok":true}'
 */
export function outcomeCodec(options: EncryptionOptions | undefined): OutcomeCodec {
  if (options === undefined) return plainCodec;
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('encryption must be an object: { keys: { id: key }, current? }');
  }
  for (const name of Object.keys(options)) {
    if (!OPTIONS.has(name))
      throw new InvalidOptionError(`encryption.${name} is not an option (keys, current, plaintext)`);
  }
  const keys = new Map<string, Buffer>();
  for (const [id, key] of Object.entries(options.keys ?? {})) {
    if (!KEY_ID.test(id)) {
      throw new InvalidOptionError(
        `encryption.keys: key id "${id}" must be 1–32 characters of A-Z a-z 0-9 _ -`,
      );
    }
    keys.set(id, keyBytes(id, key));
  }
  const current = options.current ?? keys.keys().next().value;
  if (current === undefined) throw new InvalidOptionError('encryption.keys needs at least one key');
  const sealWith = keys.get(current);
  if (!sealWith)
    throw new InvalidOptionError(`encryption.current is "${current}", which is not in encryption.keys`);
  const plaintext = options.plaintext ?? 'read';
  if (plaintext !== 'read' && plaintext !== 'refuse') {
    throw new InvalidOptionError(`encryption.plaintext must be 'read' or 'refuse'`);
  }

  return {
    seal(recordId, outcome) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', sealWith, iv);
      cipher.setAAD(Buffer.from(recordId));
      const body = Buffer.concat([cipher.update(outcome, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return `${PREFIX}${current}.${iv.toString('base64url')}.${tag.toString('base64url')}.${body.toString('base64url')}`;
    },
    open(recordId, stored) {
      if (!stored.startsWith(PREFIX)) {
        if (plaintext === 'read') return stored;
        throw new OutcomeUnreadableError(
          'the stored outcome is not encrypted and encryption.plaintext is "refuse"',
        );
      }
      const [id = '', iv = '', tag = '', body = ''] = stored.slice(PREFIX.length).split('.');
      const key = keys.get(id);
      if (!key) {
        throw new OutcomeUnreadableError(
          `the stored outcome was sealed with key "${id}", which is not in encryption.keys (keep retired keys until their records expire)`,
        );
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(recordId));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
          'utf8',
        );
      } catch (cause) {
        throw new OutcomeUnreadableError(
          `the stored outcome does not authenticate with key "${id}" (altered, or copied from another record)`,
          { cause },
        );
      }
    },
  };
}

function keyBytes(id: string, key: Uint8Array | string): Buffer {
  let bytes: Buffer | undefined;
  if (key instanceof Uint8Array) bytes = Buffer.from(key);
  else if (typeof key === 'string') {
    bytes = /^[0-9a-fA-F]{64}$/.test(key) ? Buffer.from(key, 'hex') : Buffer.from(key, 'base64url');
  }
  if (bytes?.length !== 32) {
    throw new InvalidOptionError(
      `encryption.keys.${id} must be 32 bytes (bytes, 64 hex characters or base64), e.g. from \`openssl rand -base64 32\``,
    );
  }
  return bytes;
}

/**
 * The store as seen through `codec`: outcomes are sealed on `complete` and opened wherever a
 * record comes back (`claim`, `get`). For code that writes records itself (the run journal's
 * steps), so encryption at rest covers it exactly like the engine's own records.
 *
 * @example
 * const steps = sealedStore(store, outcomeCodec({ keys: { k1 } }));
 */
export function sealedStore(store: Store, codec: OutcomeCodec): Store {
  if (codec === plainCodec) return store;
  const open = (r: StoreRecord): StoreRecord =>
    r.outcome === undefined ? r : { ...r, outcome: codec.open(r.id, r.outcome) };
  return Object.assign(Object.create(store) as Store, {
    async claim(req: ClaimRequest): Promise<ClaimResult> {
      const result = await store.claim(req);
      return result.status === 'existing' ? { ...result, record: open(result.record) } : result;
    },
    complete: (id: string, token: string, outcome: string, ttlMs: number) =>
      store.complete(id, token, codec.seal(id, outcome), ttlMs),
    async get(id: string) {
      const r = await store.get(id);
      return r && open(r);
    },
  });
}

/**
 * Encryption options from an environment variable `id:key[,id:key…]` (keys as base64 or hex;
 * the first one seals), or undefined when it is unset or empty.
 *
 * @example
 * createIdem({ store, encryption: encryptionFromEnv(process.env.IDEM_ENCRYPTION_KEYS) })
 */
export function encryptionFromEnv(value: string | undefined): EncryptionOptions | undefined {
  if (!value?.trim()) return undefined;
  const keys: Record<string, string> = {};
  for (const entry of value.split(',')) {
    const colon = entry.indexOf(':');
    if (colon <= 0)
      throw new InvalidOptionError('IDEM_ENCRYPTION_KEYS must be id:key[,id:key…] (the first key seals)');
    keys[entry.slice(0, colon).trim()] = entry.slice(colon + 1).trim();
  }
  return { keys };
}

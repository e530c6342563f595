/**
 * Encryption at rest, read back from each real store with the store's own tools (the SQLite
 * file's bytes, a Postgres row as text, every Redis value under the prefix): with encryption the
 * secret and the raw key appear nowhere; without it (the control) the secret does, so the check
 * can fail.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem, type EncryptionOptions, type Store } from 'idem';
import { postgresStore } from 'idem/postgres';
import { redisStore } from 'idem/redis';
import { sqliteStore } from 'idem/sqlite';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';

const SECRET = 'diagnosis: Ada Lovelace, policy 7781-XQ';
const RAW_KEY = 'claim-key-visible-only-to-the-app-91f3';
const encryption: EncryptionOptions = { keys: { k1: randomBytes(32) } };
const pgUp = await serviceAvailable('postgres');
const redisUp = await serviceAvailable('redis');

/** Writes one outcome with and one without encryption; answers both raw dumps. */
async function writeBoth(open: (variant: string) => Store, dump: (variant: string) => Promise<string>) {
  const out: Record<string, string> = {};
  for (const variant of ['sealed', 'plain']) {
    const idem = createIdem({ store: open(variant), ...(variant === 'sealed' && { encryption }) });
    await idem.run(RAW_KEY, () => ({ note: SECRET }));
    expect(await idem.run(RAW_KEY, () => ({ note: 'ran twice' }))).toEqual({ note: SECRET });
    await idem.close();
    out[variant] = await dump(variant);
  }
  expect(out.plain).toContain('Ada Lovelace'); // the control
  expect(out.sealed).not.toContain('Ada Lovelace');
  expect(out.sealed).toContain('e1:k1.');
  for (const text of Object.values(out)) expect(text).not.toContain(RAW_KEY); // never the raw key
}

describe('encryption at rest, read from the stores directly', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-enc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sqlite: the database file holds no plaintext outcome', async () => {
    await writeBoth(
      (v) => sqliteStore({ path: join(dir, v, 'idem.db') }),
      async (v) =>
        readdirSync(join(dir, v))
          .map((f) => readFileSync(join(dir, v, f)).toString('latin1'))
          .join('\n'),
    );
  });

  it.skipIf(!pgUp)('postgres: the table rows hold no plaintext outcome', async () => {
    const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 2 });
    const schema = uniqueName('idem_enc');
    try {
      await writeBoth(
        (v) => postgresStore({ pool, schema: `${schema}_${v}`, listen: false }),
        async (v) => {
          const { rows } = await pool.query(`SELECT t::text AS row FROM "${schema}_${v}".idem_records t`);
          return rows.map((r) => r.row).join('\n');
        },
      );
    } finally {
      for (const v of ['sealed', 'plain']) await pool.query(`DROP SCHEMA IF EXISTS "${schema}_${v}" CASCADE`);
      await pool.end();
    }
  });

  it.skipIf(!redisUp)('redis: every value under the prefix holds no plaintext outcome', async () => {
    const client = new Redis(SERVICES.redis);
    const prefix = uniqueName('idem_enc');
    try {
      await writeBoth(
        (v) => redisStore({ client, prefix: `${prefix}_${v}` }),
        async (v) => {
          const keys = await client.keys(`${prefix}_${v}:*`);
          expect(keys.length).toBeGreaterThan(0);
          const values = await Promise.all(
            keys.map(async (k) =>
              (await client.type(k)) === 'hash'
                ? JSON.stringify(await client.hgetall(k))
                : await client.get(k),
            ),
          );
          return [...keys, ...values].join('\n');
        },
      );
    } finally {
      const keys = await client.keys(`${prefix}_*`);
      if (keys.length) await client.del(...keys);
      client.disconnect();
    }
  });
});

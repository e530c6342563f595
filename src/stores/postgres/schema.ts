/**
 * Creates and upgrades the store's schema. The version lives in `<table>_version`; a process
 * that finds the current version does no DDL at all (so a role without CREATE rights works
 * once the schema exists). Upgrades run in one transaction under `pg_advisory_xact_lock`, so
 * any number of processes may start at once: one migrates, the others wait and find it done.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { StoreUnavailableError } from '../../core/errors.ts';
import { type PgClientLike, type PgPoolLike, withClient } from './connection.ts';
import { migrations, statements } from './sql.ts';

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION = 3;

/** Time a migration may take; DDL waits for locks that ordinary statements never need. */
const MIGRATION_TIMEOUT_MS = 60_000;

export async function ensureSchema(pool: PgPoolLike, schema: string, table: string, timeoutMs: number) {
  const sql = statements(schema, table, '');
  const current = await withClient(pool, timeoutMs, 'schema check', (c) => readVersion(c, sql));
  if (current === SCHEMA_VERSION) return;
  if (current > SCHEMA_VERSION) throw tooNew(schema, table, current);

  const timeout = Math.max(timeoutMs, MIGRATION_TIMEOUT_MS);
  await withClient(pool, timeout, 'schema migration', async (c) => {
    await c.query({ text: 'BEGIN' });
    try {
      await c.query({ text: `SET LOCAL statement_timeout = ${timeout}` });
      await c.query({ text: 'SELECT pg_advisory_xact_lock($1::bigint)', values: [lockKey(schema)] });
      const found = await readVersion(c, sql); // another process may have migrated meanwhile
      if (found > SCHEMA_VERSION) throw tooNew(schema, table, found);
      const steps = migrations(schema, table);
      for (let v = found; v < SCHEMA_VERSION; v++) {
        for (const text of steps[v] ?? []) await c.query({ text });
        await c.query({ text: sql.recordVersion, values: [v + 1] });
      }
      await c.query({ text: 'COMMIT' });
    } catch (err) {
      await c.query({ text: 'ROLLBACK' }).catch(() => {});
      throw err;
    }
  });
}

async function readVersion(c: PgClientLike, sql: ReturnType<typeof statements>): Promise<number> {
  const present = (await c.query({ text: sql.versionExists })).rows[0]?.present;
  if (!present) return 0;
  return Number((await c.query({ text: sql.version })).rows[0]?.version ?? 0);
}

/** A stable 64-bit advisory lock key per schema (tables in one schema migrate one by one). */
function lockKey(schema: string): string {
  const hash = createHash('sha256').update(`idem:${schema}`).digest();
  return hash.readBigInt64BE(0).toString();
}

function tooNew(schema: string, table: string, version: number) {
  return new StoreUnavailableError(
    `postgres store: "${schema}"."${table}" is at schema version ${version}, newer than this idem ` +
      `(version ${SCHEMA_VERSION}); upgrade idem`,
  );
}

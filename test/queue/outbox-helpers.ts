/**
 * What the outbox tests share: a fresh Postgres schema per suite, a recording publisher, and
 * polling until a condition holds.
 */
import pg from 'pg';
import type { NewOutboxEvent, OutboxEvent, Publisher, PublishResult } from '../../src/queue/outbox/index.ts';
import { SERVICES, uniqueName } from '../helpers/services.ts';

export async function freshSchema(): Promise<{ pool: pg.Pool; schema: string; drop: () => Promise<void> }> {
  const schema = uniqueName('idem_ob');
  const admin = new pg.Pool({ connectionString: SERVICES.postgres, max: 1 });
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 6 });
  pool.on('error', () => {});
  return {
    pool,
    schema,
    async drop() {
      await pool.end();
      const a = new pg.Pool({ connectionString: SERVICES.postgres, max: 1 });
      await a.query(`DROP SCHEMA ${schema} CASCADE`);
      await a.end();
    },
  };
}

/** Adds events in one transaction of their own; answers their ids. */
export async function addAll(
  pool: pg.Pool,
  outbox: { add(tx: pg.PoolClient, e: NewOutboxEvent): Promise<string> },
  events: NewOutboxEvent[],
): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const ids: string[] = [];
    for (const e of events) ids.push(await outbox.add(client, e));
    await client.query('COMMIT');
    return ids;
  } finally {
    client.release();
  }
}

/** A publisher that records what it was handed and fails what `fail` says. */
export function recordingPublisher(
  fail: (e: OutboxEvent) => false | string | { error: string; park: boolean } = () => false,
) {
  const seen: Array<{ id: string; key: string | null; payload: unknown; at: number; ok: boolean }> = [];
  const publisher: Publisher = {
    name: 'recording',
    async publish(events) {
      return events.map((e): PublishResult => {
        const f = fail(e);
        seen.push({ id: e.id, key: e.key, payload: e.payload, at: Date.now(), ok: f === false });
        if (f === false) return { ok: true };
        return typeof f === 'string' ? { ok: false, error: f } : { ok: false, ...f };
      });
    },
  };
  return { publisher, seen };
}

export async function until<T>(what: string, fn: () => T | Promise<T>, ms = 20_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

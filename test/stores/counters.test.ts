/**
 * The `counters` capability on every built-in store, against the real backends (memory, SQLite,
 * Postgres, Redis, DynamoDB on dynalite): totals by name from a minute on, replay counts per
 * record, retention, one batch merging duplicates, concurrent writers summing exactly, malformed
 * batches refused, and counter rows never listed as records.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUCKET_RETENTION_MS,
  type CounterBatch,
  minuteOf,
  RECORD_RETENTION_MS,
} from '../../src/core/counters.ts';
import { InvalidOptionError } from '../../src/core/errors.ts';
import type { Store } from '../../src/core/store.ts';
import { dynamodbStore } from '../../src/stores/dynamodb/index.ts';
import { memoryStore } from '../../src/stores/memory/index.ts';
import { postgresStore } from '../../src/stores/postgres/index.ts';
import { redisStore } from '../../src/stores/redis/index.ts';
import { sqliteStore } from '../../src/stores/sqlite/index.ts';
import { createTestTable, type Dynalite, dynamoClient, startDynalite } from '../helpers/dynalite.ts';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from './fixtures/redis-suite.ts';

const pgUp = await serviceAvailable('postgres');
const redisUp = await serviceAvailable('redis');
const HOUR = 3_600_000;
const DAY = 86_400_000;

interface Backend {
  /** A fresh store on the same data (a second writer). */
  open(): Store | Promise<Store>;
  /** Seconds until the replay row of `id` expires, as the backend stores it. */
  replayTtlMs?(id: string): Promise<number>;
  cleanup(): Promise<void>;
}

function countersSuite(name: string, setup: () => Promise<Backend>, skip = false) {
  describe.skipIf(skip)(`counters: ${name}`, () => {
    let backend: Backend;
    let store: Store;
    const opened: Store[] = [];
    const open = async () => {
      const s = await backend.open();
      opened.push(s);
      return s;
    };
    beforeAll(async () => {
      backend = await setup();
      store = await open();
    });
    afterAll(async () => {
      for (const s of opened) await s.close?.();
      await backend.cleanup();
    });
    const now = () => Date.now();

    it('adds buckets and reads totals by name, from a minute on', async () => {
      const t = minuteOf(now());
      // crosses hour boundaries: Redis and DynamoDB keep one item per hour with minute fields
      await store.counters!.add({
        buckets: [
          { minute: t - 3 * HOUR, name: 'replays', value: 100 },
          { minute: t - 61 * 60_000, name: 'replays', value: 10 },
          { minute: t - 59 * 60_000, name: 'replays', value: 5 },
          { minute: t - 60_000, name: 'conflicts', value: 2 },
          { minute: t, name: 'replays', value: 1 },
          { minute: t, name: 'llm_cost_saved_microusd', value: 1234 },
        ],
        records: [],
      });
      const all = await store.counters!.read();
      expect(all).toMatchObject({ replays: 116, conflicts: 2, llm_cost_saved_microusd: 1234, takeovers: 0 });
      expect(Object.keys(all).sort()).toContain('llm_tokens_saved_cached');
      expect((await store.counters!.read({ since: t - HOUR })).replays).toBe(6);
      expect((await store.counters!.read({ since: t - 61 * 60_000 })).replays).toBe(16);
      // since is rounded down to its minute: that minute counts
      expect((await store.counters!.read({ since: t - 61 * 60_000 + 59_000 })).replays).toBe(16);
      expect((await store.counters!.read({ since: t - 60_000 })).conflicts).toBe(2);
      expect(await store.counters!.read({ since: t + 60_000 })).toMatchObject({ replays: 0, conflicts: 0 });
    });

    it('merges duplicates in one batch, ignores buckets past the retention, and adds across calls', async () => {
      const t = minuteOf(now());
      const before = (await store.counters!.read({ since: t })).waits;
      const batch: CounterBatch = {
        buckets: [
          { minute: t, name: 'waits', value: 2 },
          { minute: t, name: 'waits', value: 3 },
          { minute: t - BUCKET_RETENTION_MS - HOUR, name: 'waits', value: 1000 },
        ],
        records: [],
      };
      await store.counters!.add(batch);
      await store.counters!.add({ buckets: [{ minute: t, name: 'waits', value: 1 }], records: [] });
      expect((await store.counters!.read({ since: t })).waits).toBe(before + 6);
      expect((await store.counters!.read({ since: 0 })).waits).toBe(before + 6);
      await store.counters!.add({ buckets: [], records: [] });
    });

    it('counts replays per record: added up, latest replay kept, unknown ids undefined', async () => {
      const id = `rec-${Math.random().toString(36).slice(2)}`;
      expect(await store.counters!.record(id)).toBeUndefined();
      const t = now();
      await store.counters!.add({ buckets: [], records: [{ id, replays: 2, lastReplayAt: t - 5000 }] });
      await store.counters!.add({
        buckets: [],
        records: [
          { id, replays: 1, lastReplayAt: t },
          { id, replays: 4, lastReplayAt: t - 1000 },
        ],
      });
      expect(await store.counters!.record(id)).toEqual({ replays: 7, lastReplayAt: t });
    });

    it('forget drops one record’s replay count (idem keys delete), leaves the others, and is quiet when nothing is kept', async () => {
      const [id, other] = [1, 2].map((n) => `forget-${n}-${Math.random().toString(36).slice(2)}`) as [
        string,
        string,
      ];
      const t = now();
      await store.counters!.add({
        buckets: [],
        records: [
          { id, replays: 3, lastReplayAt: t },
          { id: other, replays: 2, lastReplayAt: t },
        ],
      });
      await store.counters!.forget!(id);
      expect(await store.counters!.record(id)).toBeUndefined();
      expect(await store.counters!.record(other)).toEqual({ replays: 2, lastReplayAt: t });
      await store.counters!.forget!(id);
      await store.counters!.forget!('never-counted');
      // a record written under the key again starts from 0
      await store.counters!.add({ buckets: [], records: [{ id, replays: 1, lastReplayAt: t + 1 }] });
      expect(await store.counters!.record(id)).toEqual({ replays: 1, lastReplayAt: t + 1 });
    });

    it('concurrent writers (two store instances) sum exactly', async () => {
      const other = await open();
      const t = minuteOf(now());
      const id = `conc-${Math.random().toString(36).slice(2)}`;
      const before = (await store.counters!.read({ since: t })).releases;
      const one: CounterBatch = {
        buckets: [
          { minute: t, name: 'releases', value: 1 },
          { minute: t, name: 'lease_lost', value: 1 },
        ],
        records: [{ id, replays: 1, lastReplayAt: t }],
      };
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? other : store).counters!.add(one)));
      expect((await store.counters!.read({ since: t })).releases).toBe(before + 10);
      expect((await other.counters!.record(id))?.replays).toBe(10);
    });

    it('keeps a replay count as long as its record, and at least 7 days', async () => {
      if (!backend.replayTtlMs) return;
      const id = `ttl-${Math.random().toString(36).slice(2)}`;
      await store.counters!.add({ buckets: [], records: [{ id, replays: 1, lastReplayAt: now() }] });
      const least = await backend.replayTtlMs(id);
      expect(least).toBeGreaterThan(RECORD_RETENTION_MS - 60_000);
      expect(least).toBeLessThanOrEqual(RECORD_RETENTION_MS);
      if (store.name === 'dynamodb') return; // DynamoDB cannot read the record in the same write
      const kept = `kept-${Math.random().toString(36).slice(2)}`;
      const claim = await store.claim({
        id: kept,
        fingerprint: '',
        leaseMs: 5000,
        ttlMs: 30 * DAY,
        token: 'tk',
      });
      expect(claim.status).toBe('acquired');
      expect(await store.complete(kept, 'tk', '"done"', 30 * DAY)).toBe(true);
      await store.counters!.add({ buckets: [], records: [{ id: kept, replays: 1, lastReplayAt: now() }] });
      expect(await backend.replayTtlMs(kept)).toBeGreaterThan(29 * DAY);
    });

    it('refuses a malformed batch with InvalidOptionError and writes nothing', async () => {
      const t = minuteOf(now());
      const before = (await store.counters!.read({ since: t })).mismatches;
      const bad: unknown[] = [
        { buckets: [{ minute: t, name: 'nope', value: 1 }], records: [] },
        { buckets: [{ minute: t + 1, name: 'mismatches', value: 1 }], records: [] },
        { buckets: [{ minute: t, name: 'mismatches', value: -1 }], records: [] },
        { buckets: [{ minute: t, name: 'mismatches', value: 1.5 }], records: [] },
        {
          buckets: [{ minute: t, name: 'mismatches', value: 1 }],
          records: [{ id: '', replays: 1, lastReplayAt: t }],
        },
        { buckets: [], records: [{ id: 'x', replays: 0, lastReplayAt: t }] },
        { buckets: 'x', records: [] },
        null,
      ];
      for (const batch of bad) {
        await expect(store.counters!.add(batch as CounterBatch)).rejects.toThrow(InvalidOptionError);
      }
      await expect(store.counters!.read({ since: Number.NaN })).rejects.toThrow(InvalidOptionError);
      expect((await store.counters!.read({ since: t })).mismatches).toBe(before);
    });

    it('never lists counter rows as records', async () => {
      const id = `list-${Math.random().toString(36).slice(2)}`;
      await store.counters!.add({
        buckets: [{ minute: minuteOf(now()), name: 'replays', value: 1 }],
        records: [{ id, replays: 1, lastReplayAt: now() }],
      });
      let cursor: string | undefined;
      const ids: string[] = [];
      do {
        const page = await store.inspect!.list({ cursor, limit: 1000 });
        ids.push(...page.records.map((r) => r.id));
        cursor = page.cursor;
      } while (cursor);
      expect(ids.filter((x) => x.includes(id) || x.includes('counters') || x.includes('replays'))).toEqual(
        [],
      );
    });
  });
}

countersSuite('memory', async () => {
  const store = memoryStore(); // one process's map: the second writer is the same store
  return { open: () => store, cleanup: async () => {} };
});

countersSuite('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-counters-'));
  const path = join(dir, 'idem.db');
  return {
    open: () => sqliteStore({ path }),
    async replayTtlMs(id) {
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(path);
      const row = db.prepare('SELECT expires_at FROM idem_records_replays WHERE id = ?').get(id) as {
        expires_at: number;
      };
      db.close();
      return row.expires_at - Date.now();
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

countersSuite(
  'postgres',
  async () => {
    const schema = uniqueName('idem_counters');
    const admin = new pg.Pool({ connectionString: SERVICES.postgres, max: 2 });
    return {
      open: () => postgresStore({ connectionString: SERVICES.postgres, schema, max: 3 }),
      async replayTtlMs(id) {
        const r = await admin.query(`SELECT expires_at FROM "${schema}".idem_records_replays WHERE id = $1`, [
          id,
        ]);
        return Number(r.rows[0].expires_at) - Date.now();
      },
      async cleanup() {
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await admin.end();
      },
    };
  },
  !pgUp,
);

countersSuite(
  'redis',
  async () => {
    const prefix = uniqueName('idem_counters');
    const admin = new Redis(SERVICES.redis);
    return {
      open: () => redisStore({ url: SERVICES.redis, prefix }),
      replayTtlMs: (id) => admin.pttl(`${prefix}:replays:{${id}}`),
      async cleanup() {
        await deletePrefix(admin, prefix);
        admin.disconnect();
      },
    };
  },
  !redisUp,
);

countersSuite('dynamodb (dynalite)', async () => {
  const dynalite: Dynalite = await startDynalite();
  const table = uniqueName('idem_counters').replaceAll('_', '-');
  await createTestTable(dynalite.endpoint, table);
  const clients: ReturnType<typeof dynamoClient>[] = [];
  const client = () => {
    const c = dynamoClient(dynalite.endpoint);
    clients.push(c);
    return c;
  };
  return {
    open: () => dynamodbStore({ client: client(), table, requestTimeout: 30_000 }),
    async replayTtlMs(id) {
      const store = dynamodbStore({ client: client(), table });
      const { GetItemCommand } = await import('@aws-sdk/client-dynamodb');
      const got = await clients[0]!.send(
        new GetItemCommand({ TableName: table, Key: { id: { S: `idem:replays:${id}` } } }),
      );
      await store.close?.();
      return Number(got.Item?.e?.N) - Date.now();
    },
    async cleanup() {
      for (const c of clients) c.destroy();
      await dynalite.stop();
    },
  };
});

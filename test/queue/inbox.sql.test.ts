/**
 * The SQL fast path (`idem/inbox-sql`) on a real Postgres and on node:sqlite: the processed
 * mark commits with the handler's writes (a failed or killed handler leaves neither), failures
 * counted and parked, concurrent duplicates wait for the first and see its mark.
 */
import { DatabaseSync } from 'node:sqlite';
import { InvalidKeyError, InvalidOptionError } from 'idem';
import { consumeOnceTx } from 'idem/inbox-sql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { sleep } from './inbox-fixtures.ts';

const pgUp = await serviceAvailable('postgres');

describe('consumeOnceTx on node:sqlite', () => {
  const db = new DatabaseSync(':memory:');
  db.exec('CREATE TABLE effects (id TEXT, n INTEGER)');
  const count = (id: string) =>
    (db.prepare('SELECT count(*) AS c FROM effects WHERE id = ?').get(id) as { c: number }).c;
  const write = (id: string) => (tx: DatabaseSync) => {
    tx.prepare('INSERT INTO effects (id, n) VALUES (?, 1)').run(id);
    return { wrote: id };
  };

  it('processes once; a duplicate gets the recorded value; a throw rolls the effect back', async () => {
    const ref = { consumer: 'c', messageId: 's1' };
    expect(await consumeOnceTx(db, ref, write('s1'))).toMatchObject({
      status: 'processed',
      attempt: 1,
      value: { wrote: 's1' },
    });
    expect(await consumeOnceTx(db, ref, write('s1'))).toMatchObject({
      status: 'duplicate',
      next: 'ack',
      value: { wrote: 's1' },
    });
    expect(count('s1')).toBe(1);
    const failing = (tx: DatabaseSync) => {
      write('s2')(tx);
      throw new Error('after the write');
    };
    const opts = { maxAttempts: 2, retryDelay: () => 5 };
    expect(await consumeOnceTx(db, { consumer: 'c', messageId: 's2' }, failing, opts)).toMatchObject({
      status: 'retry',
      attempts: 1,
      retryAfterMs: 5,
    });
    expect(count('s2')).toBe(0);
    expect(await consumeOnceTx(db, { consumer: 'c', messageId: 's2' }, failing, opts)).toMatchObject({
      status: 'parked',
      next: 'dead_letter',
      attempts: 2,
      error: { message: 'after the write' },
    });
    expect(await consumeOnceTx(db, { consumer: 'c', messageId: 's2' }, write('s2'), opts)).toMatchObject({
      status: 'parked',
      duplicate: true,
    });
    expect(count('s2')).toBe(0);
  });

  it('fan-out consumers are independent; async handlers on one connection are serialized', async () => {
    const results = await Promise.all(
      ['a', 'b', 'a', 'b'].map((consumer) =>
        consumeOnceTx(db, { consumer, messageId: 's3' }, async (tx: DatabaseSync) => {
          await sleep(5);
          return write(`s3-${consumer}`)(tx);
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(['processed', 'processed', 'duplicate', 'duplicate']);
    expect([count('s3-a'), count('s3-b')]).toEqual([1, 1]);
  });

  it('refuses bad input with typed errors', async () => {
    await expect(consumeOnceTx(db, { consumer: '', messageId: 'x' }, () => 1)).rejects.toThrow(
      InvalidKeyError,
    );
    await expect(
      consumeOnceTx(db, { consumer: 'c', messageId: 'x' }, () => 1, { table: 'x;drop' }),
    ).rejects.toThrow(InvalidOptionError);
    await expect(
      consumeOnceTx(db, { consumer: 'c', messageId: 'x' }, () => 1, { tabel: 'x' } as never),
    ).rejects.toThrow(/unknown option tabel/);
    await expect(consumeOnceTx({} as never, { consumer: 'c', messageId: 'x' }, () => 1)).rejects.toThrow(
      InvalidOptionError,
    );
  });
});

describe.skipIf(!pgUp)('consumeOnceTx on Postgres', () => {
  const schema = uniqueName('idem_inbox_sql');
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 8 });
  pool.on('error', () => {});
  const table = `${schema}.idem_inbox`;
  const count = async (id: string) =>
    Number((await pool.query(`SELECT count(*) AS c FROM ${schema}.effects WHERE id = $1`, [id])).rows[0].c);
  const write = (id: string) => async (tx: pg.PoolClient) => {
    await tx.query(`INSERT INTO ${schema}.effects (id) VALUES ($1)`, [id]);
    return { wrote: id };
  };
  beforeAll(async () => {
    await pool.query(`CREATE SCHEMA ${schema}`);
    await pool.query(`CREATE TABLE ${schema}.effects (id text)`);
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => {});
    await pool.end();
  });

  it('processes once; the mark and the effect commit together; failures roll back and park', async () => {
    const ref = { consumer: 'c', messageId: 'p1' };
    expect(await consumeOnceTx(pool, ref, write('p1'), { table })).toMatchObject({
      status: 'processed',
      value: { wrote: 'p1' },
    });
    expect(await consumeOnceTx(pool, ref, write('p1'), { table })).toMatchObject({
      status: 'duplicate',
      value: { wrote: 'p1' },
    });
    expect(await count('p1')).toBe(1);
    const failing = async (tx: pg.PoolClient) => {
      await write('p2')(tx);
      throw new Error('constraint');
    };
    const opts = { table, maxAttempts: 2, retryDelay: () => 1 };
    expect(await consumeOnceTx(pool, { consumer: 'c', messageId: 'p2' }, failing, opts)).toMatchObject({
      status: 'retry',
      attempts: 1,
    });
    expect(await consumeOnceTx(pool, { consumer: 'c', messageId: 'p2' }, failing, opts)).toMatchObject({
      status: 'parked',
      attempts: 2,
    });
    expect(await count('p2')).toBe(0);
  });

  it('odd ids survive the one-round-trip path (escaped literals) and the parameterized path alike', async () => {
    const odd = "it's \\ a 'quoted' \"id\" ; DROP TABLE x; --";
    const client = new pg.Client({ connectionString: SERVICES.postgres });
    await client.connect();
    try {
      // a client without escapeLiteral takes the parameterized path
      const plain = { query: (text: string, values?: unknown[]) => client.query(text, values) };
      for (const [db, consumer] of [
        [pool, 'lit'],
        [plain, 'param'],
      ] as const) {
        const first = await consumeOnceTx(
          db,
          { consumer, messageId: odd },
          async (tx) => {
            await tx.query(`INSERT INTO ${schema}.effects (id) VALUES ($1)`, [`${consumer}:${odd}`]);
            return { odd };
          },
          { table },
        );
        expect(first).toMatchObject({ status: 'processed', value: { odd } });
        expect(await consumeOnceTx(db, { consumer, messageId: odd }, () => 'again', { table })).toMatchObject(
          {
            status: 'duplicate',
            value: { odd },
          },
        );
        expect(await count(`${consumer}:${odd}`)).toBe(1);
      }
    } finally {
      await client.end();
    }
  });

  it('concurrent duplicates: one runs, the others wait on the row and answer duplicate', async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        consumeOnceTx(
          pool,
          { consumer: 'c', messageId: 'p3' },
          async (tx: pg.PoolClient) => {
            const r = await write('p3')(tx);
            await sleep(50);
            return r;
          },
          { table },
        ),
      ),
    );
    expect(results.filter((r) => r.status === 'processed')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'duplicate')).toHaveLength(4);
    expect(await count('p3')).toBe(1);
  });

  it('calls sharing one Client are serialized: no interleaved transactions', async () => {
    const client = new pg.Client({ connectionString: SERVICES.postgres });
    await client.connect();
    try {
      const results = await Promise.all(
        ['s1', 's2', 's1', 's3'].map((id) =>
          consumeOnceTx(
            client,
            { consumer: 'shared-client', messageId: id },
            async (tx) => {
              await tx.query(`INSERT INTO ${schema}.effects (id) VALUES ($1)`, [`sc:${id}`]);
              await sleep(10);
              const { rows } = await tx.query('SELECT txid_current_if_assigned() AS x');
              return rows[0]?.x !== null; // still inside its own transaction
            },
            { table },
          ),
        ),
      );
      expect(results.map((r) => r.status)).toEqual(['processed', 'processed', 'duplicate', 'processed']);
      expect([await count('sc:s1'), await count('sc:s2'), await count('sc:s3')]).toEqual([1, 1, 1]);
    } finally {
      await client.end();
    }
  });

  it('a worker killed mid-transaction leaves neither effect nor mark; the redelivery processes it once', async () => {
    const client = new pg.Client({ connectionString: SERVICES.postgres });
    client.on('error', () => {});
    await client.connect();
    const died = consumeOnceTx(
      client,
      { consumer: 'c', messageId: 'p4' },
      async (tx: pg.Client) => {
        await write('p4')(tx as unknown as pg.PoolClient);
        // the connection dies before COMMIT (as when the process is SIGKILLed): the server rolls back
        (tx as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        return 'never';
      },
      { table },
    );
    await expect(died).rejects.toThrow();
    expect(
      await consumeOnceTx(pool, { consumer: 'c', messageId: 'p4' }, write('p4'), { table }),
    ).toMatchObject({
      status: 'processed',
      attempt: 1,
    });
    expect(await count('p4')).toBe(1);
  });
});

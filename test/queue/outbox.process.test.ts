/**
 * The relay as an OS process: SIGKILLed between publish and mark (the events are published
 * again with the same ids after the lease, and the broker or the consumer's inbox keeps one
 * effect each), and SIGTERM (the in-flight batch is published and marked, nothing new is
 * claimed, the process exits 0).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { amqpPublisher, createRelay, natsPublisher, postgresOutbox } from '../../src/queue/outbox/index.ts';
import { SERVICES, serviceAvailable } from '../helpers/services.ts';
import { natsStream, rabbitQueue } from './outbox-brokers.ts';
import { addAll, freshSchema, until } from './outbox-helpers.ts';

const up =
  (await serviceAvailable('postgres')) &&
  (await serviceAvailable('nats')) &&
  (await serviceAvailable('amqp'));
const CHILD = new URL('./outbox-relay-child.ts', import.meta.url).pathname;

function startRelay(cfg: Record<string, unknown>) {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--conditions=idem-source', CHILD, JSON.stringify(cfg)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  const exit = new Promise<number | string>((r) =>
    child.once('exit', (code, signal) => r(code ?? signal ?? -1)),
  );
  return {
    child,
    lines,
    exit,
    waitFor: (re: RegExp) => until(`child line ${re}`, () => lines.find((l) => re.test(l)), 20_000),
  };
}

describe.skipIf(!up)('outbox relay processes', () => {
  let env: Awaited<ReturnType<typeof freshSchema>>;
  beforeAll(async () => {
    env = await freshSchema();
  });
  afterAll(async () => {
    await env?.drop();
  });

  it('NATS: relay SIGKILLed after publish, before mark: republished after the lease with the same Nats-Msg-Id, stored once', async () => {
    const nats = await natsStream();
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: 'kill_nats' });
    try {
      await outbox.migrate();
      const ids = await addAll(
        env.pool,
        outbox,
        Array.from({ length: 30 }, (_, i) => ({ topic: nats.subject, payload: { i } })),
      );
      const p = startRelay({
        pg: SERVICES.postgres,
        schema: env.schema,
        table: 'kill_nats',
        broker: 'nats',
        url: SERVICES.nats,
        mode: 'hang-after-publish',
        lease: 1000,
      });
      await p.waitFor(/^published 30$/);
      p.child.kill('SIGKILL');
      expect(await p.exit).toBe('SIGKILL');
      expect(await outbox.stats()).toMatchObject({ pending: 30, published: 0 }); // published, not marked
      const published: string[] = [];
      const inner = natsPublisher({ js: nats.js });
      const relay = createRelay({
        outbox,
        publisher: {
          name: 'spy',
          publish: (events, signal) => {
            published.push(...events.map((e) => e.id));
            return inner.publish(events, signal);
          },
        },
        listen: false,
        poll: 50,
      });
      await relay.start();
      await until('republished and marked', async () => (await outbox.stats()).published === 30, 15_000);
      await relay.stop();
      expect([...published].sort()).toEqual([...ids].sort()); // every event went out a second time
      const stored = await nats.messages();
      expect(stored.map((m) => m.id)).toEqual(ids); // …and the stream kept one copy of each
    } finally {
      await nats.close();
    }
  }, 40_000);

  it('RabbitMQ: the same crash delivers twice; the consumer, keyed by messageId, applies each effect once', async () => {
    const rabbit = await rabbitQueue();
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: 'kill_amqp' });
    try {
      await outbox.migrate();
      await env.pool.query(
        `CREATE TABLE ${env.schema}.ledger (message_id text PRIMARY KEY, amount int NOT NULL)`,
      );
      const ids = await addAll(
        env.pool,
        outbox,
        Array.from({ length: 20 }, (_, i) => ({ topic: rabbit.queue, payload: { amount: i } })),
      );
      const p = startRelay({
        pg: SERVICES.postgres,
        schema: env.schema,
        table: 'kill_amqp',
        broker: 'amqp',
        url: SERVICES.amqp,
        mode: 'hang-after-publish',
        lease: 1000,
      });
      await p.waitFor(/^published 20$/);
      p.child.kill('SIGKILL');
      await p.exit;
      const { channel } = await rabbit.confirmChannel();
      const relay = createRelay({ outbox, publisher: amqpPublisher({ channel }), listen: false, poll: 50 });
      await relay.start();
      await until('republished', async () => (await outbox.stats()).published === 20, 15_000);
      await relay.stop();
      await new Promise((r) => setTimeout(r, 200));
      const delivered = await rabbit.drain();
      expect(delivered).toHaveLength(40); // RabbitMQ does not dedupe: every event twice
      for (const id of delivered) {
        await env.pool.query(
          `INSERT INTO ${env.schema}.ledger (message_id, amount) VALUES ($1, 1) ON CONFLICT (message_id) DO NOTHING`,
          [id],
        );
      }
      const { rows } = await env.pool.query(
        `SELECT count(*)::int AS n, sum(amount)::int AS total FROM ${env.schema}.ledger`,
      );
      expect(rows[0]).toEqual({ n: 20, total: 20 });
      expect(new Set(delivered)).toEqual(new Set(ids));
    } finally {
      await rabbit.close();
    }
  }, 40_000);

  it('two relay processes racing on one outbox: each event published once, none lost, per-key order kept in the stream', async () => {
    const nats = await natsStream();
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: 'race' });
    try {
      await outbox.migrate();
      const cfg = {
        pg: SERVICES.postgres,
        schema: env.schema,
        table: 'race',
        broker: 'nats',
        url: SERVICES.nats,
        mode: 'count',
        lease: 10_000,
      };
      const relays = [startRelay(cfg), startRelay(cfg)];
      await Promise.all(relays.map((r) => r.waitFor(/^ready$/)));
      const N = 400;
      for (let i = 0; i < N; i += 50) {
        await addAll(
          env.pool,
          outbox,
          Array.from({ length: 50 }, (_, j) => ({
            topic: nats.subject,
            key: `k${(i + j) % 16}`,
            payload: { k: (i + j) % 16, i: i + j },
          })),
        );
      }
      await until('all published', async () => (await outbox.stats()).published === N, 30_000);
      for (const r of relays) r.child.kill('SIGTERM');
      expect(await Promise.all(relays.map((r) => r.exit))).toEqual([0, 0]);
      const counts = relays.map((r) =>
        r.lines.filter((l) => l.startsWith('ok ')).reduce((sum, l) => sum + Number(l.slice(3)), 0),
      );
      expect(counts[0]! + counts[1]!).toBe(N); // no event published twice, none skipped
      expect(Math.min(...counts)).toBeGreaterThan(0); // both relays did real work
      const stored = (await nats.messages()).map((m) => m.payload as { k: number; i: number });
      expect(stored).toHaveLength(N);
      for (let k = 0; k < 16; k++) {
        const order = stored.filter((p) => p.k === k).map((p) => p.i);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
    } finally {
      await nats.close();
    }
  }, 60_000);

  it('SIGTERM: the in-flight batch is published and marked, nothing new is claimed, the process exits 0', async () => {
    const nats = await natsStream();
    const outbox = postgresOutbox({ pool: env.pool, schema: env.schema, table: 'term' });
    try {
      await outbox.migrate();
      await addAll(
        env.pool,
        outbox,
        Array.from({ length: 25 }, (_, i) => ({ topic: nats.subject, payload: { i } })),
      );
      const p = startRelay({
        pg: SERVICES.postgres,
        schema: env.schema,
        table: 'term',
        broker: 'nats',
        url: SERVICES.nats,
        mode: 'slow',
        delayMs: 1500,
        lease: 10_000,
      });
      await p.waitFor(/^batch 25$/);
      p.child.kill('SIGTERM');
      await addAll(
        env.pool,
        outbox,
        Array.from({ length: 5 }, (_, i) => ({ topic: nats.subject, payload: { late: i } })),
      );
      expect(await p.exit).toBe(0);
      expect(p.lines.filter((l) => l.startsWith('batch'))).toEqual(['batch 25']);
      expect(p.lines.at(-1)).toBe('stopped');
      expect(await outbox.stats()).toEqual({ pending: 5, published: 25, parked: 0 });
      expect(await nats.count()).toBe(25);
    } finally {
      await nats.close();
    }
  }, 40_000);
});

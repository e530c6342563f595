/**
 * Issue 11: the outbox relay. Throughput from a Postgres outbox to NATS JetStream through one
 * relay (batches published at once, acks awaited together) next to a no-op publisher (the
 * relay's own database cost); end-to-end latency, commit → message on the NATS subject, with
 * the relay woken by LISTEN/NOTIFY vs polling only.
 *
 * ```
 * throughput  N events committed first (100 per transaction), then one relay drains them: events/s
 * latency     one event per transaction, paced; a core NATS subscriber stamps arrival: p50/p99
 * ```
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, reachable, SERVICES } from '../lib/env.ts';
import { quantile } from '../lib/measure.ts';
import { emptySection, fmtOps, type SectionResult } from '../lib/report.ts';

const BATCH = 500;
const POLL_MS = 100;

export async function outboxSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection(
    'outbox',
    'Outbox relay: throughput to NATS JetStream, latency with NOTIFY vs polling (issue 11)',
  );
  for (const service of ['postgres', 'nats'] as const) {
    if (!(await reachable(SERVICES[service]))) {
      s.skipped = `${service} is not reachable at ${SERVICES[service]}`;
      return s;
    }
  }
  const { createRelay, natsPublisher, postgresOutbox } = await import('idem/outbox');
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');

  const schema = `idem_bench_ob_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Pool({ connectionString: SERVICES.postgres, max: 1 });
  await admin.query(`CREATE SCHEMA ${schema}`);
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 8 });
  const nc = await connect({ servers: SERVICES.nats.replace('nats://', '') });
  const jsm = await jetstreamManager(nc);
  const stream = schema.toUpperCase();
  const subject = `${schema}.events`;
  await jsm.streams.add({ name: stream, subjects: [`${schema}.>`] });
  const js = jetstream(nc);
  let table = 0;
  const freshOutbox = async () => {
    const outbox = postgresOutbox({ pool, schema, table: `t${table++}` });
    await outbox.migrate();
    return outbox;
  };
  const addMany = async (outbox: Awaited<ReturnType<typeof freshOutbox>>, n: number) => {
    for (let done = 0; done < n; done += 100) {
      const tx = await pool.connect();
      await tx.query('BEGIN');
      for (let i = done; i < Math.min(n, done + 100); i++)
        await outbox.add(tx, { topic: subject, payload: { i } });
      await tx.query('COMMIT');
      tx.release();
    }
  };
  try {
    // --- throughput: a backlog drained by one relay
    const events = cfg.quick ? 2000 : 20_000;
    const rows: string[][] = [];
    const rates: Record<string, number> = {};
    for (const [name, publisher] of [
      ['NATS JetStream (natsPublisher)', natsPublisher({ js })],
      [
        'no-op publisher (database cost only)',
        { name: 'noop', publish: async (e: readonly unknown[]) => e.map(() => ({ ok: true as const })) },
      ],
    ] as const) {
      const outbox = await freshOutbox();
      await addMany(outbox, events);
      const relay = createRelay({ outbox, publisher, batchSize: BATCH, listen: false, poll: 5 });
      const t0 = performance.now();
      let published = 0;
      while (published < events) published += (await relay.runOnce()).published;
      const secs = (performance.now() - t0) / 1000;
      rates[name] = events / secs;
      rows.push([name, String(BATCH), String(events), fmtOps(events / secs)]);
    }
    s.tables.push({
      title: 'Relay throughput: one relay draining a committed backlog',
      columns: ['publisher', 'batch', 'events', 'events/s'],
      rows,
    });

    // --- latency: commit → message seen on the subject
    const samples = cfg.quick ? 100 : 400;
    const latency: Record<string, { p50: number; p99: number }> = {};
    const lrows: string[][] = [];
    for (const [name, listen] of [
      ['LISTEN/NOTIFY (poll 1 s as fallback)', true],
      [`polling every ${POLL_MS} ms`, false],
    ] as const) {
      const outbox = await freshOutbox();
      const relay = createRelay({
        outbox,
        publisher: natsPublisher({ js }),
        listen,
        poll: listen ? 1000 : POLL_MS,
      });
      const seen = new Map<number, number>();
      const sub = nc.subscribe(subject, {
        callback: (_err, msg) => {
          const { i } = msg.json<{ i: number; run: string }>();
          seen.set(i, performance.now());
        },
      });
      await relay.start();
      await new Promise((r) => setTimeout(r, 300));
      const committed = new Map<number, number>();
      for (let i = 0; i < samples; i++) {
        const tx = await pool.connect();
        await tx.query('BEGIN');
        await outbox.add(tx, { topic: subject, payload: { i } });
        const t = performance.now();
        await tx.query('COMMIT');
        committed.set(i, t);
        tx.release();
        await new Promise((r) => setTimeout(r, 7));
      }
      const until = performance.now() + 10_000;
      while (seen.size < samples && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
      await relay.stop();
      sub.unsubscribe();
      const ms = [...committed]
        .map(([i, t]) => (seen.get(i) ?? Number.NaN) - t)
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      latency[name] = { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) };
      lrows.push([
        name,
        String(ms.length),
        `${latency[name].p50.toFixed(1)} ms`,
        `${latency[name].p99.toFixed(1)} ms`,
      ]);
    }
    s.tables.push({
      title: `End-to-end latency, COMMIT → message on the NATS subject (${samples} events, one per transaction, every ~7 ms)`,
      columns: ['relay wake-up', 'events', 'p50', 'p99'],
      rows: lrows,
    });

    const nats = rates['NATS JetStream (natsPublisher)']!;
    s.checks.push({
      target: `one relay to NATS with batching (batch ${BATCH}) ≥ 5,000 events/s`,
      actual: `${fmtOps(nats)} events/s`,
      met: nats >= 5000,
    });
    const notify = latency['LISTEN/NOTIFY (poll 1 s as fallback)']!;
    s.checks.push({
      target: 'end-to-end p50 < 10 ms with NOTIFY',
      actual: `${notify.p50.toFixed(1)} ms`,
      met: notify.p50 < 10,
    });
    const version = (await pool.query('SHOW server_version')).rows[0] as { server_version: string };
    s.facts.push(
      `PostgreSQL ${version.server_version}, pg ${installedVersion('pg')}; NATS at ${SERVICES.nats}, @nats-io/jetstream ${installedVersion('@nats-io/jetstream')}; the stream on file storage with default settings; producer, relay and subscriber in this one process`,
    );
  } finally {
    await jsm.streams.delete(stream).catch(() => {});
    await nc.close();
    await pool.end();
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return s;
}

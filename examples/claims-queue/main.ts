/**
 * The seed's claim pipeline, queue-driven: intake → eligibility → adjudication → payment →
 * audit over RabbitMQ, state in Postgres, an outbox between every two stages, consumers with
 * an inbox, three worker processes and two relays. With --chaos the supervisor SIGKILLs
 * workers and relays, workers kill themselves after paying or before acking, kill their
 * broker connection or nack for a redelivery, relays kill theirs, and every claim is submitted
 * twice. At the end it checks: claims in = payments out, no payment twice, no claim stuck.
 *
 * Run: npm run example:claims-queue -- [--claims N] [--chaos] [--seed N]
 * Needs PostgreSQL (IDEM_PG_URL) and RabbitMQ (IDEM_AMQP_URL).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import amqp from 'amqplib';
import { postgresOutbox } from 'idem/outbox';
import { postgresStore } from 'idem/postgres';
import { type Claim, type Config, openPool, queueOf, random, STAGES, TABLES } from './shared.ts';

const { values } = parseArgs({
  options: {
    claims: { type: 'string', default: '40' },
    chaos: { type: 'boolean', default: false },
    seed: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '90' },
  },
});
const claimCount = Number(values.claims);
if (!Number.isInteger(claimCount) || claimCount < 1) throw new Error('--claims must be a positive integer');
const cfg: Config = {
  pg: process.env.IDEM_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  amqp: process.env.IDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  run: `cq_${randomBytes(4).toString('hex')}`,
  chaos: values.chaos,
  seed: Number(values.seed),
};
const rand = random(cfg.seed);
const log = (s: string) => console.log(s);

// --- setup: a schema and queues of this run's own
const admin = openPool({ ...cfg, run: 'public' }, 1);
await admin.query(`CREATE SCHEMA ${cfg.run}`);
await admin.end();
const pool = openPool(cfg);
for (const ddl of TABLES) await pool.query(ddl);
const outbox = postgresOutbox({ pool, schema: cfg.run });
await outbox.migrate();
const store = postgresStore({ pool, schema: cfg.run });
await store.ready();
const conn = await amqp.connect(cfg.amqp);
const ch = await conn.createChannel();
for (const s of STAGES) await ch.assertQueue(queueOf(cfg, s), { durable: false });

// --- processes, restarted when they die until the run is over
const SCRIPT = { worker: 'worker.ts', relay: 'relay.ts' } as const;
const procs: Array<{ kind: keyof typeof SCRIPT; slot: number; child: ChildProcess }> = [];
const stats = {
  processed: 0,
  duplicates: 0,
  redelivered: 0,
  killed: 0,
  died: 0,
  connections: 0,
  nacks: 0,
  errors: 0,
};
let finishing = false;
function start(kind: keyof typeof SCRIPT, slot: number) {
  const child = spawn(
    process.execPath,
    [
      '--conditions=idem-source',
      new URL(SCRIPT[kind], import.meta.url).pathname,
      JSON.stringify({ ...cfg, slot }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const p = { kind, slot, child };
  procs[kind === 'worker' ? slot : 3 + slot] = p;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const e = JSON.parse(line) as Record<string, unknown>;
    if (e.result === 'processed') stats.processed++;
    if (e.result === 'duplicate') stats.duplicates++;
    if (e.redelivered) stats.redelivered++;
    if (e.chaos === 'connection' || e.chaos === 'relay-connection') stats.connections++;
    if (e.chaos === 'nack') stats.nacks++;
    if (e.error || e.result === 'retry' || e.result === 'parked') stats.errors++;
  });
  child.once('exit', (code, signal) => {
    if (finishing) return;
    if (signal === 'SIGKILL' || code === 3) stats.died++;
    if (stats.died > 60) throw new Error('processes keep dying: giving up');
    start(kind, slot);
  });
}
for (let s = 0; s < 3; s++) start('worker', s);
for (let s = 0; s < 2; s++) start('relay', s);

// --- intake: each claim and its first event in one transaction (and, under chaos, submitted twice)
const claims: Claim[] = Array.from({ length: claimCount }, (_, i) => ({
  payerId: 'PAYER-7',
  claimNumber: `CLM-${1000 + i}`,
  memberId: `MBR-${i % 7}`,
  planId: 'PLAN-GOLD',
  dos: `2026-11-${String((i % 20) + 1).padStart(2, '0')}`,
  lines: [
    { code: '99213', billed: 150 + i * 10 },
    { code: '85025', billed: 40 },
  ],
}));
let resubmitted = 0;
for (const claim of claims) {
  const tx = await pool.connect();
  await tx.query('BEGIN');
  await tx.query('INSERT INTO claims (claim_number, body) VALUES ($1, $2)', [
    claim.claimNumber,
    JSON.stringify(claim),
  ]);
  const id = await outbox.add(tx, {
    topic: queueOf(cfg, 'intake'),
    key: claim.claimNumber,
    payload: { claim },
  });
  await tx.query('COMMIT');
  tx.release();
  if (cfg.chaos) {
    // a producer retry: the same message again, straight to the broker, with the same id
    ch.sendToQueue(queueOf(cfg, 'intake'), Buffer.from(JSON.stringify({ claim })), { messageId: id });
    resubmitted++;
  }
}
log(
  `claims-queue: ${claimCount} claims through ${STAGES.join(' → ')}; 3 workers, 2 relays, RabbitMQ + Postgres${cfg.chaos ? `, chaos (seed ${cfg.seed})` : ''}`,
);

// --- chaos from outside: SIGKILL a random worker or relay now and then
const chaosTimer = setInterval(() => {
  if (!cfg.chaos || stats.killed >= 6) return;
  const p = procs[Math.floor(rand() * procs.length)];
  if (p && p.child.exitCode === null && p.child.signalCode === null) {
    stats.killed++;
    p.child.kill('SIGKILL');
  }
}, 400);

// --- wait until every claim is audited and the outbox is empty
const deadline = Date.now() + Number(values.timeout) * 1000;
const audited = async () => Number((await pool.query('SELECT count(*) FROM audit')).rows[0].count);
for (;;) {
  const s = await outbox.stats();
  if ((await audited()) === claimCount && s.pending === 0) break;
  if (Date.now() > deadline) break;
  await new Promise((r) => setTimeout(r, 200));
}
clearInterval(chaosTimer);
finishing = true;
await Promise.all(
  procs.map(
    (p) =>
      new Promise<void>((resolve) => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
        p.child.once('exit', () => resolve());
        p.child.kill('SIGTERM');
      }),
  ),
);

// --- the checks
const q = async (sql: string) => (await pool.query(sql)).rows;
const payments = await q('SELECT claim, count(*)::int AS n FROM gateway_payments GROUP BY claim');
const calls = Number((await q('SELECT count(*) FROM gateway_calls'))[0]!.count);
const auditRows = await audited();
const ob = await outbox.stats();
const paidTwice = payments.filter((p) => p.n > 1).length;
const paid = payments.length;
const stuck = claimCount - auditRows;
log(`claims in:            ${claimCount}`);
log(
  `payments out:         ${paid} (gateway calls ${calls}: a retry after a crash carries the same idempotency key)`,
);
log(`paid twice:           ${paidTwice}`);
log(
  `stuck claims:         ${stuck} (audited ${auditRows}; outbox pending ${ob.pending}, parked ${ob.parked})`,
);
const marks = Number((await q("SELECT count(*) FROM idem_inbox WHERE state = 'processed'"))[0]!.count);
log(
  `stage runs:           ${marks} (= ${claimCount} claims × ${STAGES.length} stages: each message's effects committed once, with its inbox mark)`,
);
log(
  `duplicates dropped:   ${stats.duplicates} by the inbox (${stats.redelivered} deliveries were redeliveries; ${stats.errors} handler failures retried)`,
);
if (cfg.chaos) {
  log(
    `chaos:                ${stats.killed} processes SIGKILLed by the supervisor, ${stats.died} deaths in all, ${stats.connections} broker connections killed, ${stats.nacks} forced redeliveries, ${resubmitted} duplicate submissions`,
  );
}
const ok =
  marks === claimCount * STAGES.length &&
  paid === claimCount &&
  paidTwice === 0 &&
  stuck === 0 &&
  ob.pending === 0 &&
  ob.parked === 0;
log(
  ok
    ? '✓ claims in = payments out, no payment twice, no claim stuck'
    : '✗ the pipeline lost or doubled a payment',
);

// --- cleanup
await store.close();
for (const s of STAGES) await ch.deleteQueue(queueOf(cfg, s)).catch(() => {});
await conn.close();
await pool.end();
const drop = openPool({ ...cfg, run: 'public' }, 1);
await drop.query(`DROP SCHEMA ${cfg.run} CASCADE`);
await drop.end();
process.exit(ok ? 0 : 1);

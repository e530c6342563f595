/**
 * A pipeline worker process: consumes every stage's queue. For each message, in one
 * transaction: the inbox mark, the stage's result (keyed by the seed's key) and the next
 * stage's event in the outbox; the ack comes after the commit. The payment stage first pays
 * through the gateway under `idem.run`, whose `ctx.downstreamKey` is the gateway's
 * idempotency key, so a retry after a crash pays nothing twice.
 *
 * Chaos (argument `chaos: true`): SIGKILL right after paying (before idem records it) or after
 * the commit (before the ack), kill the broker connection, or nack with requeue.
 * Prints one JSON line per delivery: { stage, claim, result: the inbox's status }.
 */
import amqp from 'amqplib';
import { createIdem } from 'idem';
import { consumeOnceTx, type TxConsumeResult } from 'idem/inbox-sql';
import { postgresOutbox } from 'idem/outbox';
import { postgresStore } from 'idem/postgres';
import type { PoolClient } from 'pg';
import {
  type Config,
  nextStage,
  openPool,
  pay,
  queueOf,
  random,
  STAGES,
  type Stage,
  type StageMessage,
  stageKey,
} from './shared.ts';

const cfg = JSON.parse(process.argv[2]!) as Config & { slot: number };

// exit with the parent: an orphan would poll for ever
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 500).unref();
const rand = random(cfg.seed * 1000 + cfg.slot * 7919 + (process.pid % 997));
const chance = (p: number) => cfg.chaos && rand() < p;
const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const pool = openPool(cfg);
const outbox = postgresOutbox({ pool, schema: cfg.run });
const idem = createIdem({
  store: postgresStore({ pool, schema: cfg.run }),
  lease: '2s',
  onInProgress: 'wait',
});

/** One stage's database work: its result, stored under the seed's key, and the next stage's message. */
function decide(stage: Stage, m: StageMessage): { key: string; next: StageMessage } {
  const intakeId = m.intakeId ?? `CI-${m.claim.claimNumber}`;
  switch (stage) {
    case 'intake': {
      const billed = m.claim.lines.reduce((s, l) => s + l.billed, 0);
      return { key: stageKey(intakeId, stage, m.claim), next: { claim: m.claim, intakeId, billed } };
    }
    case 'eligibility': {
      const coinsurance = 0.1 + (Number(m.claim.memberId.slice(-1)) % 3) * 0.05;
      return {
        key: stageKey(intakeId, stage, [m.claim.memberId, m.claim.planId, m.claim.dos]),
        next: { ...m, coinsurance },
      };
    }
    case 'adjudication': {
      const totalAllowed = Math.round(m.billed! * 0.8 * 100) / 100;
      const memberResponsibility = Math.round(totalAllowed * m.coinsurance! * 100) / 100;
      return {
        key: stageKey(intakeId, stage, [m.billed, m.coinsurance]),
        next: { ...m, totalAllowed, memberResponsibility },
      };
    }
    default:
      return { key: stageKey(intakeId, stage, m), next: m };
  }
}

async function handle(stage: Stage, m: StageMessage, messageId: string): Promise<TxConsumeResult<void>> {
  let msg = m;
  if (stage === 'payment') {
    const input = [m.totalAllowed, m.memberResponsibility];
    const amount = Math.round((m.totalAllowed! - m.memberResponsibility!) * 100) / 100;
    const paid = await idem.run(stageKey(m.intakeId!, 'payment', input), async (ctx) => {
      const p = await pay(pool, m.claim.claimNumber, amount, ctx.downstreamKey);
      if (chance(0.12)) process.kill(process.pid, 'SIGKILL'); // paid, not recorded: the worst moment
      return p;
    });
    msg = { ...m, paymentId: paid.paymentId, amount: paid.amount };
  }
  const { key, next } = decide(stage, msg);
  // the inbox's SQL fast path: its processed mark commits in this transaction, with the
  // stage's result and the next stage's outbox event (exactly once for these database effects)
  return consumeOnceTx<void, PoolClient>(pool, { consumer: stage, messageId }, async (tx) => {
    await tx.query(
      'INSERT INTO stage_results (key, claim, stage, result) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING',
      [key, m.claim.claimNumber, stage, JSON.stringify(next)],
    );
    const after = nextStage(stage);
    if (after) {
      await outbox.add(tx, { topic: queueOf(cfg, after), key: m.claim.claimNumber, payload: next });
    } else {
      await tx.query('INSERT INTO audit (claim, payment_id, amount) VALUES ($1, $2, $3)', [
        m.claim.claimNumber,
        msg.paymentId,
        msg.amount,
      ]);
    }
  });
}

const conn = await amqp.connect(cfg.amqp);
conn.on('error', () => {});
conn.on('close', () => process.exit(3)); // the supervisor restarts us; unacked messages are redelivered
const ch = await conn.createChannel();
ch.on('error', () => {});
await ch.prefetch(4);
// ack / nack on a channel that just closed throws; the broker redelivers those messages anyway
const settle = (fn: () => void) => {
  try {
    fn();
  } catch {}
};
for (const stage of STAGES) {
  await ch.assertQueue(queueOf(cfg, stage), { durable: false });
  await ch.consume(queueOf(cfg, stage), async (delivery) => {
    if (!delivery) return;
    const messageId = delivery.properties.messageId as string;
    const m = JSON.parse(delivery.content.toString()) as StageMessage;
    let r: TxConsumeResult<void>;
    try {
      r = await handle(stage, m, messageId);
    } catch (err) {
      say({ stage, claim: m.claim.claimNumber, error: String(err) });
      settle(() => ch.nack(delivery, false, true));
      return;
    }
    say({ stage, claim: m.claim.claimNumber, result: r.status, redelivered: delivery.fields.redelivered });
    if (r.next === 'retry') {
      setTimeout(() => settle(() => ch.nack(delivery, false, true)), r.retryAfterMs);
      return;
    }
    if (r.next === 'dead_letter') {
      settle(() => ch.nack(delivery, false, false));
      return;
    }
    if (chance(0.02)) process.kill(process.pid, 'SIGKILL'); // committed, not acked
    if (chance(0.02)) {
      say({ chaos: 'connection' });
      (conn as unknown as { connection: { stream: { destroy(e: Error): void } } }).connection.stream.destroy(
        new Error('chaos: broker connection killed'),
      );
      return;
    }
    if (chance(0.06)) {
      say({ chaos: 'nack' });
      settle(() => ch.nack(delivery, false, true)); // forced redelivery
      return;
    }
    settle(() => ch.ack(delivery));
  });
}
say({ ready: cfg.slot });
process.once('SIGTERM', async () => {
  await ch.close().catch(() => {});
  conn.removeAllListeners('close');
  await conn.close().catch(() => {});
  await idem.close();
  await pool.end();
  process.exit(0);
});

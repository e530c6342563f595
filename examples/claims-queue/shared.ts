/**
 * What every process of the queue-driven claims pipeline shares: its configuration, the
 * stages, the seed's key strategy (intake id + stage + content hash), the tables, and the
 * payment gateway (which, like Stripe, makes one payment per idempotency key).
 *
 * ```
 * intake ─▶ eligibility ─▶ adjudication ─▶ payment ─▶ audit      (one RabbitMQ queue each)
 *   each consumer, in ONE Postgres transaction (consumeOnceTx from idem/inbox-sql):
 *     inbox mark + stage result + outbox.add(next)
 *   payment also calls the gateway first, under idem.run with ctx.downstreamKey
 *   relays: outbox ─▶ RabbitMQ (messageId = event id, publisher confirms)
 * ```
 *
 * @module
 */
import { createHash } from 'node:crypto';
import pg from 'pg';

export interface Config {
  pg: string;
  amqp: string;
  /** Postgres schema and queue-name prefix of this run. */
  run: string;
  chaos: boolean;
  seed: number;
}

export const STAGES = ['intake', 'eligibility', 'adjudication', 'payment', 'audit'] as const;
export type Stage = (typeof STAGES)[number];
export const nextStage = (s: Stage): Stage | undefined => STAGES[STAGES.indexOf(s) + 1];
export const queueOf = (cfg: Config, s: Stage) => `${cfg.run}.${s}`;

export interface Claim {
  payerId: string;
  claimNumber: string;
  memberId: string;
  planId: string;
  dos: string;
  lines: Array<{ code: string; billed: number }>;
}

/** A stage's message: the claim and what the earlier stages decided. */
export interface StageMessage {
  claim: Claim;
  intakeId?: string;
  billed?: number;
  coinsurance?: number;
  totalAllowed?: number;
  memberResponsibility?: number;
  paymentId?: string;
  amount?: number;
}

export const contentHash = (value: unknown) =>
  createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);

/** The seed's key: intake id + stage + a hash of the stage's input. */
export const stageKey = (intakeId: string, stage: Stage, input: unknown) =>
  `${intakeId}:${stage}:${contentHash(input)}`;

export function openPool(cfg: Config, max = 6) {
  const pool = new pg.Pool({ connectionString: cfg.pg, max, options: `-c search_path=${cfg.run}` });
  pool.on('error', () => {});
  return pool;
}

export const TABLES = [
  `CREATE TABLE IF NOT EXISTS claims (claim_number text PRIMARY KEY, body jsonb NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS stage_results (key text PRIMARY KEY, claim text NOT NULL, stage text NOT NULL, result jsonb NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS audit (claim text PRIMARY KEY, payment_id text NOT NULL, amount numeric NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS gateway_payments (idempotency_key text PRIMARY KEY, claim text NOT NULL, amount numeric NOT NULL, payment_id text NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS gateway_calls (n bigserial PRIMARY KEY, claim text NOT NULL)`,
];

/** The payment gateway: one payment per idempotency key; every call counted. */
export async function pay(pool: pg.Pool, claim: string, amount: number, idempotencyKey: string) {
  await pool.query('INSERT INTO gateway_calls (claim) VALUES ($1)', [claim]);
  await pool.query(
    `INSERT INTO gateway_payments (idempotency_key, claim, amount, payment_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (idempotency_key) DO NOTHING`,
    [idempotencyKey, claim, amount, `PAY-${contentHash([idempotencyKey, Math.random()]).slice(0, 10)}`],
  );
  const { rows } = await pool.query(
    'SELECT payment_id, amount FROM gateway_payments WHERE idempotency_key = $1',
    [idempotencyKey],
  );
  return { paymentId: rows[0]!.payment_id as string, amount: Number(rows[0]!.amount) };
}

/** A small seeded random generator (mulberry32), so a chaos run can be replayed. */
export function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

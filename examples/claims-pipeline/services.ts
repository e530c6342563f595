/**
 * The outside world of the claims pipeline, kept in one SQLite file so that every worker
 * process sees the same state: an eligibility service and a payment gateway that, like
 * Stripe, honours idempotency keys. Each call is counted, so the demo can show what the
 * pipeline asked for and what actually happened.
 */
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';

export interface Claim {
  payerId: string;
  claimNumber: string;
  memberId: string;
  planId: string;
  dos: string;
  lines: Array<{ code: string; billed: number }>;
}

export function openWorld(path: string) {
  const db = new DatabaseSync(path, { timeout: 10_000 });
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS calls (service TEXT NOT NULL, claim TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS payments (idempotency_key TEXT PRIMARY KEY, payment_id TEXT NOT NULL,
      claim TEXT NOT NULL, amount REAL NOT NULL);`);
  const call = db.prepare('INSERT INTO calls (service, claim) VALUES (?, ?)');
  const insertPayment = db.prepare(
    'INSERT INTO payments (idempotency_key, payment_id, claim, amount) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
  );
  const findPayment = db.prepare('SELECT payment_id, amount FROM payments WHERE idempotency_key = ?');

  return {
    /** Eligibility: a coverage snapshot (no side effect, but every call costs money). */
    checkEligibility(claim: Claim) {
      call.run('eligibility', claim.claimNumber);
      return { eligibilityCheckId: `ELIG-${randomUUID().slice(0, 8)}`, covered: true, coinsurance: 0.2 };
    },
    /** The payment gateway: one payment per idempotency key, like Stripe. */
    postPayment(claimNumber: string, amount: number, idempotencyKey: string) {
      call.run('payment', claimNumber);
      insertPayment.run(idempotencyKey, `PAY-${randomUUID().slice(0, 8)}`, claimNumber, amount);
      const row = findPayment.get(idempotencyKey) as { payment_id: string; amount: number };
      return { paymentId: row.payment_id, amount: row.amount, eobId: `EOB-${row.payment_id.slice(4)}` };
    },
    report() {
      const payments = db.prepare(
        'SELECT claim, count(*) AS n, sum(amount) AS total FROM payments GROUP BY claim',
      );
      const calls = db.prepare('SELECT service, count(*) AS n FROM calls GROUP BY service');
      return {
        payments: payments.all() as Array<{ claim: string; n: number; total: number }>,
        calls: Object.fromEntries(
          (calls.all() as Array<{ service: string; n: number }>).map((r) => [r.service, r.n]),
        ),
      };
    },
    close: () => db.close(),
  };
}

export type World = ReturnType<typeof openWorld>;

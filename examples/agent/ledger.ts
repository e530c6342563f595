/**
 * The outside world the agent's tools act on, in one SQLite file every agent process shares:
 * orders, refunds and ticket closures. Like a payment API, refunds and closures honour an
 * idempotency key (the tool call's downstream key); every tool execution is also logged, so
 * the driver can count executions against effects. The check groups refunds by order, not by
 * key: a refund issued twice under two keys shows up as a duplicate.
 */
import { randomUUID } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';

export function openLedger(path: string) {
  const db = new DatabaseSync(path, { timeout: 10_000 });
  db.exec('PRAGMA journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS executions (tool TEXT NOT NULL, target TEXT NOT NULL, retry INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS refunds (idempotency_key TEXT PRIMARY KEY, refund_id TEXT NOT NULL,
      order_id TEXT NOT NULL, amount REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS closures (idempotency_key TEXT PRIMARY KEY, ticket TEXT NOT NULL);`);
  const executed = db.prepare('INSERT INTO executions (tool, target, retry) VALUES (?, ?, ?)');
  const refund = db.prepare(
    'INSERT INTO refunds (idempotency_key, refund_id, order_id, amount) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
  );
  const findRefund = db.prepare('SELECT refund_id FROM refunds WHERE idempotency_key = ?');
  const close = db.prepare(
    'INSERT INTO closures (idempotency_key, ticket) VALUES (?, ?) ON CONFLICT DO NOTHING',
  );
  return {
    logExecution(tool: string, target: string, retry: boolean) {
      executed.run(tool, target, retry ? 1 : 0);
    },
    /** Issues a refund once per idempotency key; answers the refund id. */
    refund(orderId: string, amount: number, key: string): string {
      refund.run(key, `RF-${randomUUID().slice(0, 8)}`, orderId, amount);
      return (findRefund.get(key) as { refund_id: string }).refund_id;
    },
    closeTicket(ticket: string, key: string) {
      close.run(key, ticket);
    },
    report() {
      const rows = (sql: string) => db.prepare(sql).all() as Array<Record<string, number | string>>;
      return {
        executions: rows('SELECT tool, COUNT(*) AS n, SUM(retry) AS retries FROM executions GROUP BY tool'),
        refundsPerOrder: rows('SELECT order_id AS id, COUNT(*) AS n FROM refunds GROUP BY order_id'),
        closuresPerTicket: rows('SELECT ticket AS id, COUNT(*) AS n FROM closures GROUP BY ticket'),
      };
    },
    close: () => db.close(),
  };
}

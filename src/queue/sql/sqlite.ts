/**
 * The SQL inbox on SQLite (`node:sqlite`): `BEGIN IMMEDIATE` takes the write lock, so a
 * duplicate in another process waits (set `PRAGMA busy_timeout`) and then sees the row. Calls
 * on one database are serialized in this process: the handler may be async while the
 * transaction is open on the shared connection.
 *
 * @module
 */
import { errorColumn, outcomeColumn, type TxCall, type TxOutcome } from './shared.ts';

/**
 * The `node:sqlite` DatabaseSync methods used.
 *
 * @example
 * const db: SqliteDatabaseLike = new DatabaseSync('app.db');
 */
export interface SqliteDatabaseLike {
  exec(sql: string): void;
  prepare(sql: string): {
    get(...params: unknown[]): unknown;
    run(...params: unknown[]): unknown;
  };
}

const queues = new WeakMap<object, Promise<unknown>>();
const created = new WeakMap<object, Set<string>>();

/**
 * Runs one message on SQLite, after the calls before it on the same database.
 *
 * @example
 * const out = await sqliteInbox(db, call, (tx) => apply(tx));
 */
export function sqliteInbox<T>(
  db: SqliteDatabaseLike,
  call: TxCall,
  run: (tx: unknown, attempt: number) => T | Promise<T>,
): Promise<TxOutcome<T>> {
  const previous = queues.get(db) ?? Promise.resolve();
  const next = previous.then(
    () => once(db, call, run),
    () => once(db, call, run),
  );
  queues.set(
    db,
    next.catch(() => {}),
  );
  return next;
}

async function once<T>(
  db: SqliteDatabaseLike,
  call: TxCall,
  run: (tx: unknown, attempt: number) => T | Promise<T>,
): Promise<TxOutcome<T>> {
  const { table, consumer, messageId, maxAttempts, now } = call;
  const tables = created.get(db) ?? new Set<string>();
  created.set(db, tables);
  if (!tables.has(table)) {
    db.exec(
      `CREATE TABLE IF NOT EXISTS "${table}" (consumer TEXT NOT NULL, message_id TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL, outcome TEXT, error TEXT, updated_at INTEGER NOT NULL, PRIMARY KEY (consumer, message_id))`,
    );
    tables.add(table);
  }
  db.exec('BEGIN IMMEDIATE');
  try {
    const claimed = db
      .prepare(
        `INSERT INTO "${table}" AS t (consumer, message_id, state, attempts, updated_at) VALUES (?, ?, 'processed', 1, ?)
         ON CONFLICT (consumer, message_id) DO UPDATE SET state = 'processed', attempts = t.attempts + 1, updated_at = excluded.updated_at
         WHERE t.state = 'failed' RETURNING attempts`,
      )
      .get(consumer, messageId, now) as { attempts: number } | undefined;
    if (!claimed) {
      db.exec('ROLLBACK');
      const row = db
        .prepare(
          `SELECT state, attempts, outcome, error FROM "${table}" WHERE consumer = ? AND message_id = ?`,
        )
        .get(consumer, messageId) as {
        state: 'processed' | 'parked';
        attempts: number;
        outcome: string | null;
        error: string | null;
      };
      return { kind: 'existing', ...row };
    }
    const value = await run(db, claimed.attempts);
    const outcome = outcomeColumn(value);
    if (outcome !== null) {
      db.prepare(`UPDATE "${table}" SET outcome = ? WHERE consumer = ? AND message_id = ?`).run(
        outcome,
        consumer,
        messageId,
      );
    }
    db.exec('COMMIT');
    return { kind: 'processed', value, attempt: claimed.attempts };
  } catch (error) {
    try {
      db.exec('ROLLBACK');
    } catch {
      // the handler ended the transaction itself, or the connection failed
    }
    const row = db
      .prepare(
        `INSERT INTO "${table}" AS t (consumer, message_id, state, attempts, error, updated_at)
         VALUES (?1, ?2, CASE WHEN ?4 <= 1 THEN 'parked' ELSE 'failed' END, 1, ?3, ?5)
         ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = t.attempts + 1, error = ?3, updated_at = ?5,
           state = CASE WHEN t.attempts + 1 >= ?4 THEN 'parked' ELSE 'failed' END
         WHERE t.state = 'failed' RETURNING attempts, state`,
      )
      .get(consumer, messageId, errorColumn(error), maxAttempts, Date.now()) as
      | { attempts: number; state: string }
      | undefined;
    const r = row ?? { attempts: maxAttempts, state: 'parked' };
    return { kind: 'failed', error, failures: r.attempts, parked: r.state === 'parked' };
  }
}

/**
 * The consumers' inbox: the processed mark is a row (consumer, message id) inserted in the
 * same Postgres transaction as the stage's effects and its outbox event, so a redelivered
 * message finds the row and changes nothing: exactly once for database effects.
 *
 * @module
 */
import type pg from 'pg';

export const INBOX_TABLE = `CREATE TABLE IF NOT EXISTS inbox (consumer text NOT NULL, message_id text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, message_id))`;

/**
 * Runs `fn` in a transaction that also marks (consumer, messageId) processed; answers
 * 'duplicate' without running it when the mark already exists.
 */
export async function consumeInTransaction(
  pool: pg.Pool,
  consumer: string,
  messageId: string,
  fn: (tx: pg.PoolClient) => Promise<void>,
): Promise<'processed' | 'duplicate'> {
  const tx = await pool.connect();
  try {
    await tx.query('BEGIN');
    const mark = await tx.query(
      'INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
      [consumer, messageId],
    );
    if (mark.rowCount === 0) {
      await tx.query('ROLLBACK');
      return 'duplicate';
    }
    await fn(tx);
    await tx.query('COMMIT');
    return 'processed';
  } catch (err) {
    await tx.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    tx.release();
  }
}

/**
 * Shared by the outbox and the SQL inbox, which check connections out of a `pg.Pool` the app
 * passes in.
 *
 * @module
 */

/**
 * A no-op 'error' listener on every connection the pool opens, from its first moment: between
 * pg-pool handing a new client out and our code getting it, a server that ends the session in the
 * same packet (`pg_terminate_backend`, a restart) would otherwise emit 'error' with nobody
 * listening and kill the process (see test/stores/postgres.terminate.test.ts).
 *
 * @example
 * guardPool(pool);
 */
export function guardPool(pool: object): void {
  if (guarded.has(pool)) return;
  guarded.add(pool);
  const on = (
    pool as {
      on?: (event: string, fn: (c: { on?: (e: string, f: () => void) => unknown }) => void) => unknown;
    }
  ).on;
  on?.call(pool, 'connect', (client) => void client.on?.('error', () => {}));
}
const guarded = new WeakSet<object>();

/**
 * The pieces of `pg` the Postgres store uses, declared structurally so idem never
 * value-imports `pg`, plus the one place every statement runs: under a deadline, with broken
 * connections dropped from the pool and every failure turned into `StoreUnavailableError`.
 *
 * @module
 */
import { InvalidOptionError, StoreUnavailableError } from '../../core/errors.ts';

/** What a query answers; a subset of pg's `QueryResult`. */
export interface PgResultLike {
  rows: Record<string, unknown>[];
  rowCount: number | null;
}

/** A connection checked out of the pool; a subset of pg's `PoolClient`. */
export interface PgClientLike {
  /** With a `name`, pg prepares the statement once per connection and then only executes it. */
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<PgResultLike>;
  /** Hands the client back; with an error (or `true`) the pool destroys it instead. */
  release(err?: Error | boolean): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(
    event: 'notification',
    listener: (msg: { channel: string; payload?: string | undefined }) => void,
  ): unknown;
  removeListener(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * The pool the store runs on: a `pg.Pool`, or anything with the same `connect` / `end`.
 *
 * @example
 * import pg from 'pg';
 * const pool: PgPoolLike = new pg.Pool({ connectionString, statement_timeout: 5000 });
 */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>;
  end(): Promise<void>;
  on?(event: 'error', listener: (err: Error) => void): unknown;
  on?(event: 'connect', listener: (client: PgClientLike) => void): unknown;
}

/**
 * Guards every connection `pool` opens from its first moment: a no-op 'error' listener added
 * when the pool creates the client (its 'connect' event, emitted synchronously). Without it there
 * is a window where a client has no listener at all — pg-pool drops its idle listener when it
 * hands a new client out, and the caller's `.then` runs only after the current socket chunk is
 * parsed — and a server that ends the session in that chunk (`pg_terminate_backend`, a restart)
 * emits 'error' with nobody listening, which kills the process.
 *
 * @example
 * guardPool(pool);
 */
export function guardPool(pool: PgPoolLike): void {
  if (guarded.has(pool)) return;
  guarded.add(pool);
  pool.on?.('connect', (client: PgClientLike) => listenForErrors(client));
}
const guarded = new WeakSet<PgPoolLike>();

/** The part of the `pg` module the store needs to build its own pool. */
export interface PgModuleLike {
  Pool: new (config: Record<string, unknown>) => PgPoolLike;
}

/** Loads `pg` lazily (it is an optional peer dependency), with a message that says what to do. */
export async function loadPg(): Promise<PgModuleLike> {
  try {
    const mod = (await import('pg')) as unknown as { default?: PgModuleLike } & PgModuleLike;
    return mod.default?.Pool ? mod.default : mod;
  } catch (cause) {
    throw new InvalidOptionError(
      `postgresStore({ connectionString }) needs the 'pg' package: npm install pg (${(cause as Error).message})`,
    );
  }
}

/** Wraps any failure as `StoreUnavailableError`, keeping idem errors and the original as `cause`. */
export function unavailable(what: string, err: unknown): Error {
  if (err instanceof StoreUnavailableError || err instanceof InvalidOptionError) return err;
  const e = err as { message?: string; code?: string };
  const code = e?.code ? ` [${e.code}]` : '';
  return new StoreUnavailableError(`postgres store: ${what} failed: ${e?.message ?? String(err)}${code}`, {
    cause: err,
  });
}

const ignore = () => {};
const listened = new WeakSet<PgClientLike>();

/**
 * Gives `client` a no-op 'error' listener, once per client for its whole life: a dead socket
 * emits 'error' on a checked-out client, and without a listener that would crash the app. (The
 * pool drops the broken client itself.) Adding and removing it around every query cost more
 * than the query's own bookkeeping.
 */
export function listenForErrors(client: PgClientLike): void {
  if (listened.has(client)) return;
  listened.add(client);
  client.on('error', ignore);
}

/**
 * Checks a client out of `pool`, runs `fn` on it and hands it back, all within `timeoutMs`
 * from the call. On a timeout or any error the client is destroyed, not returned (it may
 * hold a running statement or a dead socket), and the call rejects with
 * `StoreUnavailableError`. A client that arrives after the deadline goes straight back.
 *
 * @example
 * const rows = await withClient(pool, 5000, 'get', (c) => c.query({ text, values }));
 */
export function withClient<T>(
  pool: PgPoolLike,
  timeoutMs: number,
  what: string,
  fn: (client: PgClientLike) => Promise<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let client: PgClientLike | undefined;
    const timer = setTimeout(() => {
      settled = true;
      client?.release(new Error(`idem: ${what} timed out`));
      reject(new StoreUnavailableError(`postgres store: ${what} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(unavailable(what, err));
    };
    pool.connect().then((c) => {
      if (settled) return c.release();
      client = c;
      listenForErrors(c);
      fn(c).then(
        (value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          c.release();
          resolve(value);
        },
        (err) => {
          if (settled) return;
          c.release(err instanceof Error ? err : new Error(String(err)));
          fail(err);
        },
      );
    }, fail);
  });
}

/**
 * The embedded default store on `node:sqlite`: one file, WAL mode, safe for many processes on
 * one machine. Every transition is one SQL statement, so atomicity comes from SQLite itself.
 *
 * @module
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { InvalidOptionError, StoreUnavailableError } from '../../core/errors.ts';
import {
  type ClaimRequest,
  type ClaimResult,
  checkListOptions,
  guardMsOf,
  type ListedRecord,
  listedRecordOf,
  type Store,
  type StoreRecord,
} from '../../core/store.ts';
import { sqliteCounters } from './counters.ts';
import { SCHEMA_VERSION, schemaStatements, sqliteStatements, upgradeStatements } from './sql.ts';

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /** The database file (its folder is created), or `':memory:'`. Default `'.idem/idem.db'`. */
  path?: string;
  /** Table name. Default `'idem_records'`. */
  table?: string;
  /** How long a statement waits for another process's write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /**
   * `'normal'` (default) survives process crashes; `'full'` also survives power loss, at the
   * cost of an fsync per write.
   */
  synchronous?: 'normal' | 'full';
}

const COMPLETED = 2;

/** A row of the select, as an array (cheaper than an object with named columns). */
type Row = [
  id: string,
  state: number,
  fingerprint: string,
  token: string,
  attempt: number,
  leaseUntil: number,
  expiresAt: number,
  outcome: string | null,
];

/** A row of `list` / `inspectGet`: the select's columns up to expires_at, then these four. */
type ListedRow = [
  id: string,
  state: number,
  fingerprint: string,
  token: string,
  attempt: number,
  leaseUntil: number,
  expiresAt: number,
  bytes: number,
  createdAt: number,
  completedAt: number,
  scope: string,
];

/**
 * A store in a SQLite file, shared safely by every process on the machine.
 *
 * @example
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * const idem = createIdem({ store: sqliteStore({ path: '.idem/idem.db' }) });
 */
export function sqliteStore(options: SqliteStoreOptions = {}): Store {
  const path = options.path ?? '.idem/idem.db';
  const table = options.table ?? 'idem_records';
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table))
    throw new InvalidOptionError(`invalid table name: ${table}`);
  if (path !== ':memory:') createFolder(path);

  const db = open(path, options);
  const sql = sqliteStatements(table);
  const st = Object.fromEntries(
    Object.entries(sql).map(([name, text]) => [name, db.prepare(text)]),
  ) as Record<keyof typeof sql, StatementSync>;
  st.select.setReturnArrays(true);
  st.claim.setReturnArrays(true);
  st.list.setReturnArrays(true);
  st.inspectGet.setReturnArrays(true);

  const failed = (error: unknown) =>
    new StoreUnavailableError(`sqlite: ${(error as Error).message}`, { cause: error });
  const guard = <R>(fn: () => R): Promise<R> => {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(failed(error));
    }
  };
  const select = (id: string, t: number) => st.select.get(id, t) as Row | undefined;
  /** One claim: the record as it stands, or the upsert that takes it. */
  const claimNow = (req: ClaimRequest): ClaimResult => {
    for (;;) {
      const t = Date.now();
      const row = select(req.id, t);
      if (row && (row[1] === COMPLETED || row[2] !== req.fingerprint || row[5] > t)) {
        return { status: 'existing', record: toRecord(row), now: t };
      }
      const leaseUntil = t + req.leaseMs;
      const keep = leaseUntil + Math.max(req.leaseMs, req.ttlMs);
      // [attempt, token, lease_until]
      const won = st.claim.get(
        req.id,
        req.fingerprint,
        req.token,
        leaseUntil,
        keep,
        t,
        req.scopeHash ?? '',
      ) as [number, string, number] | undefined;
      if (won?.[1] === req.token) {
        return { status: 'acquired', attempt: won[0], leaseUntil: won[2], takeover: won[0] > 1 };
      }
      // Another process changed the record between our read and our write: read again.
    }
  };

  return {
    name: 'sqlite',

    // the hot path (every call claims first): no closure per call, just the statements
    claim(req: ClaimRequest): Promise<ClaimResult> {
      try {
        return Promise.resolve(claimNow(req));
      } catch (error) {
        return Promise.reject(failed(error));
      }
    },

    complete: (id, token, outcome, ttlMs) =>
      guard(() => {
        if (!token) return false; // '' marks a released record: nobody holds it
        const t = Date.now();
        if (st.complete.run(outcome, t + ttlMs, id, token, t).changes === 1) return true;
        return st.completedBy.get(id, token, t) !== undefined;
      }),

    // The attempt of a token never changes, so the two statements cannot both match.
    release: (id, token, guardMs) => {
      let guardWindow: number;
      try {
        guardWindow = guardMsOf(guardMs);
      } catch (error) {
        return Promise.reject(error);
      }
      return guard(() => {
        if (!token) return false;
        const t = Date.now();
        const first =
          guardWindow > 0 ? st.releaseGuarded.run(t, id, token, guardWindow) : st.release.run(id, token, t);
        if (first.changes === 1) return true;
        return st.releaseTakeover.run(t, id, token).changes === 1;
      });
    },

    renew: (id, token, leaseMs) =>
      guard(() => {
        if (!token) return undefined;
        const t = Date.now();
        const until = t + leaseMs;
        return st.renew.run(until, id, token, t).changes === 1 ? until : undefined;
      }),

    get: (id) =>
      guard(() => {
        const row = select(id, Date.now());
        return row ? toRecord(row) : undefined;
      }),

    purgeExpired: (limit) => guard(() => Number(st.purge.run(Date.now(), limit).changes)),

    inspect: {
      async list(o) {
        checkListOptions(o);
        return guard(() => {
          const t = Date.now();
          const rows = st.list.all(o.cursor ?? '', t, o.limit) as unknown as ListedRow[];
          const records = rows.map(toListed).filter((r) => o.state === undefined || r.state === o.state);
          return { records, cursor: rows.length === o.limit ? rows.at(-1)?.[0] : undefined, now: t };
        });
      },
      get: (id) =>
        guard(() => {
          const row = st.inspectGet.get(id, Date.now()) as unknown as ListedRow | undefined;
          return row ? toListed(row) : undefined;
        }),
      delete: (id) =>
        guard(() => {
          const row = st.remove.get(id) as { expires_at: number } | undefined;
          return row !== undefined && row.expires_at > Date.now();
        }),
    },

    counters: sqliteCounters(db, table),

    async close() {
      if (db.isOpen) db.close();
    },
  };
}

// --- Internal helpers ---

/** Creates the folder of `path`; a parent that is a file (or unwritable) is an InvalidOptionError. */
function createFolder(path: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    throw new InvalidOptionError(
      `sqliteStore: cannot create the folder of ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function open(path: string, options: SqliteStoreOptions): DatabaseSync {
  try {
    const timeoutMs = options.busyTimeoutMs ?? 5000;
    const db = new DatabaseSync(path, { timeout: timeoutMs });
    // Switching a new file to WAL takes an exclusive lock that SQLite does not wait for: when
    // several processes open the same new file at once, all but one get "database is locked".
    // Retry until the file is in WAL (one of them switched it) or the busy timeout runs out.
    whileBusy(timeoutMs, () => {
      const { journal_mode } = db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
      if (journal_mode !== 'wal') db.exec('PRAGMA journal_mode = WAL');
    });
    db.exec(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    whileBusy(timeoutMs, () => migrate(db, options.table ?? 'idem_records'));
    return db;
  } catch (error) {
    if (error instanceof InvalidOptionError) throw error;
    throw new StoreUnavailableError(`sqlite: cannot open ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Runs `fn` again while SQLite answers SQLITE_BUSY, for at most `timeoutMs`. */
function whileBusy(timeoutMs: number, fn: () => void): void {
  const end = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      fn();
      return;
    } catch (error) {
      if ((error as { errcode?: number }).errcode !== 5 || Date.now() + wait > end) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait); // a few ms, once, at open
    }
  }
}

function migrate(db: DatabaseSync, table: string) {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec('CREATE TABLE IF NOT EXISTS idem_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    const row = db.prepare('SELECT version FROM idem_schema WHERE name = ?').get(table) as
      | { version: number }
      | undefined;
    if (row && row.version > SCHEMA_VERSION) {
      throw new InvalidOptionError(
        `table ${table} has schema version ${row.version}; this idem knows ${SCHEMA_VERSION}: upgrade idem`,
      );
    }
    if (!row) {
      for (const s of schemaStatements(table)) db.exec(s);
      db.prepare('INSERT INTO idem_schema (name, version) VALUES (?, ?)').run(table, SCHEMA_VERSION);
    } else if (row.version < SCHEMA_VERSION) {
      // An older file upgrades in place, in this transaction: the write lock BEGIN IMMEDIATE took
      // makes every other process opening the file wait (whileBusy), then find the new version.
      const steps = upgradeStatements(table);
      for (let v = row.version; v < SCHEMA_VERSION; v++) for (const s of steps[v] ?? []) db.exec(s);
      db.prepare('UPDATE idem_schema SET version = ? WHERE name = ?').run(SCHEMA_VERSION, table);
    }
    db.exec('COMMIT');
  } catch (error) {
    db.exec('ROLLBACK');
    throw error;
  }
}

function toListed(row: ListedRow): ListedRecord {
  return listedRecordOf(toRecord([...row.slice(0, 7), null] as unknown as Row), {
    outcomeBytes: Number(row[7]),
    createdAt: Number(row[8]),
    completedAt: Number(row[9]),
    scopeHash: row[10],
  });
}

function toRecord(row: Row): StoreRecord {
  return {
    id: row[0],
    state: row[1] === COMPLETED ? 'completed' : 'in_progress',
    fingerprint: row[2],
    token: row[3],
    attempt: row[4],
    leaseUntil: row[5],
    expiresAt: row[6],
    outcome: row[7] ?? undefined,
  };
}

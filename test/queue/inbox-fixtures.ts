/**
 * Shared pieces of the inbox broker tests: a Postgres ledger schema (the independent record of
 * effects), child consumer processes with line-by-line output, and polling.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { SERVICES } from '../helpers/services.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds; false after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await sleep(25);
  }
  return check();
}

/** A schema with a `ledger` table: one row per handler run that reached its effect. */
export async function createLedger(schema: string): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: SERVICES.postgres, max: 4 });
  pool.on('error', () => {});
  await pool.query(`CREATE SCHEMA "${schema}"`);
  await pool.query(
    `CREATE TABLE "${schema}".ledger (n serial PRIMARY KEY, message_id text, consumer text, pid int, may_have_run boolean, downstream_key text)`,
  );
  return pool;
}

export async function dropLedger(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
  await pool.end();
}

/** A child process printing one status line per event; `lines` collects them all. */
export interface Child {
  child: ChildProcess;
  lines: string[];
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  kill(): Promise<void>;
}

export function startChild(script: URL, cfg: unknown): Child {
  const child = spawn(process.execPath, ['--conditions=idem-source', script.pathname, JSON.stringify(cfg)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    lines,
    async waitFor(pattern, ms = 20_000) {
      const ok = await until(() => lines.some((l) => pattern.test(l)), ms);
      if (!ok) throw new Error(`child never printed ${pattern}; got ${JSON.stringify(lines)}`);
      return lines.find((l) => pattern.test(l))!;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

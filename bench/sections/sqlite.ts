/**
 * Issues 2 and 12 (targets: fresh ≥ 85 %, replay ≥ 80 % of raw): `idem.run` on the SQLite store
 * next to raw `node:sqlite` running the statements the store runs (exported by
 * src/stores/sqlite/sql.ts), on its own file with the same pragmas.
 *
 * ```
 * fresh key   store: select → claim upsert → complete        raw: the same three statements
 * replay      store: select (record is completed)            raw: the same select
 * ```
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createIdem } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { schemaStatements, sqliteStatements } from '../../src/stores/sqlite/sql.ts';
import type { RunConfig } from '../lib/config.ts';
import { measure, ratioOf } from '../lib/measure.ts';
import { emptySection, fmtPct, type SectionResult, throughputTable } from '../lib/report.ts';
import {
  API,
  encodedOutcome,
  idAt,
  LEASE_MS,
  REPLAY_KEYS,
  randomIds,
  send,
  storeOnly,
  TTL_MS,
  token,
} from '../lib/workload.ts';

export async function sqliteSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('sqlite', 'SQLite store vs raw node:sqlite (issue 2)');
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-'));
  const store = sqliteStore({ path: join(dir, 'store.db') });
  const idem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS });
  // The same store with the opt-in in-process replay cache (a separate instance, so the default
  // row above measures the default configuration).
  const cachedIdem = createIdem({ store, ttl: TTL_MS, lease: LEASE_MS, replayCache: true });
  const raw = new DatabaseSync(join(dir, 'raw.db'), { timeout: 5000 });
  try {
    raw.exec('PRAGMA journal_mode = WAL');
    raw.exec('PRAGMA synchronous = NORMAL');
    for (const ddl of schemaStatements('idem_records')) raw.exec(ddl);
    const sql = sqliteStatements('idem_records');
    // Rows as arrays, as the store reads them (setReturnArrays), so raw pays no more than the store.
    const arrays = (text: string) => {
      const statement = raw.prepare(text);
      statement.setReturnArrays(true);
      return statement;
    };
    const st = {
      select: arrays(sql.select),
      claim: arrays(sql.claim),
      complete: raw.prepare(sql.complete),
    };
    const outcome = encodedOutcome(123456);
    const tok = token();
    const rawFresh = (id: string) => {
      const t = Date.now();
      st.select.get(id, t);
      st.claim.get(id, '', tok, t + LEASE_MS, t + TTL_MS, t, '');
      st.complete.run(outcome, t + TTL_MS, id, tok, t);
    };

    const freshIds = randomIds(Math.ceil(((cfg.durationMs + cfg.warmupMs) / 1000) * 150_000));
    const apiIds = randomIds(freshIds.length);
    const replayIds = randomIds(REPLAY_KEYS);
    const api = storeOnly(store, '');
    for (const id of replayIds) {
      rawFresh(id);
      await api.fresh(id);
    }
    for (let i = 0; i < REPLAY_KEYS; i++) await idem.run(`replay:${i}`, () => send(i));
    for (let i = 0; i < REPLAY_KEYS; i++) await cachedIdem.run(`replay:${i}`, () => send(i)); // warm the cache
    let replayRuns = 0;

    const opts = { concurrency: 1, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
    const fresh = await measure(
      [
        {
          name: 'raw node:sqlite',
          note: 'select + claim + complete',
          op: (i) => rawFresh(idAt(freshIds, i)),
        },
        {
          name: API,
          note: 'claim + complete',
          baseline: 'raw node:sqlite',
          op: (i) => api.fresh(idAt(apiIds, i)),
        },
        {
          name: 'idem.run, sqliteStore',
          baseline: 'raw node:sqlite',
          op: (i) => idem.run(`fresh:${i}`, () => send(i)),
        },
      ],
      opts,
    );
    const replay = await measure(
      [
        {
          name: 'raw node:sqlite',
          note: 'select',
          op: (i) => st.select.get(replayIds[i % REPLAY_KEYS]!, Date.now()),
        },
        {
          name: API,
          note: 'claim',
          baseline: 'raw node:sqlite',
          op: (i) => api.replay(replayIds[i % REPLAY_KEYS]!),
        },
        {
          name: 'idem.run, sqliteStore',
          baseline: 'raw node:sqlite',
          op: (i) =>
            idem.run(`replay:${i % REPLAY_KEYS}`, () => {
              replayRuns++;
              return send(i);
            }),
        },
        {
          name: 'idem.run, sqliteStore, replayCache on',
          baseline: 'raw node:sqlite',
          op: (i) =>
            cachedIdem.run(`replay:${i % REPLAY_KEYS}`, () => {
              replayRuns++;
              return send(i);
            }),
        },
      ],
      opts,
    );

    s.facts.push(
      `node:sqlite (SQLite ${String((raw.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v)}), ` +
        'both databases in one temp folder, WAL + synchronous NORMAL, one connection each, sequential calls',
    );
    s.tables.push(throughputTable('Fresh key: claim, run, complete', fresh));
    s.tables.push(throughputTable('Replay of a completed key', replay));
    const freshRatio = ratioOf(fresh.at(-1)!, fresh);
    const replayRatio = ratioOf(replay.find((r) => r.name === 'idem.run, sqliteStore')!, replay);
    const cachedRatio = ratioOf(replay.at(-1)!, replay);
    s.checks.push({
      target: 'fresh key: sqliteStore ≥ 85 % of raw node:sqlite',
      actual: fmtPct(freshRatio),
      met: freshRatio === undefined ? undefined : freshRatio >= 0.85,
    });
    s.checks.push({
      target: 'replay: sqliteStore ≥ 80 % of raw node:sqlite',
      actual: fmtPct(replayRatio),
      met: replayRatio === undefined ? undefined : replayRatio >= 0.8,
    });
    s.checks.push({
      target: 'replay with the opt-in replayCache: ≥ 80 % of raw node:sqlite',
      actual: fmtPct(cachedRatio),
      met: cachedRatio === undefined ? undefined : cachedRatio >= 0.8,
    });
    s.checks.push({
      target: 'replays never run the action',
      actual: `${replayRuns} runs during replay`,
      met: replayRuns === 0,
    });
    s.notes.push(
      '`replayCache on` is a second idem instance on the same store with `replayCache: true`: after one read from the store, a completed outcome is served from process memory until a margin before its expiry (completed records cannot change). It is off by default; the default row is the one the issue target is about.',
    );
    s.notes.push(
      'Raw binds the same parameters the store binds (random 43-character ids like the engine record ids, a 22-character token, the outcome string the engine stores for this action) and returns nothing.',
    );
    return s;
  } finally {
    await idem.close();
    raw.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

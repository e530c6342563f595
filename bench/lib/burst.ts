/**
 * The duplicate burst: `callers` concurrent calls with one fresh key, each through its own
 * library instance (so in-process single-flight cannot hide the store), repeated with new
 * keys. Counts how often the action ran per burst: exactly once is the point.
 *
 * @module
 */
import { summarize } from './measure.ts';
import { fmtOps, fmtUs, type Table } from './report.ts';
import { sleep } from './workload.ts';

export interface BurstCase {
  name: string;
  note?: string;
  /** One call: `caller` picks the instance; `action` must run at most once per key. */
  call: (key: string, caller: number, action: () => Promise<unknown>) => Promise<unknown>;
}

export interface BurstOptions {
  callers: number;
  /** How long the action takes (a real side effect is not instant). */
  actionMs: number;
  durationMs: number;
  rounds: number;
}

export interface BurstResult {
  name: string;
  note?: string | undefined;
  bursts: number;
  callsPerSec: number;
  burstP50Us: number;
  callP50Us: number;
  callP99Us: number;
  /** Executions of the action per burst: min and max over all bursts. */
  minExec: number;
  maxExec: number;
  /** Calls that rejected, by error name. */
  errors: Record<string, number>;
}

interface Tally {
  n: number;
  bursts: number;
  elapsedMs: number;
  burstUs: number[];
  callUs: number[];
  execs: number[];
  errors: Record<string, number>;
}

async function oneBurst(c: BurstCase, key: string, opts: BurstOptions, t: Tally) {
  let executions = 0;
  const action = async () => {
    executions++;
    await sleep(opts.actionMs);
    return { receipt: key, amount: 1240.55 };
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: opts.callers }, async (_, caller) => {
      const t0 = performance.now();
      try {
        await c.call(key, caller, action);
        t.callUs.push((performance.now() - t0) * 1000);
      } catch (error) {
        const name = (error as Error)?.name ?? 'Error';
        t.errors[name] = (t.errors[name] ?? 0) + 1;
      }
    }),
  );
  t.burstUs.push((performance.now() - started) * 1000);
  t.execs.push(executions);
  t.bursts++;
}

/**
 * Runs the burst cases interleaved, each for `durationMs` in `rounds` slices.
 *
 * @example
 * const results = await burst([{ name: 'idem', call }], { callers: 100, actionMs: 5, durationMs: 2000, rounds: 2 });
 */
export async function burst(cases: BurstCase[], prefix: string, opts: BurstOptions): Promise<BurstResult[]> {
  const tallies = cases.map(
    (): Tally => ({ n: 0, bursts: 0, elapsedMs: 0, burstUs: [], callUs: [], execs: [], errors: {} }),
  );
  // warm-up: one unrecorded burst each
  for (const [k, c] of cases.entries()) {
    await oneBurst(c, `${prefix}:warm:${k}`, opts, {
      ...tallies[k]!,
      burstUs: [],
      callUs: [],
      execs: [],
      errors: {},
    });
  }
  const slice = opts.durationMs / opts.rounds;
  for (let r = 0; r < opts.rounds; r++) {
    for (let j = 0; j < cases.length; j++) {
      const k = (j + r) % cases.length;
      const t = tallies[k]!;
      const started = performance.now();
      do await oneBurst(cases[k]!, `${prefix}:${k}:${t.n++}`, opts, t);
      while (performance.now() - started < slice);
      t.elapsedMs += performance.now() - started;
    }
  }
  return cases.map((c, k) => {
    const t = tallies[k]!;
    const calls = summarize(t.callUs);
    return {
      name: c.name,
      note: c.note,
      bursts: t.bursts,
      callsPerSec: (t.bursts * opts.callers) / (t.elapsedMs / 1000),
      burstP50Us: summarize(t.burstUs).p50Us,
      callP50Us: calls.p50Us,
      callP99Us: calls.p99Us,
      minExec: Math.min(...t.execs),
      maxExec: Math.max(...t.execs),
      errors: t.errors,
    };
  });
}

export function burstTable(title: string, results: BurstResult[], opts: BurstOptions): Table {
  return {
    title,
    columns: [
      'implementation',
      'bursts',
      'calls/s',
      'burst p50',
      'call p50',
      'call p99',
      'executions per burst',
      'rejected calls',
    ],
    rows: results.map((r) => [
      r.note ? `${r.name} (${r.note})` : r.name,
      String(r.bursts),
      fmtOps(r.callsPerSec),
      fmtUs(r.burstP50Us),
      fmtUs(r.callP50Us),
      fmtUs(r.callP99Us),
      r.minExec === r.maxExec ? String(r.minExec) : `${r.minExec}–${r.maxExec}`,
      Object.keys(r.errors).length
        ? Object.entries(r.errors)
            .map(([k, v]) => `${v} ${k}`)
            .join(', ')
        : `0 of ${r.bursts * opts.callers}`,
    ]),
  };
}

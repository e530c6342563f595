/**
 * The chaos checker: reads the delivery history and the side-effect ledgers of a run and
 * counts what must be zero.
 *
 * - **duplicate effects**: a library op's effect more than once, except runs that were told
 *   `mayHaveRun` (a takeover after a holder died or froze: at least once, said so); an
 *   upstream effect more than once for a gateway op (the gateway is at most once by default).
 * - **lost outcomes**: an op whose final delivery, on a healthy system, got no answer.
 * - **conflicting outcomes**: one op answered with two different successful values (library),
 *   or two different 2xx responses (gateway).
 * - **stuck keys**: library records still in progress after the final pass.
 *
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type Layer = 'lib' | 'inbox' | 'workflow' | 'http';

export interface Delivery {
  op: number;
  layer: Layer;
  final: boolean;
  ok: boolean;
  value?: string;
  replayed?: boolean;
  error?: string;
}

export interface ChaosReport {
  store: string;
  seed: number;
  ops: number;
  deliveries: number;
  answered: number;
  replays: number;
  effects: number;
  takeovers: number;
  duplicateEffects: number;
  toldMayHaveRun: number;
  lostOutcomes: number;
  conflictingOutcomes: number;
  stuckKeys: number;
  /** Processes that died without being killed (an unhandled error): must be 0. */
  crashes: number;
  faults: Record<string, number>;
  errors: Record<string, number>;
  durationMs: number;
  examples: string[];
}

interface RunFacts {
  store: string;
  seed: number;
  ops: number;
  layers: Layer[];
  deliveries: Delivery[];
  ledgerDir: string;
  upstreamLedger: { op: number; n: number }[];
  stuck: number[];
  crashes: string[];
  faults: Record<string, number>;
  durationMs: number;
}

export function checkRun(f: RunFacts): ChaosReport {
  const examples: string[] = [];
  const note = (s: string) => examples.length < 10 && examples.push(s);
  /** Effects by what acted: `lib-<op>`, `inbox-<op>`, `wf-<op>-<step>`. */
  const effects = new Map<string, { mayHaveRun: boolean }[]>();
  for (const file of readdirSync(f.ledgerDir).filter((n) => n.startsWith('ledger-'))) {
    for (const line of readFileSync(join(f.ledgerDir, file), 'utf8').split('\n')) {
      if (!line) continue;
      let e: { key: string; mayHaveRun: boolean };
      try {
        e = JSON.parse(line);
      } catch {
        continue; // a line cut by SIGKILL mid-write: the effect did not finish being recorded
      }
      effects.set(e.key, [...(effects.get(e.key) ?? []), e]);
    }
  }
  let duplicateEffects = 0;
  let toldMayHaveRun = 0;
  let takeovers = 0;
  for (const [key, list] of effects) {
    const told = list.filter((e) => e.mayHaveRun).length;
    takeovers += told;
    toldMayHaveRun += Math.min(told, list.length - 1);
    const untold = list.length - told;
    if (untold > 1) {
      duplicateEffects += untold - 1;
      note(`${key}: ${untold} effects without mayHaveRun`);
    }
  }
  const upstream = new Map<number, number>();
  for (const e of f.upstreamLedger) upstream.set(e.op, (upstream.get(e.op) ?? 0) + 1);
  for (const [op, n] of upstream) {
    if (n > 1) {
      duplicateEffects += n - 1;
      note(`gateway op ${op}: upstream executed ${n} times`);
    }
  }

  let lostOutcomes = 0;
  let conflictingOutcomes = 0;
  const byOp = new Map<number, Delivery[]>();
  for (const d of f.deliveries) byOp.set(d.op, [...(byOp.get(d.op) ?? []), d]);
  for (let op = 0; op < f.ops; op++) {
    const list = byOp.get(op) ?? [];
    if (!list.some((d) => d.final && d.ok)) {
      lostOutcomes++;
      note(
        `op ${op} (${f.layers[op]}): the final delivery got no answer: ${list
          .filter((d) => d.final)
          .map((d) => d.error)
          .join(', ')}`,
      );
    }
    const values = new Set(
      list.filter((d) => d.ok && (f.layers[op] !== 'http' || d.value?.startsWith('2'))).map((d) => d.value),
    );
    if (values.size > 1) {
      conflictingOutcomes++;
      note(
        `op ${op} (${f.layers[op]}): ${values.size} different answers: ${[...values].join(' | ').slice(0, 300)}`,
      );
    }
  }
  const errors: Record<string, number> = {};
  for (const d of f.deliveries) if (!d.ok) errors[d.error ?? '?'] = (errors[d.error ?? '?'] ?? 0) + 1;
  for (const op of f.stuck.slice(0, 3)) note(`op ${op}: still in progress after the final pass`);
  for (const c of f.crashes.slice(0, 3)) note(c.slice(0, 400));
  return {
    store: f.store,
    seed: f.seed,
    ops: f.ops,
    deliveries: f.deliveries.length,
    answered: f.deliveries.filter((d) => d.ok).length,
    replays: f.deliveries.filter((d) => d.replayed).length,
    effects: [...effects.values()].reduce((n, l) => n + l.length, 0) + f.upstreamLedger.length,
    takeovers,
    duplicateEffects,
    toldMayHaveRun,
    lostOutcomes,
    conflictingOutcomes,
    stuckKeys: f.stuck.length,
    crashes: f.crashes.length,
    faults: f.faults,
    errors,
    durationMs: f.durationMs,
    examples,
  };
}

/** One line per store, then the examples of anything that is not zero. */
export function formatReport(r: ChaosReport): string {
  const faults = Object.entries(r.faults)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `[chaos ${r.store}] seed ${r.seed}: ${r.ops} ops, ${r.deliveries} deliveries (${r.answered} answered, ${r.replays} replays), ${r.effects} effects, ${r.takeovers} takeovers told mayHaveRun, in ${(r.durationMs / 1000).toFixed(1)} s`,
    `  duplicate effects ${r.duplicateEffects}, lost outcomes ${r.lostOutcomes}, conflicting outcomes ${r.conflictingOutcomes}, stuck keys ${r.stuckKeys}, crashed processes ${r.crashes}`,
    `  faults: ${faults || 'none'}`,
    `  delivery errors (retried): ${JSON.stringify(r.errors)}`,
    ...r.examples.map((e) => `  ! ${e}`),
  ].join('\n');
}

/** True when every count that must be zero is. */
export const clean = (r: ChaosReport) =>
  r.duplicateEffects === 0 &&
  r.lostOutcomes === 0 &&
  r.conflictingOutcomes === 0 &&
  r.stuckKeys === 0 &&
  r.crashes === 0;

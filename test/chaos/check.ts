/**
 * The chaos checker: reads the delivery history and the side-effect ledgers of a run and
 * counts what must be zero.
 *
 * - **duplicate effects**: a library op's effect more than once, except runs that were told
 *   `mayHaveRun` (a takeover after a holder died or froze: at least once, said so); an
 *   upstream effect more than once for a gateway op (the gateway is at most once by default).
 * - **premature takeovers**: a run told `mayHaveRun` whose earlier holder was alive and able to
 *   renew its lease. Each takeover is put down to the first cause that explains it, from the
 *   harness's own record of the signals it sent and the workers' ledgers:
 *   - `holder-killed`: the earlier holder got SIGKILL between its effect and the takeover;
 *   - `holder-frozen`: it was SIGSTOPped for part of that time;
 *   - `holder-finished`: its action had returned before the takeover, but its outcome was
 *     never stored (the store was down or cut off while it completed), so nobody held the key;
 *     or its call had failed before the takeover (a takeover that fails releases its record,
 *     which the next claim takes over at once, `mayHaveRun`);
 *   - `renewal-unconfirmed`: it was told its lease ran out unconfirmed — a renewal failed or
 *     hung past the lease (store restart, cut connection, a store too slow to answer);
 *     idem measures the lease from when a renew was sent, so the holder knows no later than
 *     the store does;
 *   - `store-fault`: the store server was restarted or cut its connections while the holder
 *     held the key (from a lease before its effect), so it could not renew;
 *   - `holder-stalled`: its event loop stood still for a third of the lease or more in that
 *     time (a starved CPU), so its heartbeat could not renew in time;
 *   Each of kill, freeze, end, fault and stall must come a quarter lease or more before the
 *   takeover: a holder renews every lease/3, so its lease outlives its last renewal by 2/3 of
 *   a lease, and a takeover sooner than that was not caused by it;
 *   - `no-earlier-effect`: no earlier effect on that key in the ledgers (the holder died
 *     before acting), so nothing was duplicated;
 *   - anything else is `premature`: a live, running holder lost its lease (a clock skew
 *     beyond what the store allows for, a lease that is not renewed) — a failure.
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
  /** Takeovers by what explains them; `premature` must be 0. */
  takeoversByCause: Partial<Record<TakeoverCause, number>>;
  prematureTakeovers: number;
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

/** A signal the harness sent to a worker process, on the harness's (true) clock. */
export interface SentSignal {
  pid: number;
  kind: 'kill' | 'stop' | 'cont';
  at: number;
}

/** Why a run was told `mayHaveRun` (see the module comment). */
export type TakeoverCause =
  | 'holder-killed'
  | 'holder-frozen'
  | 'holder-finished'
  | 'renewal-unconfirmed'
  | 'store-fault'
  | 'holder-stalled'
  | 'no-earlier-effect'
  | 'premature';

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
  /** The lease the workers use (a stall of a third of it can lose it). */
  leaseMs: number;
  /** Every SIGKILL, SIGSTOP and SIGCONT the harness sent a worker. */
  signals: SentSignal[];
  /** When the store server was restarted or its connections cut. */
  storeFaults: number[];
}

interface Effect {
  key: string;
  pid: number;
  attempt: number;
  mayHaveRun: boolean;
  at: number;
}
interface Ledgers {
  effects: Map<string, Effect[]>;
  /** `key pid` → when the action returned / when the holder was told it lost the lease, and why. */
  ends: Map<string, number[]>;
  lost: Map<string, { reason: string; at: number }[]>;
  /** `key pid` → when the call failed (its record released, or left to expire). */
  failed: Map<string, number[]>;
  stalls: Map<number, [number, number][]>;
}

function readLedgers(dir: string): Ledgers {
  const l: Ledgers = {
    effects: new Map(),
    ends: new Map(),
    lost: new Map(),
    failed: new Map(),
    stalls: new Map(),
  };
  const push = <K, V>(m: Map<K, V[]>, k: K, v: V) => m.set(k, [...(m.get(k) ?? []), v]);
  for (const file of readdirSync(dir).filter((n) => n.startsWith('ledger-'))) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (!line) continue;
      let e: Effect & { end?: true; lost?: string; failed?: string; stall?: [number, number] };
      try {
        e = JSON.parse(line);
      } catch {
        continue; // a line cut by SIGKILL mid-write: the effect did not finish being recorded
      }
      if (e.stall) push(l.stalls, e.pid, e.stall);
      else if (e.end) push(l.ends, `${e.key} ${e.pid}`, e.at);
      else if (e.failed) push(l.failed, `${e.key} ${e.pid}`, e.at);
      else if (e.lost) push(l.lost, `${e.key} ${e.pid}`, { reason: e.lost, at: e.at });
      else push(l.effects, e.key, e);
    }
  }
  for (const list of l.effects.values()) list.sort((a, b) => a.at - b.at);
  return l;
}

/**
 * What explains `taker`'s takeover of the key from the holder of the effect before it. A holder
 * renews every lease/3, so its lease lasts at least 2/3 of a lease past the moment it stopped
 * renewing: a kill, a freeze, a stall or an end counts only if it came a quarter lease or more
 * before the takeover (the rest of the margin is for renew latency).
 */
/** How long a signalled process may still write after the harness noted the signal. */
const SIGNAL_SLACK_MS = 50;

function causeOf(taker: Effect, list: Effect[], l: Ledgers, f: RunFacts): TakeoverCause {
  const holder = list.filter((e) => e !== taker && e.at <= taker.at).at(-1);
  if (!holder) return 'no-earlier-effect';
  const from = holder.at;
  const before = taker.at - f.leaseMs / 4;
  const sent = f.signals.filter((s) => s.pid === holder.pid);
  // the harness notes a signal just before sending it: the holder may still write a line or two
  // (its effect) in between, so a kill up to SIGNAL_SLACK_MS before the effect still ended it
  if (sent.some((s) => s.kind === 'kill' && s.at >= from - SIGNAL_SLACK_MS && s.at <= before))
    return 'holder-killed';
  for (const s of sent.filter((x) => x.kind === 'stop')) {
    const cont = sent.find((x) => x.kind === 'cont' && x.at >= s.at)?.at ?? Number.POSITIVE_INFINITY;
    if (s.at <= before && cont >= from) return 'holder-frozen';
  }
  const id = `${holder.key} ${holder.pid}`;
  if ((l.ends.get(id) ?? []).some((at) => at >= from && at <= before)) return 'holder-finished';
  // a call that failed released its record (or left it to expire): taken over at once, no lease to wait for
  if ((l.failed.get(id) ?? []).some((at) => at >= from && at <= taker.at)) return 'holder-finished';
  if ((l.lost.get(id) ?? []).some((x) => x.reason === 'unconfirmed' && x.at >= from))
    return 'renewal-unconfirmed';
  if (f.storeFaults.some((at) => at >= from - f.leaseMs && at <= before)) return 'store-fault';
  const stalls = l.stalls.get(holder.pid) ?? [];
  if (stalls.some(([a, b]) => b - a >= f.leaseMs / 3 && a <= before && b >= from)) return 'holder-stalled';
  return 'premature';
}

export function checkRun(f: RunFacts): ChaosReport {
  const examples: string[] = [];
  const note = (s: string) => examples.length < 10 && examples.push(s);
  /** Effects by what acted: `lib-<op>`, `inbox-<op>`, `wf-<op>-<step>`. */
  const ledgers = readLedgers(f.ledgerDir);
  const effects = ledgers.effects;
  let duplicateEffects = 0;
  let toldMayHaveRun = 0;
  let takeovers = 0;
  const takeoversByCause: Partial<Record<TakeoverCause, number>> = {};
  for (const [key, list] of effects) {
    const told = list.filter((e) => e.mayHaveRun);
    takeovers += told.length;
    for (const taker of told) {
      const cause = causeOf(taker, list, ledgers, f);
      takeoversByCause[cause] = (takeoversByCause[cause] ?? 0) + 1;
      if (cause === 'premature')
        note(
          `${key}: premature takeover by pid ${taker.pid} of a live holder (not killed, frozen or stalled)`,
        );
    }
    toldMayHaveRun += Math.min(told.length, list.length - 1);
    const untold = list.length - told.length;
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
    takeoversByCause,
    prematureTakeovers: takeoversByCause.premature ?? 0,
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
  const list = (o: Record<string, number | undefined>) =>
    Object.entries(o)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const faults = list(r.faults);
  return [
    `[chaos ${r.store}] seed ${r.seed}: ${r.ops} ops, ${r.deliveries} deliveries (${r.answered} answered, ${r.replays} replays), ${r.effects} effects, ${r.takeovers} takeovers told mayHaveRun, in ${(r.durationMs / 1000).toFixed(1)} s`,
    `  takeovers by cause: ${list(r.takeoversByCause) || 'none'}`,
    `  duplicate effects ${r.duplicateEffects}, premature takeovers ${r.prematureTakeovers}, lost outcomes ${r.lostOutcomes}, conflicting outcomes ${r.conflictingOutcomes}, stuck keys ${r.stuckKeys}, crashed processes ${r.crashes}`,
    `  faults: ${faults || 'none'}`,
    `  delivery errors (retried): ${JSON.stringify(r.errors)}`,
    ...r.examples.map((e) => `  ! ${e}`),
  ].join('\n');
}

/** True when every count that must be zero is. */
export const clean = (r: ChaosReport) =>
  r.duplicateEffects === 0 &&
  r.prematureTakeovers === 0 &&
  r.lostOutcomes === 0 &&
  r.conflictingOutcomes === 0 &&
  r.stuckKeys === 0 &&
  r.crashes === 0;

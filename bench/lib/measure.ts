/**
 * The timing harness: competitors of one workload run interleaved in the same process, each
 * for the same number of equal segments, rotating the order every round so no one always
 * runs first (cold) or last (warm). Latency is taken per operation with `performance.now()`.
 *
 * ```
 * warm-up A, B, C      round 1: A B C     round 2: B C A     round 3: C A B
 * ```
 *
 * @module
 */

/**
 * One competitor: `op(i)` does operation number `i` (unique per case, increasing), in this
 * process; or `remote` runs each segment in another process (bench/lib/isolated.ts).
 */
export interface Case {
  name: string;
  /** Sync ops are not awaited, so a raw synchronous baseline pays no promise tick. */
  op?: (i: number) => unknown;
  /** Runs one segment elsewhere and answers what it counted (its process's CPU included). */
  remote?: (concurrency: number, ms: number, record: boolean) => Promise<SegmentCount>;
  /** The baseline this case is compared with (its name), when there is one. */
  baseline?: string;
  /** Extra words for the table, e.g. what the implementation does beyond the baseline. */
  note?: string;
}

/** What one case measured. Latencies are microseconds. */
export interface CaseResult {
  name: string;
  baseline?: string | undefined;
  note?: string | undefined;
  concurrency: number;
  ops: number;
  elapsedMs: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** CPU time of this process (user + system) per operation, in microseconds. */
  cpuUs: number;
  errors: number;
  firstError?: string | undefined;
}

export interface MeasureOptions {
  /** Callers running at once, each awaiting its own operations one after another. */
  concurrency: number;
  /** Measured time per case, split evenly over `rounds`. */
  durationMs: number;
  rounds: number;
  /** Unrecorded time per case before the first round. */
  warmupMs: number;
}

/** A growable list of latencies in microseconds. */
class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;
  push(v: number) {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

interface Tally {
  next: number;
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  cpuUs: number;
  samples: Samples;
}

/** What one segment counted: sent back by a process that runs a case on its own. */
export interface SegmentCount {
  ops: number;
  errors: number;
  firstError?: string | undefined;
  elapsedMs: number;
  cpuUs: number;
  samples: Float64Array;
}

/**
 * Runs `op` with `concurrency` callers for `ms` in this process and answers what it counted
 * (nothing but errors when `record` is off): what a child process runs for a remote case.
 *
 * @example
 * const count = await runSegment((i) => client.get(`k${i}`), 16, 1000, true, 0);
 */
export async function runSegment(
  op: (i: number) => unknown,
  concurrency: number,
  ms: number,
  record: boolean,
  first: number,
): Promise<SegmentCount & { next: number }> {
  const tally: Tally = { next: first, ops: 0, errors: 0, elapsedMs: 0, cpuUs: 0, samples: new Samples() };
  await segment({ name: '', op }, concurrency, ms, tally, record);
  const { next, ops, errors, firstError, elapsedMs, cpuUs } = tally;
  return { next, ops, errors, firstError, elapsedMs, cpuUs, samples: tally.samples.sorted() };
}

/** Runs `c` with `concurrency` callers for `ms`, adding to `tally` when `record` is set. */
async function segment(c: Case, concurrency: number, ms: number, tally: Tally, record: boolean) {
  if (c.remote) {
    const r = await c.remote(concurrency, ms, record);
    tally.errors += r.errors;
    tally.firstError ??= r.firstError;
    if (record) {
      tally.ops += r.ops;
      tally.elapsedMs += r.elapsedMs;
      tally.cpuUs += r.cpuUs;
      for (const v of r.samples) tally.samples.push(v);
    }
    return;
  }
  const op = c.op!;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const end = started + ms;
  const caller = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      const i = tally.next++;
      try {
        const r = op(i);
        if (isThenable(r)) await r;
        if (record) {
          tally.samples.push((performance.now() - t0) * 1000);
          tally.ops++;
        }
      } catch (error) {
        tally.errors++;
        tally.firstError ??= String((error as Error)?.stack ?? error);
        // a failing op must not spin the loop at full speed
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  if (record) {
    tally.elapsedMs += performance.now() - started;
    const used = process.cpuUsage(cpu);
    tally.cpuUs += used.user + used.system;
  }
}

/**
 * Measures every case of one workload, interleaved.
 *
 * @example
 * const [raw, store] = await measure([{ name: 'raw', op: rawOp }, { name: 'store', op }], opts);
 */
export async function measure(cases: Case[], opts: MeasureOptions): Promise<CaseResult[]> {
  const tallies = cases.map(
    (): Tally => ({ next: 0, ops: 0, errors: 0, elapsedMs: 0, cpuUs: 0, samples: new Samples() }),
  );
  for (const [k, c] of cases.entries()) await segment(c, opts.concurrency, opts.warmupMs, tallies[k]!, false);
  const slice = opts.durationMs / opts.rounds;
  for (let r = 0; r < opts.rounds; r++) {
    for (let j = 0; j < cases.length; j++) {
      const k = (j + r) % cases.length;
      await segment(cases[k]!, opts.concurrency, slice, tallies[k]!, true);
    }
  }
  return cases.map((c, k) => {
    const t = tallies[k]!;
    const sorted = t.samples.sorted();
    return {
      name: c.name,
      baseline: c.baseline,
      note: c.note,
      concurrency: opts.concurrency,
      ops: t.ops,
      elapsedMs: t.elapsedMs,
      opsPerSec: t.ops / (t.elapsedMs / 1000),
      p50Us: quantile(sorted, 0.5),
      p99Us: quantile(sorted, 0.99),
      cpuUs: t.cpuUs / t.ops,
      errors: t.errors,
      firstError: t.firstError,
    };
  });
}

/** Throughput of `r` over its baseline in `all`, or undefined without one. */
export function ratioOf(r: CaseResult, all: CaseResult[]): number | undefined {
  if (!r.baseline) return undefined;
  const base = all.find((x) => x.name === r.baseline && x.concurrency === r.concurrency);
  return base ? r.opsPerSec / base.opsPerSec : undefined;
}

/** Latency summary of a list of microsecond samples. */
export function summarize(samplesUs: number[]): { p50Us: number; p99Us: number } {
  const sorted = Float64Array.from(samplesUs).sort();
  return { p50Us: quantile(sorted, 0.5), p99Us: quantile(sorted, 0.99) };
}

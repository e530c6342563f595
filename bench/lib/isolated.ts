/**
 * Competitors in processes of their own. In one process, one client's garbage, timers and
 * sockets slow the next (an earlier Redis run measured `idem.run` at 76 µs of CPU per call
 * among six other clients and 41–50 µs alone), so a section can run each implementation in a
 * child (bench/lib/case-child.ts) and still interleave their segments from here: the parent
 * asks a child to run one segment at a time, so only one competitor works at any moment.
 *
 * ```
 * parent: measure() ── segment(case A) ──► child A: runSegment(op) ── counts ──►
 *                  ── segment(case B) ──► child B …
 * ```
 *
 * @module
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Case, SegmentCount } from './measure.ts';

const CHILD = new URL('./case-child.ts', import.meta.url).pathname;

/** What a case module exports: builds one implementation from JSON-able args. */
export type CaseFactory = (args: never) => Promise<CaseSet>;

/** One implementation, built in the child: its operations by name, and its clean-up. */
export interface CaseSet {
  ops: Record<string, (i: number) => unknown>;
  /** How many times an action ran (a replay workload must leave it unchanged). */
  actionRuns?: () => number;
  close(): Promise<void>;
}

/** Parent → child. */
export type ToChild =
  | { id: number; kind: 'segment'; op: string; concurrency: number; ms: number; record: boolean }
  | { id: number; kind: 'runs' }
  | { id: number; kind: 'close' };
/** Child → parent. */
export type FromChild =
  | { kind: 'ready'; ops: string[] }
  | { kind: 'failed'; error: string }
  | { id: number; kind: 'result'; value: unknown }
  | { id: number; kind: 'error'; error: string };

/** A child process holding one implementation. */
export interface Isolated {
  /** A measure() case whose segments run op `op` in the child. */
  case(op: string, meta: Omit<Case, 'op' | 'remote'>): Case;
  actionRuns(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Forks a child that builds `exportName` of `module` with `args` and waits until it is ready.
 *
 * @example
 * const idem = await startIsolated(new URL('../sections/redis-cases.ts', import.meta.url), 'redisCase', { impl: 'idem' });
 * await measure([idem.case('fresh', { name: 'idem.run' })], opts);
 */
export function startIsolated(module: URL, exportName: string, args: unknown): Promise<Isolated> {
  const proc: ChildProcess = fork(CHILD, [module.pathname, exportName, JSON.stringify(args)], {
    execArgv: ['--conditions=idem-source'],
    serialization: 'advanced',
    stdio: 'inherit',
  });
  const what = `${exportName}(${JSON.stringify(args)})`;
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const ask = (
    msg: ToChild extends infer T ? (T extends unknown ? Omit<T, 'id'> : never) : never,
  ): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      proc.send({ ...msg, id });
    });
  proc.on('message', (m: FromChild) => {
    if (!('id' in m)) return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.kind === 'result') p?.resolve(m.value);
    else p?.reject(new Error(`${what}: ${m.error}`));
  });
  proc.once('exit', (code) => {
    // a child that dies mid-run fails the section instead of hanging it
    for (const p of pending.values()) p.reject(new Error(`${what} exited with ${code}`));
    pending.clear();
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`${what} exited with ${code} before it was ready`));
    proc.once('exit', onExit);
    proc.on('message', (m: FromChild) => {
      if (m.kind === 'failed') reject(new Error(`${what}: ${m.error}`));
      if (m.kind !== 'ready') return;
      proc.off('exit', onExit);
      resolve({
        case: (op, meta) => {
          if (!m.ops.includes(op)) throw new Error(`${what} has no op "${op}" (it has ${m.ops.join(', ')})`);
          return {
            ...meta,
            remote: (concurrency, ms, record) =>
              ask({ kind: 'segment', op, concurrency, ms, record }) as Promise<SegmentCount>,
          };
        },
        actionRuns: () => ask({ kind: 'runs' }) as Promise<number>,
        close: async () => {
          if (proc.exitCode !== null) return;
          const gone = new Promise((r) => proc.once('exit', r));
          await ask({ kind: 'close' }).catch(() => {});
          await gone;
        },
      });
    });
  });
}

/**
 * `idem serve --workers N`: N gateway processes (node:cluster) listening on one port and
 * sharing one store. The primary only supervises: it forks the workers, prints the URL once,
 * restarts a worker that dies (with backoff), relays record changes between workers
 * (cluster-wake.ts), gathers admin data from all of them (cluster-admin.ts), and on SIGTERM /
 * SIGINT asks every worker to drain and waits for them.
 *
 * ```
 * primary ── fork ──▶ worker 1..N: createGateway(), listen(port) ── ready(url) ──▶ primary
 *                     a start-up failure ── fatal(line, code) ──▶ primary prints it once, exits code
 * ```
 *
 * Connections are spread by the primary (node:cluster's round-robin on Linux): a kept-alive
 * connection is handed to a worker once, then all its requests go straight to that worker.
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import type { AdminSource } from './admin-source.ts';
import { clusterAdminSource } from './cluster-admin.ts';
import { CHANGED } from './cluster-wake.ts';

/** Marks a process forked by {@link startWorkers}. */
export const WORKER_ENV = 'IDEM_SERVE_WORKER';
const READY = 'idem:ready';
const FATAL = 'idem:fatal';
const SHUTDOWN = 'idem:shutdown';

/** Options of {@link startWorkers}. */
export interface WorkersOptions {
  /** Worker processes. At least 1. */
  workers: number;
  /** The script each worker runs, and its arguments. Default: this process's script and arguments. */
  exec?: string;
  args?: string[];
  /** Extra environment of the workers. */
  env?: Record<string, string>;
  /** Where restarts and crashes are reported. Default `console.error`. */
  log?: (line: string) => void;
  /** First restart delay, doubled after each crash in a row up to 10 s. Default 250 ms. */
  restartDelayMs?: number;
  /**
   * Start-up failures in a row (a restarted worker that dies before listening) before giving up,
   * counted only while no other worker listens: as long as one serves, replacements keep being
   * tried (every 10 s at most), so a store that is down for a while does not stop a gateway that
   * still answers. Default 5.
   */
  maxStartFailures?: number;
  /** Longest wait for the workers to drain on `close()` before they are killed. Default 30 s. */
  drainTimeoutMs?: number;
}

/** A running set of workers. */
export interface Workers {
  /** The URL the workers listen on. */
  readonly url: string;
  /** Every worker's admin data in one view (for the admin listener). */
  readonly admin: AdminSource;
  /** The pids of the workers that listen (a replacement appears once it listens). */
  pids(): number[];
  /** Asks every worker to drain, waits (then kills), answers the exit code for the primary. */
  close(): Promise<number>;
  /** Resolves with a non-zero exit code when restarted workers keep failing at start-up. */
  readonly failed: Promise<number>;
}

/** An error a worker reported before listening, already phrased for the terminal. */
export type WorkerStartError = Error & { exitCode: number };

const startError = (message: string, exitCode: number): WorkerStartError =>
  Object.assign(new Error(message), { exitCode });

/**
 * Forks `workers` processes and resolves once all of them listen. A worker that fails before
 * listening (bad config, store down, port in use) rejects it with that worker's message; the
 * others are stopped.
 *
 * @example
 * if (cluster.isPrimary) {
 *   const workers = await startWorkers({ workers: 4 });
 *   console.log(`idem gateway ${workers.url}`);
 *   process.on('SIGTERM', () => workers.close().then((code) => process.exit(code)));
 * } else {
 *   // createGateway(…); listen; reportReady(url)
 * }
 */
export async function startWorkers(options: WorkersOptions): Promise<Workers> {
  const count = options.workers;
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`workers must be an integer ≥ 1, got ${count}`);
  const log = options.log ?? ((line: string) => console.error(line));
  const firstDelay = options.restartDelayMs ?? 250;
  const maxStartFailures = options.maxStartFailures ?? 5;
  cluster.setupPrimary({
    ...(options.exec !== undefined && { exec: options.exec }),
    ...(options.args !== undefined && { args: options.args }),
  });
  const admin = clusterAdminSource();
  const live = new Set<Worker>();
  /** Workers that listen (and drain on SHUTDOWN); one still starting is stopped with SIGTERM. */
  const listening = new WeakSet<Worker>();
  let stopping = false;
  let startFailures = 0;
  let delay = firstDelay;
  let resolveFailed: (code: number) => void = () => {};
  const failed = new Promise<number>((r) => (resolveFailed = r));

  const relay = (from: Worker, m: { idem?: string; id?: string }) => {
    if (m?.idem !== CHANGED) return;
    for (const w of live) if (w !== from && w.isConnected()) w.send(m);
  };
  cluster.on('message', relay);

  /** Forks one worker; resolves with its URL once it listens, rejects if it fails first. */
  const fork = () =>
    new Promise<string>((resolve, reject) => {
      const worker = cluster.fork({ ...options.env, [WORKER_ENV]: '1' });
      live.add(worker);
      let ready = false;
      let fatal: WorkerStartError | undefined;
      worker.on('message', (m: { idem?: string; url?: string; line?: string; exitCode?: number }) => {
        if (m?.idem === READY && typeof m.url === 'string') {
          ready = true;
          listening.add(worker);
          resolve(m.url);
        } else if (m?.idem === FATAL)
          fatal = startError(String(m.line).replace(/^idem: /, ''), m.exitCode ?? 1);
      });
      worker.once('exit', (code, signal) => {
        live.delete(worker);
        if (!ready) {
          return reject(
            fatal ?? startError(`a gateway worker exited before listening (${signal ?? `code ${code}`})`, 1),
          );
        }
        if (!stopping)
          restart(`gateway worker ${worker.process.pid} exited unexpectedly (${signal ?? `code ${code}`})`);
      });
    });

  /** Forks a replacement after `delay`; `why` says what happened to the one it replaces. */
  const restart = (why: string) => {
    log(`idem: ${why}; starting another in ${delay} ms`);
    const wait = delay;
    delay = Math.min(delay * 2, 10_000);
    setTimeout(() => {
      if (stopping) return;
      fork().then(
        () => {
          startFailures = 0;
          delay = firstDelay;
        },
        (error: WorkerStartError) => {
          const why = `a restarted gateway worker failed at start-up: ${error.message}`;
          const serving = [...live].some((w) => listening.has(w) && !w.isDead());
          if (++startFailures < maxStartFailures || serving) return restart(why);
          log(`idem: ${why}\nidem: ${startFailures} restarted workers in a row failed at start-up; stopping`);
          void close().then(() => resolveFailed(1));
        },
      );
    }, wait).unref();
  };

  const close = async (): Promise<number> => {
    stopping = true;
    const exits = [...live].map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          const timer = setTimeout(() => w.kill('SIGKILL'), options.drainTimeoutMs ?? 30_000);
          w.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          if (listening.has(w) && w.isConnected()) w.send({ idem: SHUTDOWN });
          else w.process.kill('SIGTERM');
        }),
    );
    await Promise.all(exits);
    cluster.off('message', relay);
    admin.stop();
    return 0;
  };

  const started = await Promise.allSettled(Array.from({ length: count }, fork));
  const failure = started.find((s) => s.status === 'rejected');
  if (failure) {
    await close();
    throw failure.reason;
  }
  return {
    url: (started[0] as PromiseFulfilledResult<string>).value,
    admin,
    pids: () => [...live].filter((w) => listening.has(w)).map((w) => w.process.pid as number),
    close,
    failed,
  };
}

/** True in a process forked by {@link startWorkers}. */
export function isServeWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === '1';
}

/**
 * In a worker: tells the primary it listens on `url`.
 *
 * @example
 * reportReady(await gateway.listen());
 */
export function reportReady(url: string): void {
  process.send?.({ idem: READY, url });
}

/**
 * In a worker: tells the primary why it could not start (printed once by the primary), then
 * resolves once the message is sent.
 *
 * @example
 * await reportFatal('idem: 127.0.0.1:8080 is already in use (EADDRINUSE)', 1);
 */
export function reportFatal(line: string, exitCode: number): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send({ idem: FATAL, line, exitCode }, undefined, {}, () => resolve());
  });
}

/**
 * In a worker: runs `drain` once when the primary asks it to stop (or on SIGTERM / SIGINT,
 * which a terminal's Ctrl-C sends to every process of the group), then exits 0.
 *
 * @example
 * onShutdown(() => gateway.close());
 */
export function onShutdown(drain: () => Promise<void>): void {
  let draining = false;
  const stop = () => {
    if (draining) return;
    draining = true;
    void drain().then(
      () => process.exit(0),
      (error) => {
        console.error(
          `idem: gateway worker ${process.pid} did not close cleanly: ${error?.message ?? error}`,
        );
        process.exit(1);
      },
    );
  };
  process.on('message', (m: { idem?: string }) => m?.idem === SHUTDOWN && stop());
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // the primary is gone (killed): do not linger as an orphan
  process.on('disconnect', stop);
}

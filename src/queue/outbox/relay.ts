/**
 * The relay: claims due events in batches, hands them to a publisher, marks what the broker
 * confirmed and writes failures back (retry with backoff, or park after `maxAttempts`).
 *
 * ```
 * loop: claim ≤ batchSize (lease) ─▶ publish (abort at publishTimeout) ─▶ mark published
 *          │ nothing due                                   └─▶ failed: retry at now + backoff(attempts)
 *          ▼                                                          or park (attempts ≥ maxAttempts, or 4xx-like)
 *       wait for NOTIFY (Postgres) or `poll`, whichever comes first
 * stop(): no new claim; the in-flight batch is published and marked; then it resolves
 * ```
 *
 * A relay that dies between publish and mark leaves its rows leased; after the lease they
 * are claimed again and published again with the same id, which the broker (dedup window)
 * or the consumer's inbox drops. Several relays may run at once: claims never overlap.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { toMs } from '../../core/duration.ts';
import { InvalidOptionError } from '../../core/errors.ts';
import { checkOptions } from './event.ts';
import type { FailedEvent, OutboxBackend, Publisher } from './types.ts';

/** Options of {@link createRelay}. Durations are ms or strings such as `'30s'`. */
export interface RelayOptions {
  outbox: OutboxBackend;
  publisher: Publisher;
  /** Events per claim. Default 100. */
  batchSize?: number;
  /** Poll interval when nothing wakes the relay. Default `'1s'` (Postgres NOTIFY wakes it sooner). */
  poll?: number | string;
  /** How long a claimed batch is the relay's alone. Default `'30s'`. */
  lease?: number | string;
  /** A publish is aborted (and failed) after this. Default: half the lease. */
  publishTimeout?: number | string;
  /** Attempts before an event is parked. Default 10. */
  maxAttempts?: number;
  /** First retry delay, doubled each attempt (with ±20 % jitter) up to `maxBackoff`. Default `'1s'`. */
  backoff?: number | string;
  /** Default `'5m'`. */
  maxBackoff?: number | string;
  /** Published events are deleted after this long. Default `'24h'`; 0 keeps them. */
  retention?: number | string;
  /** Use LISTEN/NOTIFY when the outbox offers it. Default true. */
  listen?: boolean;
  /** Signals that stop the relay gracefully (drain, then stop), e.g. `['SIGTERM', 'SIGINT']`. Default none. */
  signals?: NodeJS.Signals[];
  /** Told about failures of the relay itself (database down, LISTEN lost). Default: console.warn. */
  onError?: (err: unknown) => void;
  /** Told after each batch. */
  onBatch?: (report: BatchReport) => void;
}

/** What one batch did. */
export interface BatchReport {
  claimed: number;
  published: number;
  retried: number;
  parked: number;
}

/** A running (or stopped) relay. */
export interface Relay {
  /** Starts the loop (migrating the table first). Resolves once it runs. */
  start(): Promise<void>;
  /** Stops claiming, waits for the in-flight batch to be published and marked, closes LISTEN. */
  stop(): Promise<void>;
  /** One claim → publish → mark pass, without the loop (cron jobs, tests). */
  runOnce(): Promise<BatchReport>;
  readonly running: boolean;
}

const OPTIONS = [
  'outbox',
  'publisher',
  'batchSize',
  'poll',
  'lease',
  'publishTimeout',
  'maxAttempts',
  'backoff',
  'maxBackoff',
  'retention',
  'listen',
  'signals',
  'onError',
  'onBatch',
];
const PURGE_EVERY_MS = 60_000;

/**
 * A relay from an outbox to a publisher.
 *
 * @example
 * import { createRelay, natsPublisher, postgresOutbox } from 'idem/outbox';
 * const relay = createRelay({
 *   outbox: postgresOutbox({ pool }),
 *   publisher: natsPublisher({ js }),
 *   signals: ['SIGTERM'],
 * });
 * await relay.start();
 */
export function createRelay(options: RelayOptions): Relay {
  checkOptions(options, OPTIONS, 'createRelay');
  const { outbox, publisher } = options;
  if (!outbox || typeof outbox.claim !== 'function') {
    throw new InvalidOptionError('createRelay: outbox must be postgresOutbox(…) or sqliteOutbox(…)');
  }
  if (!publisher || typeof publisher.publish !== 'function') {
    throw new InvalidOptionError('createRelay: publisher must have publish(events, signal)');
  }
  const batchSize = positive(options.batchSize ?? 100, 'batchSize');
  const maxAttempts = positive(options.maxAttempts ?? 10, 'maxAttempts');
  const pollMs = Math.max(1, toMs(options.poll ?? '1s', 'createRelay: poll'));
  const leaseMs = Math.max(100, toMs(options.lease ?? '30s', 'createRelay: lease'));
  const publishMs = Math.max(1, toMs(options.publishTimeout ?? leaseMs / 2, 'createRelay: publishTimeout'));
  if (publishMs >= leaseMs)
    throw new InvalidOptionError('createRelay: publishTimeout must be shorter than lease');
  const backoffMs = toMs(options.backoff ?? '1s', 'createRelay: backoff');
  const maxBackoffMs = toMs(options.maxBackoff ?? '5m', 'createRelay: maxBackoff');
  const retentionMs = toMs(options.retention ?? '24h', 'createRelay: retention');
  const onError = options.onError ?? ((err: unknown) => console.warn('[idem relay]', err));
  const signals = options.signals ?? [];
  if (!Array.isArray(signals) || signals.some((x) => typeof x !== 'string' || !x.startsWith('SIG'))) {
    throw new InvalidOptionError("createRelay: signals must be an array of signal names, e.g. ['SIGTERM']");
  }

  let running = false;
  let stopping = false;
  let loop: Promise<void> | undefined;
  let wakeFlag = false;
  let wakeNow: (() => void) | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  let lastPurge = 0;
  const onSignal = () => void relay.stop();

  const wake = () => {
    wakeFlag = true;
    wakeNow?.();
  };
  const idle = (ms: number) =>
    new Promise<void>((resolve) => {
      if (wakeFlag || stopping) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeNow = undefined;
        resolve();
      }
      wakeNow = done;
    });
  const delayFor = (attempts: number) => {
    const base = Math.min(maxBackoffMs, backoffMs * 2 ** Math.min(30, attempts - 1));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  };

  async function runOnce(): Promise<BatchReport> {
    const owner = randomUUID();
    const events = await outbox.claim(batchSize, leaseMs, owner);
    const report: BatchReport = { claimed: events.length, published: 0, retried: 0, parked: 0 };
    if (events.length === 0) return report;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`publish timed out after ${publishMs} ms`)), publishMs);
    let results: Awaited<ReturnType<Publisher['publish']>>;
    try {
      results = await Promise.race([
        publisher.publish(events, ac.signal),
        new Promise<never>((_, reject) =>
          ac.signal.addEventListener('abort', () => reject(ac.signal.reason)),
        ),
      ]);
      if (!Array.isArray(results) || results.length !== events.length) {
        throw new Error(
          `publisher ${publisher.name} answered ${results?.length} results for ${events.length} events`,
        );
      }
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      results = events.map(() => ({ ok: false, error }));
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    const published: string[] = [];
    const failed: FailedEvent[] = [];
    for (const [i, event] of events.entries()) {
      const r = results[i]!;
      if (r.ok) {
        published.push(event.id);
        continue;
      }
      const park = r.park === true || event.attempts >= maxAttempts;
      failed.push({ id: event.id, error: r.error, retryInMs: park ? 0 : delayFor(event.attempts), park });
    }
    await outbox.markPublished(published);
    await outbox.markFailed(failed, owner);
    report.published = published.length;
    report.parked = failed.filter((f) => f.park).length;
    report.retried = failed.length - report.parked;
    options.onBatch?.(report);
    return report;
  }

  async function run() {
    let errors = 0;
    while (!stopping) {
      wakeFlag = false;
      let full = false;
      try {
        const report = await runOnce();
        full = report.claimed === batchSize;
        errors = 0;
        if (retentionMs > 0 && Date.now() - lastPurge > PURGE_EVERY_MS) {
          lastPurge = Date.now();
          await outbox.purge(retentionMs);
        }
      } catch (err) {
        onError(err);
        errors++;
        wakeFlag = false; // back off even when notifications keep coming
        await idle(Math.min(pollMs * 2 ** Math.min(errors, 6), 30_000));
        continue;
      }
      if (!full) await idle(pollMs);
    }
  }

  const relay: Relay = {
    get running() {
      return running;
    },
    async start() {
      if (running) return;
      await outbox.migrate();
      running = true;
      stopping = false;
      if (options.listen !== false && outbox.listen) unlisten = outbox.listen(wake, onError);
      for (const s of signals) process.once(s, onSignal);
      loop = run();
    },
    async stop() {
      if (!running) return;
      stopping = true;
      wakeNow?.();
      for (const s of signals) process.removeListener(s, onSignal);
      await loop;
      await unlisten?.();
      unlisten = undefined;
      running = false;
    },
    runOnce,
  };
  return relay;
}

function positive(value: unknown, option: string): number {
  if (!(Number.isSafeInteger(value) && (value as number) > 0)) {
    throw new InvalidOptionError(
      `createRelay: ${option} must be a positive integer, got ${JSON.stringify(value)}`,
    );
  }
  return value as number;
}

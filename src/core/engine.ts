/**
 * The engine: claim → run → complete / release, single-flight within the process, and
 * replay of stored outcomes. Everything else in idem is a thin layer over `execute`.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type Duration, toMs } from './duration.ts';
import {
  FingerprintMismatchError,
  InProgressError,
  InvalidOptionError,
  isIdemError,
  LeaseLostError,
  OutcomeTooLargeError,
  StoreUnavailableError,
} from './errors.ts';
import type { IdemEvent } from './events.ts';
import {
  deriveKey,
  downstreamKeyOf,
  fingerprintOf,
  recordIdOf,
  sameFingerprint,
  validateKey,
} from './keys.ts';
import { startHeartbeat } from './lease.ts';
import {
  decodeOutcome,
  encodeOutcome,
  isDefinitive,
  type Outcome,
  reviveError,
  serializeError,
} from './outcome.ts';
import type { Store, StoreRecord } from './store.ts';
import { waitForTurn } from './wait.ts';

/** What to do when the key is held by another caller that is still running. */
export type InProgressPolicy = 'reject' | 'wait';

/** Options of {@link createIdem}; every per-call option in {@link RunOptions} overrides these. */
export interface IdemOptions {
  store: Store;
  /** How long a completed outcome is kept and replayed. Default `'24h'`. */
  ttl?: Duration;
  /** How long a holder owns the key without renewing. Renewed every lease/3. Default `'30s'`. */
  lease?: Duration;
  /** `'reject'` (default) throws `InProgressError`; `'wait'` waits for the holder's outcome. */
  onInProgress?: InProgressPolicy;
  /** How long `'wait'` waits before throwing `InProgressError`. Default `'30s'`. */
  waitTimeout?: Duration;
  /** Scope parts prefixed to every key (service, tenant…). Part of the hashed record id. */
  scope?: string | readonly string[];
  /** Largest serialized outcome stored, in bytes. Default 4 MiB. */
  maxOutcomeBytes?: number;
  /** Errors for which this returns true are stored and replayed instead of releasing the key. */
  definitive?: (error: unknown) => boolean;
  /** Receives an event per transition, for metrics and logs. Never receives raw keys. */
  onEvent?: (event: IdemEvent) => void;
}

/** Per-call options of `run` / `execute`. */
export interface RunOptions<T = unknown> {
  /** The input whose canonical JSON fingerprint is bound to the key at claim time. */
  input?: unknown;
  /** A precomputed fingerprint, instead of `input`. */
  fingerprint?: string;
  /** Dot paths left out of the fingerprint (`'traceId'`, `'meta.sentAt'`, `'items.*.nonce'`). */
  exclude?: readonly string[];
  /** Scope parts (tenant, principal, operation) added to the instance scope. */
  scope?: string | readonly string[];
  ttl?: Duration;
  lease?: Duration;
  onInProgress?: InProgressPolicy;
  waitTimeout?: Duration;
  /** Return true to hand this value to the caller but release the key (a transient result). */
  releaseIf?: (value: T) => boolean;
  definitive?: (error: unknown) => boolean;
}

/** What the action receives. */
export interface ActionContext {
  key: string;
  recordId: string;
  /** The fencing token of this holder. */
  token: string;
  /** 1 for the first holder; +1 for every takeover of an expired lease. */
  attempt: number;
  /** True when an earlier holder's lease expired mid-action: its effect may have happened. */
  mayHaveRun: boolean;
  /** Aborts with `LeaseLostError` when this holder loses the lease. */
  signal: AbortSignal;
  /** A key derived from the record, stable across attempts: pass it to downstream APIs. */
  downstreamKey: string;
}

/** The action guarded by a key. */
export type Action<T> = (ctx: ActionContext) => T | Promise<T>;

/** What `execute` answers. */
export interface ExecuteResult<T> {
  value: T;
  /** True when the action did not run for this call and the value is a stored (or shared) one. */
  replayed: boolean;
  attempt: number;
  recordId: string;
}

/** The idem instance. */
export interface Idem {
  /** Runs `action` once per key and answers every later call with the stored outcome. */
  run<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<T>;
  /** Like `run`, with `replayed`, `attempt` and `recordId`. */
  execute<T>(key: string, action: Action<T>, options?: RunOptions<T>): Promise<ExecuteResult<T>>;
  /** A deterministic key: `namespace:` + SHA-256 of the canonical JSON of `parts`. */
  key(namespace: string, ...parts: unknown[]): string;
  /**
   * The hashed record id and the downstream key a call with this key and scope would use,
   * without touching the store (instance scope included).
   */
  ids(key: string, scope?: string | readonly string[]): { recordId: string; downstreamKey: string };
  /** Deletes expired records in batches of `batchSize`; answers how many. */
  purgeExpired(options?: { batchSize?: number; maxBatches?: number }): Promise<number>;
  /** Closes the store. */
  close(): Promise<void>;
  readonly store: Store;
}

interface Inflight {
  fingerprint: string;
  /** Resolves once this caller knows whether it holds the key. */
  phase: Promise<'holder' | 'other'>;
  localLeaseEnd: number;
  /** Set when the holder released the key (error, releaseIf): joiners must claim for themselves. */
  released: boolean;
  result: Promise<ExecuteResult<unknown>>;
}

const COMPLETE_RETRY_MS = [50, 150, 400];

/**
 * Creates an idem instance over a store.
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * const idem = createIdem({ store: memoryStore(), ttl: '24h', lease: '30s' });
 * const receipt = await idem.run(idem.key('pay', claimId, amount), (ctx) =>
 *   payments.post({ claimId, amount }, { idempotencyKey: ctx.downstreamKey }),
 * );
 */
export function createIdem(options: IdemOptions): Idem {
  if (!options || typeof options.store?.claim !== 'function') {
    throw new InvalidOptionError('createIdem needs { store }, e.g. memoryStore() or sqliteStore({ path })');
  }
  const store = options.store;
  const defaults = {
    ttlMs: toMs(options.ttl ?? '24h', 'ttl'),
    leaseMs: toMs(options.lease ?? '30s', 'lease'),
    waitMs: toMs(options.waitTimeout ?? '30s', 'waitTimeout'),
    policy: checkPolicy(options.onInProgress ?? 'reject'),
  };
  if (defaults.leaseMs < 50) throw new InvalidOptionError('lease must be at least 50ms');
  const baseScope = scopeParts(options.scope);
  const maxOutcomeBytes = options.maxOutcomeBytes ?? 4 * 1024 * 1024;
  const inflight = new Map<string, Inflight>();
  const idOf = (key: string, scope: string | readonly string[] | undefined) =>
    recordIdOf([...baseScope, ...scopeParts(scope)], key);

  const emit = (event: IdemEvent) => {
    try {
      options.onEvent?.(event);
    } catch {
      // a metrics hook must never break the action
    }
  };
  const storeCall = async <R>(recordId: string, fn: () => Promise<R>): Promise<R> => {
    try {
      return await fn();
    } catch (error) {
      emit({ type: 'store_error', recordId, error });
      if (isIdemError(error)) throw error;
      throw new StoreUnavailableError(`${store.name} store failed: ${(error as Error)?.message}`, {
        cause: error,
      });
    }
  };

  async function execute<T>(
    key: string,
    action: Action<T>,
    opts: RunOptions<T> = {},
  ): Promise<ExecuteResult<T>> {
    validateKey(key);
    if (typeof action !== 'function') throw new InvalidOptionError('action must be a function');
    const recordId = idOf(key, opts.scope);
    const fingerprint =
      opts.fingerprint ?? (opts.input === undefined ? '' : fingerprintOf(opts.input, opts.exclude));
    const policy = opts.onInProgress ? checkPolicy(opts.onInProgress) : defaults.policy;

    const shared = inflight.get(recordId);
    if (shared) return joinInflight(shared, { key, action, opts, recordId, fingerprint, policy });

    let setPhase!: (p: 'holder' | 'other') => void;
    const entry: Inflight = {
      fingerprint,
      phase: new Promise((resolve) => (setPhase = resolve)),
      localLeaseEnd: 0,
      released: false,
      result: Promise.resolve() as never,
    };
    entry.result = (async () => {
      try {
        return await claimAndRun(key, recordId, fingerprint, policy, action, opts, entry, setPhase);
      } finally {
        setPhase('other');
        inflight.delete(recordId);
      }
    })();
    inflight.set(recordId, entry);
    return entry.result as Promise<ExecuteResult<T>>;
  }

  async function joinInflight<T>(
    shared: Inflight,
    call: {
      key: string;
      action: Action<T>;
      opts: RunOptions<T>;
      recordId: string;
      fingerprint: string;
      policy: InProgressPolicy;
    },
  ): Promise<ExecuteResult<T>> {
    const { recordId, policy, opts } = call;
    if (!sameFingerprint(shared.fingerprint, call.fingerprint)) {
      emit({ type: 'mismatch', recordId });
      throw new FingerprintMismatchError();
    }
    if ((await shared.phase) === 'holder' && policy === 'reject' && inflight.get(recordId) === shared) {
      emit({ type: 'in_progress', recordId });
      throw new InProgressError(shared.localLeaseEnd - Date.now());
    }
    const waitMs = opts.waitTimeout === undefined ? defaults.waitMs : toMs(opts.waitTimeout, 'waitTimeout');
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        emit({ type: 'in_progress', recordId });
        reject(new InProgressError(shared.localLeaseEnd - Date.now(), 'gave up waiting for the holder'));
      }, waitMs);
    });
    let r: ExecuteResult<unknown>;
    try {
      r = await Promise.race([shared.result, gaveUp]);
    } catch (error) {
      if (shared.released) return execute(call.key, call.action, opts);
      throw error;
    } finally {
      clearTimeout(timer);
    }
    // The holder's result was not stored (releaseIf): it is not ours to share.
    if (shared.released) return execute(call.key, call.action, opts);
    emit({ type: 'replayed', recordId, attempt: r.attempt, shared: true });
    return { ...(r as ExecuteResult<T>), replayed: true };
  }

  async function claimAndRun<T>(
    key: string,
    recordId: string,
    fingerprint: string,
    policy: InProgressPolicy,
    action: Action<T>,
    opts: RunOptions<T>,
    entry: Inflight,
    setPhase: (p: 'holder' | 'other') => void,
  ): Promise<ExecuteResult<T>> {
    const leaseMs = opts.lease === undefined ? defaults.leaseMs : toMs(opts.lease, 'lease');
    const ttlMs = opts.ttl === undefined ? defaults.ttlMs : toMs(opts.ttl, 'ttl');
    const waitMs = opts.waitTimeout === undefined ? defaults.waitMs : toMs(opts.waitTimeout, 'waitTimeout');
    const turn = await waitForTurn({
      store,
      recordId,
      waitMs: policy === 'wait' ? waitMs : 0,
      claim: () => {
        const token = randomBytes(16).toString('base64url');
        return storeCall(recordId, () =>
          store.claim({ id: recordId, fingerprint, leaseMs, ttlMs, token }),
        ).then((result) => ({ result, token }));
      },
      accept: (record) => {
        if (!sameFingerprint(record.fingerprint, fingerprint)) {
          emit({ type: 'mismatch', recordId });
          throw new FingerprintMismatchError();
        }
        return record.state === 'completed';
      },
      onWait: () => emit({ type: 'wait', recordId }),
    });

    if (turn.kind === 'busy') {
      emit({ type: 'in_progress', recordId });
      throw new InProgressError(
        turn.retryAfterMs,
        turn.timedOut ? 'gave up waiting for the holder' : undefined,
      );
    }
    if (turn.kind === 'completed') return replay<T>(turn.record);

    const { token, attempt, takeover } = turn;
    entry.localLeaseEnd = Date.now() + leaseMs;
    setPhase('holder');
    emit({ type: takeover ? 'takeover' : 'acquired', recordId, attempt });
    const controller = new AbortController();
    const heartbeat = startHeartbeat(
      store,
      recordId,
      token,
      leaseMs,
      Math.max(10, leaseMs / 3),
      controller,
      (e) => emit({ type: 'store_error', recordId, error: e }),
    );
    const ctx: ActionContext = {
      key,
      recordId,
      token,
      attempt,
      mayHaveRun: takeover,
      signal: controller.signal,
      downstreamKey: downstreamKeyOf(recordId),
    };
    const startedAt = Date.now();
    const finish = async (outcome: Outcome, value: unknown) => {
      try {
        await completeOutcome(recordId, token, outcome, ttlMs, value);
      } finally {
        heartbeat.stop();
      }
    };

    let value: T;
    try {
      value = await action(ctx);
    } catch (error) {
      if (isDefinitive(error) || opts.definitive?.(error) || options.definitive?.(error)) {
        await finish({ kind: 'error', error: serializeError(error) }, undefined);
        emit({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt, error: true });
      } else {
        heartbeat.stop();
        entry.released = true;
        await releaseQuietly(recordId, token);
      }
      throw error;
    }

    if (opts.releaseIf?.(value)) {
      heartbeat.stop();
      entry.released = true;
      await releaseQuietly(recordId, token);
      return { value, replayed: false, attempt, recordId };
    }
    let encoded: string;
    try {
      encoded = encodeOutcome({ kind: 'value', value });
    } catch (cause) {
      const error = new TypeError(`the action's result cannot be stored: ${(cause as Error).message}`);
      await finish({ kind: 'error', error: serializeError(error) }, value);
      throw error;
    }
    const bytes = Buffer.byteLength(encoded);
    if (bytes > maxOutcomeBytes) {
      await finish({ kind: 'too_large', bytes, limit: maxOutcomeBytes }, value);
      emit({ type: 'too_large', recordId, bytes });
      throw new OutcomeTooLargeError(bytes, maxOutcomeBytes, value);
    }
    try {
      await completeEncoded(recordId, token, encoded, ttlMs, value);
    } finally {
      heartbeat.stop();
    }
    emit({ type: 'completed', recordId, attempt, durationMs: Date.now() - startedAt });
    return { value, replayed: false, attempt, recordId };
  }

  function replay<T>(record: StoreRecord): ExecuteResult<T> {
    const outcome = decodeOutcome(record.outcome ?? '');
    emit({ type: 'replayed', recordId: record.id, attempt: record.attempt, shared: false });
    if (outcome.kind === 'error') throw reviveError(outcome.error);
    if (outcome.kind === 'too_large') throw new OutcomeTooLargeError(outcome.bytes, outcome.limit);
    return { value: outcome.value as T, replayed: true, attempt: record.attempt, recordId: record.id };
  }

  function completeOutcome(id: string, token: string, outcome: Outcome, ttlMs: number, value: unknown) {
    return completeEncoded(id, token, encodeOutcome(outcome), ttlMs, value);
  }

  /** Completes, retrying a failing store a few times; never releases after the action ran. */
  async function completeEncoded(id: string, token: string, encoded: string, ttlMs: number, value: unknown) {
    for (let i = 0; ; i++) {
      let ok: boolean;
      try {
        ok = await store.complete(id, token, encoded, ttlMs);
      } catch (error) {
        emit({ type: 'store_error', recordId: id, error });
        const delay = COMPLETE_RETRY_MS[i];
        if (delay === undefined) {
          throw new StoreUnavailableError(
            'the action completed but its outcome could not be stored; the key stays claimed until its lease ends',
            { cause: error, actionCompleted: true, value },
          );
        }
        await new Promise((r) => setTimeout(r, delay));
        continue;
      }
      if (!ok) {
        emit({ type: 'lease_lost', recordId: id });
        throw new LeaseLostError(
          'the lease was lost before the outcome was stored; the new holder decides',
          value,
        );
      }
      return;
    }
  }

  async function releaseQuietly(id: string, token: string) {
    try {
      await store.release(id, token);
      emit({ type: 'released', recordId: id });
    } catch (error) {
      // the lease runs out on its own; the original error matters more
      emit({ type: 'store_error', recordId: id, error });
    }
  }

  return {
    store,
    execute,
    async run(key, action, opts) {
      return (await execute(key, action, opts)).value;
    },
    key(namespace, ...parts) {
      return deriveKey(namespace, parts);
    },
    ids(key, scope) {
      const recordId = idOf(validateKey(key), scope);
      return { recordId, downstreamKey: downstreamKeyOf(recordId) };
    },
    async purgeExpired({ batchSize = 1000, maxBatches = Number.POSITIVE_INFINITY } = {}) {
      let total = 0;
      for (let i = 0; i < maxBatches; i++) {
        const n = await storeCall('*', () => store.purgeExpired(batchSize));
        total += n;
        if (n < batchSize) break;
      }
      return total;
    },
    async close() {
      await store.close?.();
    },
  };
}

function checkPolicy(p: string): InProgressPolicy {
  if (p !== 'reject' && p !== 'wait')
    throw new InvalidOptionError(`onInProgress must be 'reject' or 'wait', got ${p}`);
  return p;
}

function scopeParts(scope: string | readonly string[] | undefined): string[] {
  if (scope === undefined) return [];
  const parts = typeof scope === 'string' ? [scope] : [...scope];
  for (const p of parts)
    if (typeof p !== 'string') throw new InvalidOptionError('scope parts must be strings');
  return parts;
}

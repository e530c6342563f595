/**
 * One check for every option that shapes a run, wherever it enters: `createIdem` defaults,
 * per-call `run`/`execute` options, and the HTTP layer's route and middleware options.
 *
 * @module
 */
import { type Duration, toMs } from './duration.ts';
import { InvalidOptionError } from './errors.ts';

/** What to do when the key is held by another caller that is still running. */
export type InProgressPolicy = 'reject' | 'wait';

/** The shortest lease: a heartbeat renews every lease/3, so shorter leases lapse between beats. */
export const MIN_LEASE_MS = 50;
/** The longest lease or wait: Node timers cannot sleep longer (about 24.8 days). */
export const MAX_TIMER_MS = 2_147_483_647;
/** The longest retention: 100 years keeps every expiry a safe integer in every store. */
export const MAX_TTL_MS = 100 * 365 * 86_400_000;

/** The options {@link resolveRunOptions} checks; any other property is left alone. */
export interface RunOptionsInput {
  ttl?: Duration | undefined;
  lease?: Duration | undefined;
  waitTimeout?: Duration | undefined;
  releaseGuard?: Duration | undefined;
  onInProgress?: InProgressPolicy | undefined;
  fingerprint?: string | undefined;
  exclude?: readonly string[] | undefined;
  scope?: string | readonly string[] | undefined;
  releaseIf?: ((value: never) => boolean) | undefined;
  definitive?: ((error: unknown) => boolean) | undefined;
  onEvent?: ((event: never) => void) | undefined;
  maxOutcomeBytes?: number | undefined;
}

/** The durations of {@link RunOptionsInput} in milliseconds; absent where the input had none. */
export interface ResolvedRunOptions {
  ttlMs?: number;
  leaseMs?: number;
  waitMs?: number;
  releaseGuardMs?: number;
  onInProgress?: InProgressPolicy;
}

const HOOKS = ['releaseIf', 'definitive', 'onEvent'] as const;

/**
 * Checks `options` and converts its durations to milliseconds, or throws `InvalidOptionError`
 * naming the option, prefixed by `label` (`routes[0].lease must be at least 50 ms…`). Rules:
 * lease 50 ms to ~24.8 days, ttl more than 0 (at most 100 years), waitTimeout 0 to ~24.8
 * days, releaseGuard 0 to 100 years, `onInProgress` `'reject'` or `'wait'`, hooks functions, `exclude` an array of
 * strings, `scope` a string or strings, `fingerprint` a string. Undefined means absent.
 *
 * @example
 * resolveRunOptions({ lease: '30s', onInProgress: 'wait' }) // { leaseMs: 30000, onInProgress: 'wait' }
 * resolveRunOptions({ lease: 0 }, 'routes[0]') // throws InvalidOptionError: routes[0].lease must be at least 50 ms…
 */
export function resolveRunOptions(options: RunOptionsInput | undefined, label = ''): ResolvedRunOptions {
  const out: ResolvedRunOptions = {};
  if (options === undefined) return out;
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`${label || 'options'} must be an object, got ${describe(options)}`);
  }
  const name = (option: string) => (label ? `${label}.${option}` : option);
  const { ttl, lease, waitTimeout, releaseGuard, onInProgress } = options;
  if (lease !== undefined) out.leaseMs = duration(lease, name('lease'), MIN_LEASE_MS, MAX_TIMER_MS);
  if (ttl !== undefined) out.ttlMs = duration(ttl, name('ttl'), 1, MAX_TTL_MS);
  if (waitTimeout !== undefined) out.waitMs = duration(waitTimeout, name('waitTimeout'), 0, MAX_TIMER_MS);
  if (releaseGuard !== undefined) {
    out.releaseGuardMs = duration(releaseGuard, name('releaseGuard'), 0, MAX_TTL_MS);
  }
  if (onInProgress !== undefined) {
    if (onInProgress !== 'reject' && onInProgress !== 'wait') {
      throw new InvalidOptionError(
        `${name('onInProgress')} must be 'reject' or 'wait', got ${describe(onInProgress)}`,
      );
    }
    out.onInProgress = onInProgress;
  }
  for (const hook of HOOKS) {
    const fn = options[hook];
    if (fn !== undefined && typeof fn !== 'function') {
      throw new InvalidOptionError(`${name(hook)} must be a function, got ${describe(fn)}`);
    }
  }
  const { fingerprint, exclude, scope, maxOutcomeBytes } = options;
  if (fingerprint !== undefined && typeof fingerprint !== 'string') {
    throw new InvalidOptionError(`${name('fingerprint')} must be a string, got ${describe(fingerprint)}`);
  }
  if (exclude !== undefined && !isStrings(exclude)) {
    throw new InvalidOptionError(`${name('exclude')} must be an array of strings, got ${describe(exclude)}`);
  }
  if (scope !== undefined && typeof scope !== 'string' && !isStrings(scope)) {
    throw new InvalidOptionError(`${name('scope')} must be a string or an array of strings`);
  }
  if (
    maxOutcomeBytes !== undefined &&
    !(Number.isSafeInteger(maxOutcomeBytes) && (maxOutcomeBytes as number) > 0)
  ) {
    throw new InvalidOptionError(
      `${name('maxOutcomeBytes')} must be a positive integer, got ${describe(maxOutcomeBytes)}`,
    );
  }
  return out;
}

function duration(value: unknown, option: string, min: number, max: number): number {
  const ms = toMs(value as Duration, option);
  if (ms < min) {
    throw new InvalidOptionError(
      min === 1
        ? `${option} must be more than 0, got ${describe(value)}`
        : `${option} must be at least ${min} ms, got ${describe(value)}`,
    );
  }
  if (ms > max) throw new InvalidOptionError(`${option} must be at most ${max} ms, got ${describe(value)}`);
  return ms;
}

function isStrings(value: unknown): boolean {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/**
 * Every error idem raises. Each carries a stable machine `code` and the HTTP `status`
 * the HTTP layers answer with, so nothing surfaces as an anonymous 500.
 *
 * @module
 */

/** Machine-readable codes, stable across versions. */
export type IdemErrorCode =
  | 'invalid_key'
  | 'invalid_input'
  | 'invalid_option'
  | 'in_progress'
  | 'fingerprint_mismatch'
  | 'store_unavailable'
  | 'lease_lost'
  | 'outcome_too_large'
  | 'indeterminate_outcome'
  | 'divergence'
  | 'outcome_unreadable';

const BRAND = Symbol.for('idem.error');

/**
 * Base class of every idem error.
 *
 * @example
 * try { await idem.run(key, action) } catch (e) { if (e instanceof IdemError) log(e.code, e.status) }
 */
export class IdemError extends Error {
  override name = 'IdemError';
  readonly code: IdemErrorCode;
  /** The HTTP status this error maps to. */
  readonly status: number;
  readonly [BRAND] = true;

  constructor(code: IdemErrorCode, status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.status = status;
  }
}

/**
 * A key or key part is malformed: empty, over 255 characters, or not printable ASCII. HTTP 400.
 *
 * @example
 * await idem.run('', action) // throws InvalidKeyError
 */
export class InvalidKeyError extends IdemError {
  override name = 'InvalidKeyError';
  constructor(message: string) {
    super('invalid_key', 400, message);
  }
}

/**
 * An input cannot be fingerprinted: nested deeper than `MAX_INPUT_DEPTH` (or cyclic), or
 * holding a string with a lone surrogate (not well-formed Unicode, which RFC 8785 refuses).
 * HTTP 400.
 *
 * @example
 * await idem.run(key, action, { input: JSON.parse('{"a":"\\ud800"}') }) // throws InvalidInputError
 */
export class InvalidInputError extends IdemError {
  override name = 'InvalidInputError';
  constructor(message: string, options?: ErrorOptions) {
    super('invalid_input', 400, message, options);
  }
}

/**
 * An option has a value idem cannot use (a malformed duration, an unknown policy). Raised at
 * configuration time, never mid-action.
 *
 * @example
 * createIdem({ store, lease: '30 parsecs' }) // throws InvalidOptionError
 */
export class InvalidOptionError extends IdemError {
  override name = 'InvalidOptionError';
  constructor(message: string, options?: ErrorOptions) {
    super('invalid_option', 500, message, options);
  }
}

/**
 * Another holder is running the action for this key right now. HTTP 409; `retryAfterMs`
 * is the time left on the holder's lease, measured on the store's clock.
 *
 * @example
 * catch (e) { if (e instanceof InProgressError) setTimeout(retry, e.retryAfterMs) }
 */
export class InProgressError extends IdemError {
  override name = 'InProgressError';
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number, message = 'another request with this key is in progress') {
    super('in_progress', 409, message);
    this.retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
  }
}

/**
 * The key was first used with a different input. The stored record is left untouched. HTTP 422.
 *
 * @example
 * await idem.run(key, pay, { input: { amount: 10 } });
 * await idem.run(key, pay, { input: { amount: 99 } }); // throws FingerprintMismatchError
 */
export class FingerprintMismatchError extends IdemError {
  override name = 'FingerprintMismatchError';
  constructor(message = 'this key was already used with a different input') {
    super('fingerprint_mismatch', 422, message);
  }
}

/**
 * The store could not be reached or did not answer in time. HTTP 503. When the action had
 * already run and only storing its outcome failed, `actionCompleted` is true, `value` holds
 * the result, and the key stays claimed (it is never released after a successful action).
 *
 * @example
 * catch (e) { if (e instanceof StoreUnavailableError && e.actionCompleted) use(e.value) }
 */
export class StoreUnavailableError extends IdemError {
  override name = 'StoreUnavailableError';
  readonly actionCompleted: boolean;
  readonly value: unknown;
  constructor(message: string, options?: ErrorOptions & { actionCompleted?: boolean; value?: unknown }) {
    super('store_unavailable', 503, message, options);
    this.actionCompleted = options?.actionCompleted ?? false;
    this.value = options?.value;
  }
}

/**
 * Why a holder lost its key: `'taken_over'` (its lease ran out and another holder claimed the
 * key: that holder decides the outcome), `'record_lost'` (the record vanished: the store lost
 * it, e.g. Redis restarted without persistence, or it expired; nobody holds the key and the
 * next call runs the action again), `'unconfirmed'` (the store did not confirm the lease
 * before it ran out).
 */
export type LeaseLostReason = 'taken_over' | 'record_lost' | 'unconfirmed';

/**
 * This holder can no longer write the record: see `reason`. Raised from `ctx.signal` and
 * from a late `complete`. `value` holds what the action produced, which was not stored.
 *
 * @example
 * catch (e) { if (e instanceof LeaseLostError && e.reason === 'record_lost') alert('store lost records') }
 */
export class LeaseLostError extends IdemError {
  override name = 'LeaseLostError';
  readonly value: unknown;
  readonly reason: LeaseLostReason;
  constructor(
    message = 'the lease on this key was lost to another holder',
    value?: unknown,
    reason: LeaseLostReason = 'taken_over',
  ) {
    super('lease_lost', 409, message);
    this.value = value;
    this.reason = reason;
  }
}

/**
 * The serialized outcome is larger than `maxOutcomeBytes`. Nothing is truncated: the record
 * is completed with this error instead, so retries get it too and the action is not re-run.
 * The first caller finds the produced result in `value`. HTTP 500.
 *
 * @example
 * createIdem({ store, maxOutcomeBytes: 4 * 1024 * 1024 })
 */
export class OutcomeTooLargeError extends IdemError {
  override name = 'OutcomeTooLargeError';
  readonly bytes: number;
  readonly limit: number;
  readonly value: unknown;
  constructor(bytes: number, limit: number, value?: unknown) {
    super('outcome_too_large', 500, `outcome is ${bytes} bytes, over the limit of ${limit} bytes`);
    this.bytes = bytes;
    this.limit = limit;
    this.value = value;
  }
}

/**
 * A journaled step was replayed with an input other than the one recorded.
 *
 * @example
 * catch (e) { if (e instanceof DivergenceError) alertHuman(e.step) }
 */
export class DivergenceError extends IdemError {
  override name = 'DivergenceError';
  readonly step: string;
  constructor(step: string, message = `step "${step}" was recorded with a different input`) {
    super('divergence', 409, message);
    this.step = step;
  }
}

/**
 * A stored outcome cannot be read back: sealed with a key id that `encryption.keys` no longer
 * has, altered in the store, copied from another record, or plaintext where
 * `encryption.plaintext` is `'refuse'`. HTTP 500: the record stays; fix the keys and retry.
 *
 * @example
 * catch (e) { if (e instanceof OutcomeUnreadableError) log.error(e.message) }
 */
export class OutcomeUnreadableError extends IdemError {
  override name = 'OutcomeUnreadableError';
  constructor(message: string, options?: ErrorOptions) {
    super('outcome_unreadable', 500, message, options);
  }
}

/**
 * True for any idem error, also across realms and duplicated installs.
 *
 * @example
 * if (isIdemError(e)) return problem(e.status, e.code)
 */
export function isIdemError(e: unknown): e is IdemError {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[BRAND] === true;
}

/**
 * The error an LLM call through `withIdem` raises when the provider may have billed a call
 * whose answer is not whole: the upstream cut the response mid-way. It is stored with the key,
 * so a retry with the same key gets the same error (never a second bill); retrying means a new
 * key, explicitly.
 *
 * @module
 */
import { IdemError, isIdemError } from '../core/errors.ts';

/** Where the derived keys of {@link IndeterminateOutcomeError.retryWithNewKey} put their counter. */
const RETRY_SUFFIX = /:retry:(\d+)$/;

/**
 * The upstream cut a response after it started (a stream that ended without its last event, a
 * connection reset mid-body). The provider may have billed it; its outcome is unknown, so it is
 * stored as incomplete under its key and every retry with that key gets this error again.
 * `retryWithNewKey()` gives the request options of a deliberate new attempt: a key derived from
 * this one (`<key>:retry:1`, then `:retry:2`…), the same in every process, so concurrent
 * retriers still share one call.
 *
 * @example
 * try {
 *   for await (const event of await client.chat.completions.create(body, { idempotencyKey })) show(event);
 * } catch (e) {
 *   if (!isIndeterminateOutcomeError(e)) throw e;
 *   await client.chat.completions.create(body, e.retryWithNewKey()); // billed again, knowingly
 * }
 */
export class IndeterminateOutcomeError extends IdemError {
  override name = 'IndeterminateOutcomeError';
  /** The key of the call that was cut. */
  readonly key: string;
  /** Bytes of the response received before the cut. */
  readonly receivedBytes: number;

  constructor(key: string, receivedBytes: number, options?: ErrorOptions & { reason?: string }) {
    const reason = options?.reason ?? `the upstream cut the response after ${receivedBytes} bytes`;
    super(
      'indeterminate_outcome',
      502,
      `${reason}; it may have been billed. A retry with this key gets this error again: ` +
        'call retryWithNewKey() to run it again under a new key',
      options,
    );
    this.key = key;
    this.receivedBytes = receivedBytes;
  }

  /**
   * Request options for a new attempt under a key derived from this one. Pass them to the SDK
   * call (`{ idempotencyKey }` for openai; `headers` work for both SDKs).
   *
   * @example
   * await client.messages.create(body, e.retryWithNewKey());
   */
  retryWithNewKey(): { idempotencyKey: string; headers: { 'Idempotency-Key': string } } {
    const match = RETRY_SUFFIX.exec(this.key);
    const next = match
      ? `${this.key.slice(0, match.index)}:retry:${Number(match[1]) + 1}`
      : `${this.key}:retry:1`;
    return { idempotencyKey: next, headers: { 'Idempotency-Key': next } };
  }
}

/**
 * True for an {@link IndeterminateOutcomeError}, also one from another copy of idem (by name).
 *
 * @example
 * if (isIndeterminateOutcomeError(e)) retry(e.retryWithNewKey());
 */
export function isIndeterminateOutcomeError(e: unknown): e is IndeterminateOutcomeError {
  return (
    e instanceof IndeterminateOutcomeError ||
    (isIdemError(e) &&
      e.name === 'IndeterminateOutcomeError' &&
      typeof (e as IndeterminateOutcomeError).retryWithNewKey === 'function')
  );
}

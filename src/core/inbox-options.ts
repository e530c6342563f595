/**
 * Checking what enters `consumeOnce` and the adapters: the message ref, the options (unknown
 * names refused with the nearest known one), and the defaults.
 *
 * @module
 */

import { InvalidKeyError, InvalidOptionError } from './errors.ts';
import type { ConsumeOptions, MessageRef } from './inbox-types.ts';
import { nearestName } from './names.ts';
import { resolveRunOptions } from './options.ts';

const KNOWN = [
  'maxAttempts',
  'retryDelay',
  'input',
  'fingerprint',
  'exclude',
  'scope',
  'ttl',
  'lease',
  'waitTimeout',
  'releaseGuard',
  'definitive',
];
const MAX_ID_LENGTH = 4096;
const DEFAULT_MAX_ATTEMPTS = 5;

/**
 * The ref, checked: two non-empty strings of at most 4096 characters, else `InvalidKeyError`.
 *
 * @example
 * const { consumer, messageId } = checkRef({ consumer: 'billing', messageId: 'evt-1' });
 */
export function checkRef(ref: MessageRef): MessageRef {
  if (ref === null || typeof ref !== 'object') {
    throw new InvalidKeyError('consumeOnce needs { consumer, messageId }');
  }
  for (const name of ['consumer', 'messageId'] as const) {
    const v = ref[name];
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID_LENGTH) {
      throw new InvalidKeyError(
        `consumeOnce: ${name} must be a non-empty string of at most ${MAX_ID_LENGTH} characters`,
      );
    }
  }
  return ref;
}

/**
 * The options, checked, with the inbox's defaults applied.
 *
 * @example
 * const { maxAttempts, retryDelay, ...run } = checkOptions({ ttl: '7d' }); // maxAttempts 5
 */
export function checkOptions(options: ConsumeOptions) {
  checkConsumeOptions(options);
  const { maxAttempts = DEFAULT_MAX_ATTEMPTS, retryDelay = defaultRetryDelay, ...run } = options;
  return { maxAttempts, retryDelay, ...run };
}

/**
 * Checks consume options where they enter (adapters call it at construction, with their own
 * option names in `extra`): unknown names are refused with the nearest known one, values are
 * checked like `consumeOnce` checks them. Throws `InvalidOptionError`.
 *
 * @example
 * checkConsumeOptions({ maxAttemps: 3 }, ['consumer'], 'idempotentConsumer')
 * // throws: idempotentConsumer: unknown option maxAttemps — did you mean maxAttempts?
 */
export function checkConsumeOptions(
  options: unknown,
  extra: readonly string[] = [],
  label = 'consumeOnce',
): void {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`${label} options must be an object`);
  }
  const known = [...KNOWN, ...extra];
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    if (name === 'onInProgress') {
      throw new InvalidOptionError(
        `${label}: a consumer never waits (option onInProgress): an in-progress message is retried`,
      );
    }
    const near = nearestName(name, known);
    const hint = near ? ` — did you mean ${near}?` : ` (known: ${known.join(', ')})`;
    throw new InvalidOptionError(`${label}: unknown option ${name}${hint}`);
  }
  const { maxAttempts, retryDelay } = options as ConsumeOptions;
  if (
    maxAttempts !== undefined &&
    (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000)
  ) {
    throw new InvalidOptionError(
      `${label}: maxAttempts must be an integer from 1 to 1000, got ${maxAttempts}`,
    );
  }
  if (retryDelay !== undefined && typeof retryDelay !== 'function') {
    throw new InvalidOptionError(`${label}: retryDelay must be a function`);
  }
  resolveRunOptions(options as ConsumeOptions, label); // ttl, lease, scope, input options…
}

/** 500 ms, 1 s, 2 s… at most 30 s. */
function defaultRetryDelay(failures: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, failures - 1));
}

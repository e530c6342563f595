/**
 * Where a model call's key comes from (the call's `providerOptions.idem.key`, its
 * `Idempotency-Key` header, or the middleware's `key` option), the step suffix that gives every
 * call of a tool loop its own key, the scope, the fingerprint, and the parameters passed on.
 *
 * @module
 */
import { InvalidKeyError } from '../../core/errors.ts';
import { fingerprintOf, scopeParts, validateKey } from '../../core/keys.ts';
import type { CallParams, CallType, Model } from './types.ts';

/**
 * The header a call's logical key may come in (any case).
 *
 * @example
 * await generateText({ model, prompt, headers: { 'Idempotency-Key': 'run-7' } }); // KEY_HEADER, any case
 */
export const KEY_HEADER = 'idempotency-key';

/**
 * A logical key, or a function that finds one for a call (undefined: none).
 *
 * @example
 * const key: KeySource = ({ params }) => (params.headers?.['x-job-id'] ? `job-${params.headers['x-job-id']}` : undefined);
 */
export type KeySource = string | ((call: { params: CallParams; type: CallType }) => string | undefined);

/** One model call, keyed. */
export interface KeyedCall {
  /** `<logical key>:step-<n>`: n − 1 assistant turns are already in the prompt. */
  key: string;
  scope: string[];
  fingerprint: string;
  /** The parameters for the wrapped model: no `providerOptions.idem`, the header set to `key`. */
  params: CallParams;
  /** The wrapped model, for the savings of suppressed duplicates. */
  model: { provider: string; modelId: string };
}

/**
 * The key, scope, fingerprint and forwarded parameters of one model call. Throws
 * `InvalidKeyError` when no key is found, or the key is malformed (before anything is sent).
 *
 * @example
 * keyedCall({ prompt, providerOptions: { idem: { key: 'run-7' } } }, 'generate', model, {}).key // 'run-7:step-1'
 */
export function keyedCall(
  params: CallParams,
  type: CallType,
  model: Model,
  options: { key?: KeySource | undefined; scope?: string | readonly string[] | undefined },
): KeyedCall {
  const { idem: own, ...providerOptions } = params.providerOptions ?? {};
  const callOptions = (own ?? {}) as { key?: unknown; scope?: unknown };
  const headerName = Object.keys(params.headers ?? {}).find((h) => h.toLowerCase() === KEY_HEADER);
  const header = headerName === undefined ? undefined : params.headers?.[headerName];
  const given = typeof options.key === 'function' ? options.key({ params, type }) : options.key;
  const logical = callOptions.key ?? header ?? given;
  if (logical === undefined) {
    throw new InvalidKeyError(
      'idemMiddleware found no key for this model call: pass providerOptions: { idem: { key } }, ' +
        'an Idempotency-Key header, or idemMiddleware({ key })',
    );
  }
  validateKey(logical);
  const step = params.prompt.filter((m) => m.role === 'assistant').length + 1;
  const key = validateKey(`${logical}:step-${step}`);
  const headers = { ...params.headers };
  if (headerName !== undefined) {
    delete headers[headerName];
    headers['Idempotency-Key'] = key; // a downstream idem layer (the gateway) sees one key per call
  }
  const forwarded: CallParams = { ...params, providerOptions, headers };
  const { abortSignal: _, headers: __, ...fingerprinted } = forwarded;
  return {
    key,
    scope: ['ai-sdk', ...scopeParts(options.scope), ...scopeParts(callOptions.scope as string | undefined)],
    fingerprint: fingerprintOf({
      type,
      provider: model.provider,
      modelId: model.modelId,
      params: urlsAsText(fingerprinted),
    }),
    params: forwarded,
    model: { provider: model.provider, modelId: model.modelId },
  };
}

/** A copy with every `URL` (file parts' `data`) as its text: a URL has no own enumerable data. */
function urlsAsText(value: unknown): unknown {
  if (value instanceof URL) return value.href;
  if (Array.isArray(value)) return value.map(urlsAsText);
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value) || value instanceof Date) {
    return value;
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, urlsAsText(v)]));
}

/**
 * What a model call stores, and how a stored call answers again: a `doGenerate` result, a
 * `doStream` part list (complete or cut), a definitive provider error, or a call lost with its
 * holder. The first answer and every replay come from the same stored form, so they are equal
 * but for the replay marks (`providerMetadata.idem`, the `idempotent-replayed` header).
 *
 * @module
 */
import { reviveError, type SerializedError, serializeError } from '../../core/outcome.ts';
import { replayAllowList, storableHeaders } from '../../http/headers.ts';
import { RELEASED_STATUSES } from '../call.ts';
import { IndeterminateOutcomeError } from '../errors.ts';
import { REPLAYED_HEADER } from '../respond.ts';
import type { GenerateResult, StreamPart } from './types.ts';

/** A provider answer that is stored and raised again on every replay, never retried. */
export interface StoredApiError {
  message: string;
  url: string;
  statusCode: number;
  responseHeaders?: Record<string, string> | undefined;
  responseBody?: string | undefined;
  data?: unknown;
}

/** The stored outcome of one model call. */
export type ModelOutcome =
  | { kind: 'generate'; result: GenerateResult }
  | {
      kind: 'stream';
      parts: StreamPart[];
      /** False when the stream was cut: replays end with an `IndeterminateOutcomeError`. */
      complete: boolean;
      /** An error part before any content: the provider generated (billed) nothing; released. */
      unbilled?: boolean;
      headers?: Record<string, string>;
    }
  | { kind: 'error'; error: StoredApiError }
  | { kind: 'lost' };

/** Stored when a holder takes a key over from one whose lease ran out mid-call. */
export const LOST: ModelOutcome = { kind: 'lost' };

const ALLOW = replayAllowList([
  'openai-model',
  'openai-organization',
  'openai-processing-ms',
  'openai-version',
]);

/**
 * The response headers kept: the replay allow-list (never cookies, hop-by-hop or rate limits).
 *
 * @example
 * keptHeaders({ 'x-request-id': 'r1', 'set-cookie': 'a=b' }) // { 'x-request-id': 'r1' }
 */
export function keptHeaders(headers: Record<string, string | undefined> | undefined): Record<string, string> {
  const all = new Headers();
  for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined) all.append(name, value);
  return Object.fromEntries(storableHeaders(all, ALLOW));
}

/**
 * A `doGenerate` result as stored: content, tool calls, finish reason, usage, provider metadata,
 * warnings and response metadata (id, timestamp, model, kept headers). The raw request and
 * response bodies are not kept.
 *
 * @example
 * const stored = storedGenerate(await model.doGenerate(params));
 */
export function storedGenerate(result: GenerateResult): GenerateResult {
  const { request: _, response, ...rest } = result;
  if (!response) return rest;
  const { body: __, headers, ...meta } = response;
  return { ...rest, response: { ...meta, headers: keptHeaders(headers) } };
}

/**
 * A provider error as a stored outcome when it is definitive (an HTTP status outside
 * `RELEASED_STATUSES`: 400, 401, 404, 422, 501…); anything else is rethrown, so the key is
 * released and the AI SDK's retry runs the call again.
 *
 * @example
 * try { return storedGenerate(await model.doGenerate(params)) } catch (e) { return await storedErrorOrThrow(e) }
 */
export async function storedErrorOrThrow(error: unknown): Promise<ModelOutcome> {
  const { APICallError } = await loadAi();
  if (!APICallError.isInstance(error) || error.statusCode === undefined) throw error;
  if (RELEASED_STATUSES.has(error.statusCode)) throw error;
  const { message, url, statusCode, responseHeaders, responseBody, data } = error;
  return {
    kind: 'error',
    error: { message, url, statusCode, responseHeaders: keptHeaders(responseHeaders), responseBody, data },
  };
}

/**
 * The `ai` package, loaded when an error needs its `APICallError`: `idem/ai-sdk` itself loads
 * without it (`ai` is an optional peer), and any app calling the middleware has it.
 */
const loadAi = () => import('ai');

/** A stream part as stored: an `error` part's error serialized (name, message, data). */
export function storedPart(part: StreamPart): StreamPart {
  return part.type === 'error' && part.error instanceof Error
    ? { type: 'error', error: { $error: serializeError(part.error) } }
    : part;
}

/** A stored part as replayed: a serialized error revived. */
export function replayedPart(part: StreamPart): StreamPart {
  const stored = part.type === 'error' ? (part.error as { $error?: SerializedError }) : undefined;
  return stored?.$error ? { type: 'error', error: reviveError(stored.$error) } : part;
}

/**
 * The error a stored error or lost outcome raises: a non-retryable `APICallError` (so the AI
 * SDK, which retries 5xx whatever the headers say, does not), or `IndeterminateOutcomeError`.
 *
 * @example
 * const error = await outcomeError(key, { kind: 'lost' }, true); // IndeterminateOutcomeError
 */
export async function outcomeError(
  key: string,
  outcome: ModelOutcome,
  replayed: boolean,
): Promise<Error | undefined> {
  if (outcome.kind === 'lost') {
    return new IndeterminateOutcomeError(key, 0, {
      reason:
        'an earlier holder of this key stopped (its lease ran out) while its call may have been running',
    });
  }
  if (outcome.kind !== 'error') return undefined;
  const e = outcome.error;
  const { APICallError } = await loadAi();
  return new APICallError({
    message: e.message,
    url: e.url,
    requestBodyValues: undefined,
    statusCode: e.statusCode,
    responseHeaders: replayed ? { ...e.responseHeaders, [REPLAYED_HEADER]: 'true' } : e.responseHeaders,
    responseBody: e.responseBody,
    isRetryable: false,
    data: e.data,
  });
}

/**
 * Marks a result part as an idem answer: `providerMetadata.idem = { key, replayed }`.
 *
 * @example
 * marked(result.providerMetadata, 'run-7:step-1', true) // { …, idem: { key: 'run-7:step-1', replayed: true } }
 */
export function marked<M extends Record<string, unknown> | undefined>(
  metadata: M,
  key: string,
  replayed: boolean,
): NonNullable<M> & { idem: { key: string; replayed: boolean } } {
  return { ...metadata, idem: { key, replayed } } as NonNullable<M> & {
    idem: { key: string; replayed: boolean };
  };
}

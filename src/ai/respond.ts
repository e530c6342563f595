/**
 * The caller's side of an LLM call: the `Response` an SDK reads for a call that is live, stored,
 * shared or lost, with the replay marker, and the caller's abort that never reaches upstream.
 *
 * @module
 */
import { connectionTokens, HOP_BY_HOP } from '../http/headers.ts';
import { type HttpOutcome, NULL_BODY_STATUSES } from '../http/outcome.ts';
import { IndeterminateOutcomeError } from './errors.ts';
import { createRecording, type Recording } from './recording.ts';
import type { Usage } from './usage.ts';

/** The stored outcome of one LLM call. */
export interface LlmOutcome extends HttpOutcome {
  /** False when the upstream cut the body: replays end with an `IndeterminateOutcomeError`. */
  complete: boolean;
  /** The stream ended in a provider error before generating anything: released, never stored. */
  unbilled?: boolean;
  usage?: Usage;
}

/**
 * The response header that marks a stored or shared answer (`true`); the first answer has none.
 *
 * @example
 * const { response } = await client.chat.completions.create(body, { idempotencyKey }).withResponse();
 * if (response.headers.get(REPLAYED_HEADER) === 'true') console.log('not billed again');
 */
export const REPLAYED_HEADER = 'idempotent-replayed';

/** Where a call stands, as its callers see it. */
export type Head =
  | {
      kind: 'live';
      status: number;
      headers: [string, string][];
      upstreamHeaders: [string, string][];
      recording: Recording;
      /** Settles when the outcome is stored (or storing failed). */
      stored: Promise<unknown>;
    }
  | { kind: 'done'; outcome: LlmOutcome; replayed: boolean; released: boolean }
  | { kind: 'error'; error: unknown };

/**
 * The outcome stored when a holder took the key over from one whose lease ran out (a crashed
 * process): that call may have reached the provider, so its key answers IndeterminateOutcomeError.
 */
export const LOST: LlmOutcome = { status: 0, headers: [], body: new Uint8Array(0), complete: false };

/**
 * The caller's `Response` for a head: live, stored or shared (marked), or the lost call's error.
 *
 * @example
 * return respond(key, await untilAborted(entry.head, signal), false, signal);
 */
export function respond(key: string, head: Head, replayed: boolean, signal?: AbortSignal | null): Response {
  if (head.kind === 'error') throw head.error;
  if (head.kind === 'done' && head.outcome.status === LOST.status) {
    throw new IndeterminateOutcomeError(key, 0, {
      reason:
        'an earlier holder of this key stopped (its lease ran out) while its call may have been running',
    });
  }
  const headers = new Headers();
  const status = head.kind === 'live' ? head.status : head.outcome.status;
  const own = head.kind === 'live' ? (replayed ? head.headers : head.upstreamHeaders) : head.outcome.headers;
  for (const [name, value] of own) {
    headers.append(name, value);
  }
  if (replayed) {
    headers.set(REPLAYED_HEADER, 'true');
    if (status >= 500) headers.set('x-should-retry', 'false');
  }
  if (NULL_BODY_STATUSES.has(status)) return new Response(null, { status, headers });
  if (head.kind === 'live') {
    return new Response(head.recording.follow(signal, head.stored), { status, headers });
  }
  const { outcome } = head;
  const recording = createRecording();
  recording.push(outcome.body);
  if (outcome.complete) recording.end();
  else recording.fail(new IndeterminateOutcomeError(key, outcome.body.byteLength));
  return new Response(recording.follow(signal), { status, headers });
}

/**
 * The upstream's headers a caller may see as they are: all but hop-by-hop and body framing.
 *
 * @example
 * passableHeaders(new Headers({ 'content-length': '3', 'retry-after-ms': '10' })) // [['retry-after-ms', '10']]
 */
export function passableHeaders(headers: Headers): [string, string][] {
  const hopByHop = connectionTokens(headers.get('connection'));
  return [...headers].filter(([name]) => !HOP_BY_HOP.has(name) && !hopByHop.has(name) && !FRAMING.has(name));
}

/** Headers about the encoded body, which fetch already decoded. */
const FRAMING = new Set(['content-encoding', 'content-length']);

/**
 * `promise`, or the signal's reason as soon as it aborts (the promise keeps running).
 *
 * @example
 * const head = await untilAborted(entry.head, request.signal);
 */
export function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal | null): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

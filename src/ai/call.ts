/**
 * One billable LLM call, executed upstream at most once per key: the part `idem/openai` and
 * `idem/anthropic` share. The key is claimed in the idem store before the request leaves; the
 * upstream request never carries the caller's abort signal, so a client timeout or abort
 * leaves it running and recording; the caller and every duplicate in this process follow the
 * recording live from its first byte; duplicates in other processes wait for the stored outcome.
 *
 * @module
 */
import type { Duration } from '../core/duration.ts';
import type { Idem } from '../core/engine.ts';
import { FingerprintMismatchError, InvalidOptionError } from '../core/errors.ts';
import { fingerprintOf } from '../core/keys.ts';
import { resolveRunOptions } from '../core/options.ts';
import { replayAllowList, storableHeaders } from '../http/headers.ts';
import { checkKnownOptions } from '../http/known.ts';
import { ownBytes } from '../http/outcome.ts';
import { credentialScope, type FetchBody, readBody } from './body.ts';
import { IndeterminateOutcomeError } from './errors.ts';
import type { Provider } from './providers.ts';
import { createRecording, type Recording } from './recording.ts';
import { type Head, type LlmOutcome, LOST, passableHeaders, respond, untilAborted } from './respond.ts';
import { recordSafely, resolveSavings, type Savings } from './savings.ts';
import { type Usage, usageOf } from './usage.ts';

export { type LlmOutcome, REPLAYED_HEADER } from './respond.ts';

/** Options shared by `withIdem` for every provider. */
export interface LlmIdemOptions {
  /** A `createIdem` instance: its store decides how far "once" reaches (process, machine, fleet). */
  idem: Idem;
  /**
   * Scope of every record. Default: the provider plus a hash of the request's API key, so two
   * keys (tenants) never share a record.
   */
  scope?: string | readonly string[];
  /** How long a duplicate waits for the call in flight before failing. Default `'10m'`. */
  waitTimeout?: Duration;
  /** How long an answer is kept and replayed. Default: the idem instance's `ttl`. */
  ttl?: Duration;
  /** The claim's lease, renewed while the call runs. Default: the idem instance's `lease`. */
  lease?: Duration;
  /**
   * Where suppressed duplicates are counted (tokens and money saved), or `false` for nowhere.
   * Default: the process tracker, read with `savingsReport()` and exported to OpenTelemetry.
   */
  savings?: Savings | false;
}

export type { Provider } from './providers.ts';

/** One call to run: its key, the request as the SDK built it, and the caller's signal. */
export interface LlmRequest {
  key: string;
  method: string;
  url: string;
  headers: Headers;
  body: FetchBody | null | undefined;
  signal?: AbortSignal | null;
}

/** Sends the request upstream, without the caller's signal. */
export type Send = (body: FetchBody | null) => Promise<Response>;

/**
 * Statuses after which the provider did not bill a completion: the key is released, so the
 * SDK's own retry (same key) runs the call again.
 *
 * @example
 * RELEASED_STATUSES.has(529) // true: Anthropic "overloaded"
 */
export const RELEASED_STATUSES: ReadonlySet<number> = new Set([408, 409, 429, 500, 502, 503, 504, 529]);

interface Pending {
  fingerprint: string;
  head: Promise<Head>;
  /** The outcome once stored (undefined when released or failed): what a duplicate saved. */
  final: Promise<LlmOutcome | undefined>;
}

/** Calls in flight per idem instance: two instances behave like two processes. */
const inFlight = new WeakMap<Idem, Map<string, Pending>>();

/**
 * The function a provider adapter calls for each billable request.
 *
 * @example
 * const callOnce = createLlmCall(openaiProvider, { idem });
 * const response = await callOnce({ key, method, url, headers, body, signal }, (body) => fetch(url, { method, headers, body }));
 */
export function createLlmCall(
  provider: Provider,
  options: LlmIdemOptions,
  known: readonly string[] = LLM_OPTIONS,
): (request: LlmRequest, send: Send) => Promise<Response> {
  checkLlmOptions(options, known);
  const idem = options.idem;
  const allow = replayAllowList(provider.replayHeaders);
  const waitTimeout = options.waitTimeout ?? '10m';
  const calls = inFlight.get(idem) ?? new Map<string, Pending>();
  inFlight.set(idem, calls);
  const savings = resolveSavings(options.savings, 'withIdem');
  // called once the caller's answer is settled; a tracker that throws is reported, never raised
  const count = (id: string, model: string | undefined, outcome: LlmOutcome | undefined) => {
    if (!outcome?.complete || outcome.status < 200 || outcome.status >= 300) return;
    recordSafely(savings, { provider: provider.name, id, model, usage: outcome.usage });
  };

  return async function callOnce(request, send) {
    const scope = options.scope ?? [provider.name, credentialScope(request.headers)];
    const { recordId } = idem.ids(request.key, scope);
    const { print, send: body } = await readBody(request.body);
    const { pathname, search } = new URL(request.url);
    const fingerprint = fingerprintOf({ method: request.method, path: pathname + search, body: print });
    const model = (print as { model?: unknown } | null)?.model;
    const modelName = typeof model === 'string' ? model : undefined;

    for (let shared = calls.get(recordId); shared; shared = calls.get(recordId)) {
      if (shared.fingerprint !== fingerprint) throw new FingerprintMismatchError();
      const head = await untilAborted(shared.head, request.signal);
      if (head.kind === 'done' && head.released) continue; // not ours to share: claim for ourselves
      const response = respond(request.key, head, true, request.signal);
      void shared.final.then((outcome) => count(recordId, modelName, outcome));
      return response;
    }

    let settle!: (head: Head) => void;
    let settleFinal!: (outcome: LlmOutcome | undefined) => void;
    const entry: Pending = {
      fingerprint,
      head: new Promise<Head>((resolve) => (settle = resolve)),
      final: new Promise((resolve) => (settleFinal = resolve)),
    };
    calls.set(recordId, entry);
    const done = () => {
      if (calls.get(recordId) === entry) calls.delete(recordId);
    };
    let stored!: () => void;
    const isStored = new Promise<void>((resolve) => (stored = resolve));
    idem
      .execute<LlmOutcome>(
        request.key,
        async (ctx) => {
          // a holder before us died mid-call: the provider may have billed it, so it is not sent again
          if (ctx.mayHaveRun) return LOST;
          const response = await send(body);
          const headers = storableHeaders(response.headers, allow).filter(
            ([name]) => name !== 'content-encoding',
          );
          const upstreamHeaders = passableHeaders(response.headers);
          if (RELEASED_STATUSES.has(response.status) || response.body === null) {
            // a released answer is not stored: its caller gets every header (retry-after-ms steers the SDK)
            const bytes = new Uint8Array(await response.arrayBuffer());
            const kept = RELEASED_STATUSES.has(response.status) ? upstreamHeaders : headers;
            return { status: response.status, headers: kept, body: bytes, complete: true };
          }
          const recording = createRecording();
          settle({
            kind: 'live',
            status: response.status,
            headers,
            upstreamHeaders,
            recording,
            stored: isStored,
          });
          const early = { status: response.status, headers, body: new Uint8Array(0), complete: true };
          // a complete stream is counted for its duplicates when its last event arrives
          const onComplete = (usage: Usage | undefined) => settleFinal({ ...early, ...(usage && { usage }) });
          const outcome = await record(request.key, provider, response, headers, recording, onComplete);
          if (!isReleased(outcome)) settleFinal(outcome);
          return outcome;
        },
        {
          fingerprint,
          scope,
          onInProgress: 'wait',
          waitTimeout,
          ...(options.ttl !== undefined && { ttl: options.ttl }),
          ...(options.lease !== undefined && { lease: options.lease }),
          releaseIf: isReleased,
        },
      )
      .then(
        (r) => {
          stored();
          done();
          const released = !r.replayed && isReleased(r.value);
          settleFinal(released ? undefined : r.value);
          settle({ kind: 'done', outcome: r.value, replayed: r.replayed, released });
          if (r.replayed) count(recordId, modelName, r.value);
        },
        (error: unknown) => {
          stored();
          done();
          settleFinal(undefined);
          settle({ kind: 'error', error });
        },
      );
    const head = await untilAborted(entry.head, request.signal);
    return respond(request.key, head, head.kind === 'done' && head.replayed, request.signal);
  };
}

/** The option names every provider's `withIdem` accepts. */
export const LLM_OPTIONS: readonly string[] = ['idem', 'scope', 'waitTimeout', 'ttl', 'lease', 'savings'];

/** Throws `InvalidOptionError` for a missing idem, an unknown option ("did you mean") or a bad value. */
function checkLlmOptions(options: LlmIdemOptions, known: readonly string[]): void {
  if (!options || typeof options !== 'object') {
    throw new InvalidOptionError('withIdem needs { idem }: a createIdem({ store }) instance');
  }
  checkKnownOptions(options, known);
  const idem = options.idem;
  if (!idem || typeof idem.execute !== 'function' || typeof idem.ids !== 'function') {
    throw new InvalidOptionError('withIdem needs { idem }: a createIdem({ store }) instance');
  }
  resolveSavings(options.savings, 'withIdem');
  const { scope, waitTimeout, ttl, lease } = options;
  resolveRunOptions({ scope, waitTimeout, ttl, lease }, 'withIdem');
}

/**
 * Reads the upstream body to its end into `recording`; a cut is stored as incomplete. For a
 * stream, `onComplete` is called with the usage as soon as its last event arrives (before it is
 * passed on, and before the body closes): duplicates following it are counted as they are served.
 */
async function record(
  key: string,
  provider: Provider,
  response: Response,
  headers: [string, string][],
  recording: Recording,
  onComplete: (usage: Usage | undefined) => void,
): Promise<LlmOutcome> {
  const reader = response.body!.getReader();
  const contentType = response.headers.get('content-type');
  let watch = contentType?.includes('text/event-stream') ?? false;
  const decoder = new TextDecoder();
  let tail = '';
  let received = 0;
  let cause: unknown;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (watch) {
        // the last event is looked for in the new bytes and a short tail, not the whole text
        const fresh = tail + decoder.decode(value, { stream: true });
        if (provider.streamComplete(fresh)) {
          watch = false;
          onComplete(
            usageOf(contentType, new TextDecoder().decode(recording.bytes()) + fresh.slice(tail.length)),
          );
        }
        tail = fresh.slice(-512);
      }
      recording.push(value);
    }
  } catch (error) {
    cause = error;
  }
  const body = ownBytes(recording.bytes());
  const text = new TextDecoder().decode(body);
  const isStream = contentType?.includes('text/event-stream') ?? false;
  const complete = cause === undefined && (!isStream || provider.streamComplete(text));
  const unbilled = !complete && cause === undefined && isStream && provider.streamUnbilled?.(text) === true;
  // an unbilled stream reaches the app as the provider sent it: its SDK raises the provider's error
  if (complete || unbilled) recording.end();
  else recording.fail(new IndeterminateOutcomeError(key, received, { cause }));
  const usage = usageOf(contentType, text);
  return {
    status: response.status,
    headers,
    body,
    complete,
    ...(unbilled && { unbilled }),
    ...(usage && { usage }),
  };
}

/** Outcomes whose key is released instead of stored: the provider did not bill them. */
function isReleased(outcome: LlmOutcome): boolean {
  return RELEASED_STATUSES.has(outcome.status) || outcome.unbilled === true;
}

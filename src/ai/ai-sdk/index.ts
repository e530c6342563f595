/**
 * `idem/ai-sdk`: a Vercel AI SDK middleware whose model calls run upstream at most once per
 * key, for any provider. It sits at the language-model level (`wrapGenerate`, `wrapStream`),
 * where results are provider-neutral: the stored outcome is the model's result (content, tool
 * calls, usage, finish reason, response metadata) or its stream parts, replayed as they were.
 *
 * @module
 */
import type { LanguageModelMiddleware } from 'ai';
import type { Duration } from '../../core/duration.ts';
import type { Idem } from '../../core/engine.ts';
import { InvalidOptionError } from '../../core/errors.ts';
import { REPLAYED_HEADER } from '../respond.ts';
import { resolveSavings, type Savings } from '../savings.ts';
import { type KeySource, keyedCall } from './keys.ts';
import { callOnce, type Head } from './once.ts';
import { marked, outcomeError, storedErrorOrThrow, storedGenerate } from './outcome.ts';
import { createPartsRecording } from './parts.ts';
import { recordStream, storedStream, streamHeaders, streamResult } from './stream.ts';
import type { CallParams, CallType, GenerateResult, Model, StreamPart, StreamResult } from './types.ts';

export { RELEASED_STATUSES, REPLAYED_HEADER } from '../call.ts';
export { IndeterminateOutcomeError, isIndeterminateOutcomeError } from '../errors.ts';
export type { Savings } from '../savings.ts';
export { createSavings, type SavingsReport, savingsReport } from '../savings.ts';
export type { KeySource } from './keys.ts';

/**
 * Options of {@link idemMiddleware}.
 *
 * @example
 * const options: IdemMiddlewareOptions = { idem, scope: tenantId, key: ({ type }) => `${jobId}:${type}` };
 */
export interface IdemMiddlewareOptions {
  /** A `createIdem` instance: its store decides how far "once" reaches (process, machine, fleet). */
  idem: Idem;
  /**
   * The logical key when a call brings none (`providerOptions.idem.key` and an
   * `Idempotency-Key` header come first): a string (a middleware per run), or a function of the
   * call. Each model call's key is this plus `:step-<n>`.
   */
  key?: KeySource;
  /** Scope of every record (a tenant…); a call adds `providerOptions.idem.scope`. */
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

/**
 * A middleware for `wrapLanguageModel`: each model call (each step of a tool loop) is claimed
 * in `idem`'s store under `<logical key>:step-<n>` before it leaves; an AI SDK retry, an app
 * retry with the same key, a concurrent duplicate or another process gets the first call's
 * answer (`providerMetadata.idem.replayed`, header `idempotent-replayed`). A timeout or abort
 * leaves the call running; the retry gets its answer. A stream cut by the upstream ends in
 * `IndeterminateOutcomeError`, and so does every retry with its key.
 *
 * @example
 * import { openai } from '@ai-sdk/openai';
 * import { generateText, wrapLanguageModel } from 'ai';
 * import { createIdem } from 'idem';
 * import { idemMiddleware } from 'idem/ai-sdk';
 * import { sqliteStore } from 'idem/sqlite';
 *
 * const idem = createIdem({ store: sqliteStore({ path: '.idem/idem.db' }) });
 * const model = wrapLanguageModel({ model: openai('gpt-4o-mini'), middleware: idemMiddleware({ idem }) });
 * const { text } = await generateText({
 *   model,
 *   prompt: 'Say hi',
 *   providerOptions: { idem: { key: `run-${runId}` } },
 * });
 */
export function idemMiddleware(options: IdemMiddlewareOptions): LanguageModelMiddleware {
  const idem = options?.idem;
  if (!idem || typeof idem.execute !== 'function' || typeof idem.ids !== 'function') {
    throw new InvalidOptionError('idemMiddleware needs { idem }: a createIdem({ store }) instance');
  }
  if (options.key !== undefined && typeof options.key !== 'string' && typeof options.key !== 'function') {
    throw new InvalidOptionError('idemMiddleware: key must be a string or a function of the call');
  }
  const once = {
    savings: resolveSavings(options.savings, 'idemMiddleware'),
    waitTimeout: options.waitTimeout ?? '10m',
    ttl: options.ttl,
    lease: options.lease,
  };

  const start = (params: CallParams, type: CallType, model: Model) => {
    const call = keyedCall(params, type, model, options);
    const signal = params.abortSignal;
    return { call, signal, opts: { ...once, signal } };
  };

  return {
    async wrapGenerate({ params, model }) {
      const { call, opts } = start(params, 'generate', model);
      const { head, replayed } = await callOnce(
        idem,
        call,
        async (signal) => {
          try {
            const result = await model.doGenerate({ ...call.params, abortSignal: signal });
            return { kind: 'generate', result: storedGenerate(result) };
          } catch (error) {
            return await storedErrorOrThrow(error);
          }
        },
        opts,
      );
      const outcome = await settled(head, call.key, replayed);
      if (outcome.kind !== 'generate') throw new TypeError(`a ${outcome.kind} outcome for a generate call`);
      return generateResult(outcome.result, call.key, replayed);
    },

    async wrapStream({ params, model }) {
      const { call, signal, opts } = start(params, 'stream', model);
      const { head, replayed } = await callOnce(
        idem,
        call,
        async (lost, live) => {
          let result: StreamResult;
          try {
            result = await model.doStream({ ...call.params, abortSignal: lost });
          } catch (error) {
            return await storedErrorOrThrow(error);
          }
          const headers = streamHeaders(result);
          const recording = createPartsRecording<StreamPart>();
          live(recording, headers);
          return recordStream(call.key, result.stream, recording, headers);
        },
        opts,
      );
      if (head.kind === 'live') {
        return streamResult(call.key, head.recording.follow(signal, head.stored), head.headers, replayed);
      }
      const outcome = await settled(head, call.key, replayed);
      if (outcome.kind !== 'stream') throw new TypeError(`a ${outcome.kind} outcome for a stream call`);
      return streamResult(call.key, storedStream(call.key, outcome, signal), outcome.headers ?? {}, replayed);
    },
  };
}

/** A settled head's outcome, or the error it raises. */
async function settled(head: Head, key: string, replayed: boolean) {
  if (head.kind === 'error') throw head.error;
  if (head.kind === 'live') throw new TypeError('a live stream for a generate call');
  const error = await outcomeError(key, head.outcome, replayed);
  if (error) throw error;
  return head.outcome;
}

function generateResult(result: GenerateResult, key: string, replayed: boolean): GenerateResult {
  return {
    ...result,
    providerMetadata: marked(result.providerMetadata, key, replayed),
    response: {
      ...result.response,
      headers: replayed
        ? { ...result.response?.headers, [REPLAYED_HEADER]: 'true' }
        : result.response?.headers,
    },
  };
}

export { type ToolCallContext, toolCall } from '../tool-context.ts';
export { type IdempotentToolOptions, idempotentTool, idempotentTools, TOOL_KEY_NAMESPACE } from './tool.ts';

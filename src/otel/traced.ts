/**
 * One span per `run` / `execute`: {@link traced} wraps an idem instance. The span is a child of
 * the caller's active span (the app's HTTP or job span) and is the active span inside the
 * action, so the action's own spans (HTTP clients, database calls) join the same trace.
 *
 * @module
 */
import { FingerprintMismatchError, InProgressError, InvalidOptionError } from '../core/errors.ts';
import type { Action, ExecuteResult, Idem, RunOptions } from '../core/types.ts';
import { otelApi } from './api.ts';
import { errorType } from './errors.ts';
import { checkOptions } from './options.ts';

/** Options of {@link traced}. */
export interface TracedOptions {
  /** The tracer (instrumentation scope) name. Default `'idem'`. */
  tracerName?: string;
  /** Adds `idem.record_id` (the hashed key, never the raw one). Default false. */
  recordId?: boolean;
}

/** `idem.outcome` of a span. */
export type SpanOutcome = 'executed' | 'replayed' | 'mismatch' | 'in_progress' | 'error';

/**
 * The same instance, with a span `idem.run` / `idem.execute` around every call (a no-op without
 * a registered TracerProvider, or without `@opentelemetry/api`).
 *
 * @example
 * import { createIdem, memoryStore } from 'idem';
 * import { traced } from 'idem/otel';
 * const idem = traced(createIdem({ store: memoryStore() }));
 * await idem.run('order-42', () => charge()); // span idem.run, idem.outcome=executed
 */
export function traced(idem: Idem, options: TracedOptions = {}): Idem {
  if (typeof idem?.execute !== 'function')
    throw new InvalidOptionError('traced: pass an instance from createIdem()');
  checkOptions('traced', options, { tracerName: 'string', recordId: 'boolean' });
  const api = otelApi;
  if (!api) return idem;
  const tracerName = options.tracerName ?? 'idem';

  const call = <T>(
    spanName: string,
    key: string,
    action: Action<T>,
    runOptions: RunOptions<T> | undefined,
  ): Promise<ExecuteResult<T>> => {
    // asked per call, not cached: the global provider may be set later, or through another copy
    // of the API (ESM and CommonJS builds share the globals, not their proxy tracers)
    const tracer = api.trace.getTracer(tracerName);
    return tracer.startActiveSpan(spanName, { kind: api.SpanKind.INTERNAL }, async (span) => {
      // the action runs in the span's context even if the engine resumes it elsewhere
      const ctx = api.context.active();
      let ran: { attempt: number; mayHaveRun: boolean } | undefined;
      const wrapped: Action<T> = (actionCtx) => {
        ran = { attempt: actionCtx.attempt, mayHaveRun: actionCtx.mayHaveRun };
        span.setAttributes({ 'idem.attempt': actionCtx.attempt, 'idem.may_have_run': actionCtx.mayHaveRun });
        return api.context.with(ctx, () => action(actionCtx));
      };
      try {
        const result = await idem.execute(key, wrapped, runOptions);
        span.setAttributes({
          'idem.outcome': (result.replayed ? 'replayed' : 'executed') satisfies SpanOutcome,
          'idem.attempt': result.attempt,
          'idem.may_have_run': ran?.mayHaveRun ?? false,
        });
        if (options.recordId) span.setAttribute('idem.record_id', result.recordId);
        return result;
      } catch (error) {
        const outcome: SpanOutcome =
          error instanceof FingerprintMismatchError
            ? 'mismatch'
            : error instanceof InProgressError
              ? 'in_progress'
              : ran
                ? 'executed'
                : 'error';
        span.setAttributes({ 'idem.outcome': outcome, 'error.type': errorType(error) });
        if (options.recordId) span.setAttribute('idem.record_id', idem.ids(key, runOptions?.scope).recordId);
        if (error instanceof Error) span.recordException(error);
        span.setStatus({
          code: api.SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : undefined,
        });
        throw error;
      } finally {
        span.end();
      }
    });
  };

  const wrapper: Idem = Object.create(idem);
  wrapper.execute = (key, action, runOptions) => call('idem.execute', key, action, runOptions);
  wrapper.run = async (key, action, runOptions) => (await call('idem.run', key, action, runOptions)).value;
  return wrapper;
}

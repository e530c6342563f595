/**
 * `logEvents`: the engine's events as structured log lines (pino, or any logger with pino's
 * `level(fields, message)` methods), each with the active span's W3C `traceparent` when
 * `@opentelemetry/api` is installed and a span is active, so a log search finds the trace and a
 * trace finds its lines. Events carry the hashed record id, never the raw key.
 *
 * @module
 */

import { InvalidOptionError } from '../core/errors.ts';
import type { IdemEvent } from '../core/events.ts';
import { otelApi } from './api.ts';
import { errorType } from './errors.ts';

type LogMethod = (fields: Record<string, unknown>, message?: string) => void;

/** A pino-compatible logger: `info`, `warn` and `error` (and `debug` when it has one). */
export interface EventLogger {
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  debug?: LogMethod;
}

/** The level of each event: problems `error`, surprises `warn`, the busy path `debug`. */
export const EVENT_LEVELS: Record<IdemEvent['type'], 'debug' | 'info' | 'warn' | 'error'> = {
  acquired: 'debug',
  completed: 'debug',
  replayed: 'debug',
  wait: 'info',
  in_progress: 'info',
  released: 'info',
  takeover: 'warn',
  mismatch: 'warn',
  too_large: 'warn',
  lease_lost: 'error',
  store_error: 'error',
};

/**
 * The active span's `traceparent` (`00-<trace id>-<span id>-<flags>`), or undefined without
 * `@opentelemetry/api` or an active, valid span.
 *
 * @example
 * logger.info({ traceparent: activeTraceparent() }, 'charging');
 */
export function activeTraceparent(): string | undefined {
  const span = otelApi?.trace.getActiveSpan();
  if (!span || !otelApi) return undefined;
  const c = span.spanContext();
  if (!otelApi.isSpanContextValid(c)) return undefined;
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * An `onEvent` that writes each engine event as one log line: `{ event, recordId, attempt?,
 * durationMs?, shared?, bytes?, errorType?, traceparent? }` with the message `idem <event>`, at
 * the level of {@link EVENT_LEVELS} (`debug` lines go to `info` when the logger has no `debug`).
 *
 * @example
 * import pino from 'pino';
 * import { createIdem, memoryStore } from 'idem';
 * import { logEvents } from 'idem/otel';
 * const idem = createIdem({ store: memoryStore(), onEvent: logEvents(pino()) });
 */
export function logEvents(logger: EventLogger): (event: IdemEvent) => void {
  if (
    !logger ||
    typeof logger.info !== 'function' ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  )
    throw new InvalidOptionError('logEvents needs a pino-compatible logger (info, warn and error methods)');
  return (event) => {
    const type = event.type;
    const fields: Record<string, unknown> = { event: type };
    for (const [name, value] of Object.entries(event)) {
      // a store error's error object stays out of the line (its class or code goes in)
      if (name !== 'type' && !(name === 'error' && type === 'store_error')) fields[name] = value;
    }
    if (type === 'store_error') fields.errorType = errorType(event.error);
    const traceparent = activeTraceparent();
    if (traceparent) fields.traceparent = traceparent;
    const level = EVENT_LEVELS[type] ?? 'info';
    const write = (level === 'debug' ? (logger.debug ?? logger.info) : logger[level]).bind(logger);
    try {
      write(fields, `idem ${type}`);
    } catch {
      // a broken logger never changes what the engine answers
    }
  };
}

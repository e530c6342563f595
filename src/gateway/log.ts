/**
 * The gateway's structured logs: pino JSON lines (one per request, start-up and shutdown, store
 * errors), each request's W3C `traceparent` (the client's when valid, else a new one) on its
 * lines. Never the raw key (the hashed record id instead), never a header value, never a body,
 * never the query (the route name, not the URL).
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { InvalidOptionError } from '../core/errors.ts';

/**
 * Where the gateway's lines go: a pino logger, or anything with the same methods. `warn` (and
 * `error`) also take a plain message; without `info` there are no request / start-up lines.
 */
export interface GatewayLogger {
  warn(message: string): void;
  /** A message, or (pino-style) fields then a message. */
  error?(fieldsOrMessage: Record<string, unknown> | string, message?: string): void;
  info?(fields: Record<string, unknown>, message?: string): void;
  /**
   * Writes out what is buffered, then calls back (pino's `flush`). The gateway calls it last in
   * `close()`, so a process that exits right after sees every line, in order.
   */
  flush?(callback: (error?: Error) => void): void;
}

/** The levels `logLevel`, `--log-level` and `IDEM_LOG_LEVEL` accept. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The level from the config, else `IDEM_LOG_LEVEL`, else `info`; anything else is an
 * `InvalidOptionError` naming where it came from.
 *
 * @example
 * logLevelOf(undefined, 'debug'); // 'debug' (from the environment)
 */
export function logLevelOf(configured: unknown, env: string | undefined): LogLevel {
  const [value, where] =
    configured !== undefined ? [configured, 'logLevel'] : env ? [env, 'IDEM_LOG_LEVEL'] : ['info', ''];
  if (typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value))
    return value as LogLevel;
  throw new InvalidOptionError(
    `${where} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`,
  );
}

/**
 * The gateway's own JSON logger: pino on stdout at `level`, named `idem-gateway`. Its stream
 * writes asynchronously, each line at once (`minLength: 1`), and `flush(cb)` calls back once
 * every line is written. pino's default stream has `minLength: 0`, whose `flush(cb)` calls back
 * at once: a process that exits then loses the line still being written and prints the buffered
 * ones before it (a 200 KB line before 'gateway closed' was lost every time; CI saw 'closed'
 * before 'closing').
 *
 * @example
 * const logger = jsonLogger('info');
 * logger.info?.({ url: 'http://127.0.0.1:8080' }, 'gateway listening');
 */
export function jsonLogger(level: LogLevel): GatewayLogger {
  return pino({ name: 'idem-gateway', level }, pino.destination({ dest: 1, minLength: 1, sync: false }));
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The request's W3C trace context: its `traceparent` when valid (version 00 exactly, a later
 * version with 00's fields first; trace and parent ids not all zeros), else a new sampled one.
 * `received` says whether the client's was kept.
 *
 * @example
 * traceparentOf(undefined).received; // false: a new '00-<32 hex>-<16 hex>-01'
 */
export function traceparentOf(header: string | string[] | undefined): {
  traceparent: string;
  received: boolean;
} {
  const value = typeof header === 'string' ? header.trim() : undefined;
  const m = value === undefined ? null : TRACEPARENT.exec(value);
  if (
    m &&
    m[1] !== 'ff' &&
    !(m[1] === '00' && m[5] !== undefined) &&
    !/^0+$/.test(m[2]!) &&
    !/^0+$/.test(m[3]!)
  ) {
    return { traceparent: value!, received: true };
  }
  return {
    traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    received: false,
  };
}

/** What one request's log line says; filled in by the handler as the request goes. */
export interface RequestNote {
  traceparent: string;
  route: string;
  result: string;
  /** The hashed record id (key + scope), computed only when the line is written. */
  recordId?: (() => string) | undefined;
  /** The dashboard's recent-keys context of this request (src/gateway/recent-keys.ts), if any. */
  tracking?: object | undefined;
}

/**
 * The note of the request being handled (engine events read it for their lines). The one
 * per-request context of the gateway: the recent-keys ring keeps its own state in `tracking`.
 */
export const currentRequest = new AsyncLocalStorage<RequestNote>();

/**
 * Types shared by the HTTP core, the executor and the adapters.
 *
 * @module
 */
import type { ProblemBody } from './problem.ts';

/** What the handler can learn about the idempotent execution it runs in. */
export interface IdempotencyInfo {
  /** The parsed key, as the client sent it. */
  key: string;
  /** The hashed record id (safe to log). */
  recordId: string;
  /** 1 for the first holder; +1 for each takeover of a crashed holder's lease. */
  attempt: number;
  /** True when an earlier holder may have run this request before crashing. */
  mayHaveRun: boolean;
  /** A key derived from the record: pass it to downstream APIs that take idempotency keys. */
  downstreamKey: string;
  /** Aborts when this request loses its lease on the key. */
  signal: AbortSignal;
  /** True when the store was down and the request runs without idempotency (`onStoreError: 'open'`). */
  bypassed: boolean;
}

/** Produces the handler's response for a request. */
export type Next = (request: Request, info: IdempotencyInfo) => Promise<Response>;

/** A request that carries a valid key and is ready to execute. */
export interface IdempotencyPlan {
  key: string;
  scope: string[];
  fingerprint: string;
  /** The request, with its body buffered (readable again). */
  request: Request;
  body: Uint8Array;
}

/** The decision `HttpIdempotency.prepare` makes before anything runs. */
export type Prepared =
  | { action: 'pass' }
  | { action: 'respond'; response: Response }
  | { action: 'execute'; plan: IdempotencyPlan };

/** Reads the request body, throwing `BodyTooLargeError` past `limit` bytes. */
export type BodyReader = (limit: number) => Promise<Uint8Array>;

/** What `onEvent` is told about a keyed request. */
export interface IdempotencyEvent {
  /**
   * `miss`: the handler is about to run for this key (awaited before it runs); `hit`: a stored
   * response is replayed (not awaited); `conflict`: idem answered 409 (in progress) or 422
   * (another request under this key), awaited before the answer is sent.
   */
  type: 'miss' | 'hit' | 'conflict';
  /** The request, as the handler would see it (its body already read). */
  request: Request;
  /** The key as the client sent it. */
  key: string;
  /** `hit`: the replayed status; `conflict`: 409 or 422. */
  status?: number;
}

/**
 * Renders one of idem's own answers in the app's error shape. `problem` is what idem would
 * send: status, type URI, title, detail, `code` and the Stripe-shaped `error`.
 */
export type ProblemRenderer = (problem: ProblemBody, request: Request) => Response | Promise<Response>;

/**
 * The gateway's configuration: what `idem serve --config FILE` reads (JSON) and what
 * `createGateway()` takes. Everything is validated once, at start-up, into compiled routes;
 * a mistake is an `InvalidOptionError` naming the field, never a surprise at request time.
 *
 * ```json
 * {
 *   "upstream": "http://127.0.0.1:4000",
 *   "store": "sqlite:.idem/gateway.db",
 *   "defaults": { "ttl": "24h", "concurrency": "wait" },
 *   "routes": [
 *     { "path": "/v1/chat/completions", "methods": ["POST"], "key": "required",
 *       "concurrency": "attach", "fingerprintHeaders": ["content-type", "openai-organization"],
 *       "excludeFields": ["user"] },
 *     { "path": "/payments", "outcomes": { "500": "release" } },
 *     { "path": "/v1/*", "key": "ignore" }
 *   ]
 * }
 * ```
 *
 * @module
 */

import { readFile } from 'node:fs/promises';
import type { Duration } from '../core/duration.ts';
import type { EncryptionOptions } from '../core/encryption.ts';
import { InvalidOptionError } from '../core/errors.ts';
import type { Store } from '../core/store.ts';
import { checkKnownOptions } from '../http/known.ts';
import type { GatewayLogger, LogLevel } from './log.ts';

/** What a duplicate of an in-flight request gets. */
export type Concurrency = 'reject' | 'wait' | 'attach';

/** `'optional'` passes key-less requests through; `'required'` answers 400; `'ignore'` never enforces. */
export type KeyMode = 'optional' | 'required' | 'ignore';

/** The idempotency policy of the requests a route matches. Unset fields come from `defaults`. */
export interface RoutePolicy {
  /** A label for metrics and the policy document. Default: the path pattern. */
  name?: string;
  /**
   * The path pattern: literal segments, `:name` for one segment, a final `*` for any rest
   * (`/v1/*` matches `/v1/chat/completions`). Matched against the path without the query.
   */
  path: string;
  /** Methods the policy applies to. Default `['POST', 'PATCH']`. GET, HEAD, OPTIONS are never keyed. */
  methods?: string[];
  /** Default `'optional'`. */
  key?: KeyMode;
  /** How long an outcome is kept and replayed. Default `'24h'`. */
  ttl?: Duration;
  /** The lease of the gateway instance forwarding a request, renewed while it streams. Default `'30s'`. */
  lease?: Duration;
  /** Default `'wait'` (the duplicate gets the first request's answer); `'reject'`: 409 + a short Retry-After. */
  concurrency?: Concurrency;
  /** `'required'`: a keyed request without credentials gets 401 `missing-credentials`. Default `'optional'`. */
  scope?: 'optional' | 'required';
  /** Upper bound of the `Retry-After` of a 409 (an estimate, at least 1 s). Between 1s and 60s. Default `'2s'`. */
  maxRetryAfter?: Duration;
  /** How long `wait` / `attach` wait for another instance's outcome before answering 409. Default `'30s'`. */
  waitTimeout?: Duration;
  /** Request headers fingerprinted with the body. Default `['content-type']`. */
  fingerprintHeaders?: string[];
  /** Dot paths left out of a JSON body's fingerprint (`'metadata.trace_id'`, `'items.*.nonce'`). */
  excludeFields?: string[];
  /** Overrides of the outcome policy by status (`"500"`) or class (`"5xx"`): `'store'` or `'release'`. */
  outcomes?: Record<string, 'store' | 'release'>;
  /**
   * A retry that takes over an expired lease (the previous instance died after forwarding):
   * `'fail'` (default) stores a 502 `indeterminate-outcome`; `'reexecute'` forwards again.
   */
  onAbandoned?: 'fail' | 'reexecute';
  /** Response headers replayed in addition to the default allow-list. */
  replayHeaders?: string[];
  /** Longest key, in characters; longer keys get 400 `invalid-key`. Default 255; at most 1024. */
  maxKeyLength?: number;
  /** The header (or headers) marking a replay. Default `'Idempotent-Replayed'`. */
  replayHeader?: string | string[];
  /** Headers sent as `false` on stored 5xx answers, their replays and problems. Default `['x-should-retry']`. */
  shouldRetryHeaders?: string[];
  /** Largest request body, in bytes; larger ones get 413 before the upstream is called. Default 1 MiB. */
  maxRequestBytes?: number;
  /**
   * Largest response body stored, in bytes. A larger response still streams to the client
   * whole; its record keeps status and headers and replays with an empty body and
   * `Idempotency-Replay: body-omitted`. Default 16 MiB.
   */
  maxResponseBytes?: number;
  /**
   * The provider whose wire rules apply on this route (set by a `preset`): a stream without its
   * last event is stored as `indeterminate-outcome`, one that failed before generating anything
   * is released, usage is recorded for savings, and each turn of a conversation under one key
   * is its own record. See docs/ai/gateway-preset.md.
   */
  llm?: 'openai' | 'anthropic';
}

/** Options of `createGateway()`, and the shape of the JSON config file. */
export interface GatewayConfig {
  /**
   * The service behind the gateway: `http(s)://host:port[/base-path]`. Required unless a
   * `preset` gives one (the provider's public API).
   */
  upstream?: string;
  /**
   * An LLM provider preset: its billable endpoints as keyed routes with the LLM policy (see
   * docs/ai/gateway-preset.md). `routes` and `defaults` given with it are applied over it.
   */
  preset?: 'openai' | 'anthropic';
  /** Prices (USD per million tokens) over the shipped defaults, for the savings of `preset` routes. */
  prices?: Record<string, { input: number; output: number; cachedInput?: number }>;
  /** A `Store`, or a spec: `memory`, `sqlite:PATH`, `postgres://…`, `redis://…`. Default `sqlite:.idem/gateway.db`. */
  store?: string | Store;
  /**
   * Bearer token for `/metrics` and `/savings` (also `IDEM_ADMIN_TOKEN`). Without one they answer
   * only clients on this machine (loopback); everyone else gets 401 `admin-token-required`.
   */
  adminToken?: string;
  /**
   * Port of the admin listener: the live dashboard at `/`, `/metrics`, `/savings` and the
   * `/api/…` the dashboard reads, every request behind `Authorization: Bearer <adminToken>`
   * (required with an admin port). `0` picks a free port. Default: no admin listener.
   */
  adminPort?: number;
  /** Address of the admin listener. Default `'127.0.0.1'`. */
  adminHost?: string;
  /**
   * Encrypt stored responses at rest (see docs/engine.md, *Encryption at rest*). Also from
   * `IDEM_ENCRYPTION_KEYS="id:base64key[,id:base64key…]"` (the first key seals).
   */
  encryption?: EncryptionOptions;
  port?: number;
  host?: string;
  /**
   * `idem serve` only: gateway processes sharing the port and the store (see docs/gateway.md,
   * *Workers*). Default: the number of cores (`os.availableParallelism()`); 1 runs one process.
   */
  workers?: number;
  /** First scope part of every record, so several gateways can share one store. Default `'gateway'`. */
  namespace?: string;
  /** The request header carrying the client's key. Default `'idempotency-key'`. */
  keyHeader?: string;
  /**
   * The header that carries the derived key to the upstream (never the client's raw key), or
   * `false` to send none. Default `'idempotency-key'`.
   */
  downstreamKeyHeader?: string | false;
  /**
   * Headers that identify a caller (behind an authenticating proxy: `x-tenant`), used when a
   * request carries them; otherwise the credential headers (`authorization`,
   * `proxy-authorization`, `x-api-key`, cookies) scope the key. Default: none.
   */
  scopeHeaders?: string[];
  /** The cookies that identify a caller (session cookies). Default: all cookies, only on a request without other credentials. */
  scopeCookies?: string[];
  /** Longest wait for the upstream's headers, and between two body chunks. Default `'10m'`. */
  upstreamTimeout?: Duration;
  /** Longest wait for a TCP/TLS connection to the upstream. Default `'10s'`. */
  connectTimeout?: Duration;
  /** Connections kept to the upstream. Default 128. */
  connections?: number;
  /** When the store is down: `'closed'` (default) answers 503; `'open'` forwards, marked `Idempotency-Status: bypassed`. */
  onStoreError?: 'closed' | 'open';
  /** The policy of routes, and of the catch-all route when `routes` is empty. */
  defaults?: Omit<RoutePolicy, 'path' | 'name'>;
  /** First match wins. Requests no route matches pass through. Default: one route `/*`. */
  routes?: RoutePolicy[];
  /** Paths the gateway answers itself, or `false` to turn one off. */
  endpoints?: {
    health?: string | false;
    metrics?: string | false;
    policy?: string | false;
    /** LLM savings as JSON (`GET`). Default `/savings` with a `preset`, else off. */
    savings?: string | false;
  };
  /** Linked (`rel="describedby"`) from 400 `missing-key` answers. Default: the policy endpoint. */
  docsUrl?: string;
  /** How often expired records are purged (in batches), or `false` for never. Default `'5m'`. */
  purgeEvery?: Duration | false;
  /**
   * The level of the gateway's JSON log lines (pino, on stdout): `fatal`, `error`, `warn`,
   * `info` (one line per request, start-up, shutdown), `debug`, `trace` or `silent`. Default
   * `IDEM_LOG_LEVEL`, else `info`. Ignored when `logger` is given.
   */
  logLevel?: LogLevel;
  /**
   * Keep replays, conflicts, takeovers and LLM savings in the store (its `counters`), written
   * every 5 s and on close, for `idem stats` and `idem keys show`. Default true when the store
   * has counters (every built-in store); `false` keeps them only in `/metrics` and `/savings`.
   */
  persistStats?: boolean;
  /**
   * Your own logger (a pino logger, or anything with pino's `info(fields, msg)` / `warn` /
   * `error`): request, start-up, shutdown and store-error lines, the one-time warning about
   * keyed requests without credentials, outcomes that could not be stored and unexpected errors
   * (with the route, never the query). Without `info` only warnings and errors are written.
   * Default: pino on stdout at `logLevel`. Not read from a config file.
   */
  logger?: GatewayLogger;
}

const TOP_KEYS = new Set([
  'upstream',
  'adminToken',
  'adminPort',
  'adminHost',
  'encryption',
  'preset',
  'prices',
  'store',
  'port',
  'host',
  'workers',
  'namespace',
  'keyHeader',
  'downstreamKeyHeader',
  'scopeHeaders',
  'scopeCookies',
  'upstreamTimeout',
  'connectTimeout',
  'connections',
  'onStoreError',
  'defaults',
  'routes',
  'endpoints',
  'docsUrl',
  'purgeEvery',
  'logLevel',
  'persistStats',
  '$schema',
]);

/**
 * Reads a JSON config file and checks its top-level fields (routes are checked when the
 * gateway compiles them).
 *
 * @example
 * const config = await loadGatewayConfig('idem.gateway.json');
 * const gateway = await createGateway({ ...config, port: 8080 });
 */
export async function loadGatewayConfig(path: string): Promise<Partial<GatewayConfig>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InvalidOptionError(`cannot read the config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InvalidOptionError(`the config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidOptionError(`the config file ${path} must hold a JSON object`);
  }
  try {
    checkConfigFields(parsed, [...TOP_KEYS]);
  } catch (error) {
    throw new InvalidOptionError(`${(error as Error).message} in the config file ${path}`);
  }
  return parsed as Partial<GatewayConfig>;
}

/**
 * Refuses unknown top-level fields (and unknown `endpoints` fields) of a gateway config, naming
 * the nearest known one. `createGateway()` also accepts `logger`.
 *
 * @example
 * checkConfigFields({ keyHeadr: 'x' }) // throws: unknown option keyHeadr — did you mean keyHeader?
 */
export function checkConfigFields(config: object, known: readonly string[] = [...TOP_KEYS, 'logger']): void {
  checkKnownOptions(config, known);
  const endpoints = (config as { endpoints?: unknown }).endpoints;
  if (endpoints !== undefined) {
    if (typeof endpoints !== 'object' || endpoints === null)
      throw new InvalidOptionError('endpoints must be an object');
    checkKnownOptions(endpoints, ['health', 'metrics', 'policy', 'savings'], 'endpoints.');
    const seen = new Map<string, string>();
    for (const [name, path] of Object.entries(endpoints)) {
      if (path === false) continue;
      if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//'))
        throw new InvalidOptionError(
          `endpoints.${name} must be false or a path starting with "/", got ${JSON.stringify(path)}`,
        );
      const other = seen.get(path);
      if (other !== undefined)
        throw new InvalidOptionError(
          `endpoints.${name} is ${path}, as endpoints.${other}: give each its own path`,
        );
      seen.set(path, name);
    }
  }
}

/** Where the admin listener listens, and its token. */
export interface AdminListener {
  port: number;
  host: string;
  token: string;
}

/**
 * The admin listener a config asks for (`adminPort`), checked: a port from 0 to 65535, a host,
 * and an admin token (`adminToken`, else `IDEM_ADMIN_TOKEN`), which an admin port requires.
 *
 * @example
 * adminListenerOf({ adminPort: 9090, adminToken: 'f3…' }) // { port: 9090, host: '127.0.0.1', token: 'f3…' }
 * adminListenerOf({}) // undefined
 */
export function adminListenerOf(
  config: Pick<GatewayConfig, 'adminPort' | 'adminHost' | 'adminToken'>,
  env: Record<string, string | undefined> = process.env,
): AdminListener | undefined {
  const { adminPort: port, adminHost: host = '127.0.0.1' } = config;
  if (typeof host !== 'string' || host.trim() === '')
    throw new InvalidOptionError(`adminHost must be a host name or address, got ${JSON.stringify(host)}`);
  if (port === undefined) return undefined;
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535)
    throw new InvalidOptionError(
      `adminPort must be a whole number from 0 to 65535, got ${JSON.stringify(port)}`,
    );
  const token = config.adminToken ?? (env.IDEM_ADMIN_TOKEN || undefined);
  if (token === undefined)
    throw new InvalidOptionError(
      'adminPort needs an admin token: set adminToken (or IDEM_ADMIN_TOKEN, or --admin-token) to a secret, e.g. from `openssl rand -hex 24`',
    );
  return { port, host, token };
}

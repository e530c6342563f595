/**
 * `idem/gateway`: a reverse proxy that makes any HTTP service idempotent. Clients send
 * `Idempotency-Key`; the gateway claims the key in a shared store, forwards once, streams the
 * response back while recording it, and answers every retry from the record. Stateless: any
 * number of instances share one Postgres or Redis store. See docs/gateway.md.
 *
 * @example
 * import { createGateway } from 'idem/gateway';
 * const gateway = await createGateway({
 *   upstream: 'http://127.0.0.1:4000',
 *   store: 'postgres://app@db/app',
 *   routes: [{ path: '/v1/chat/completions', concurrency: 'attach', key: 'required' }],
 * });
 * console.log(await gateway.listen(8080));
 *
 * @module
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolvePrices } from '../ai/prices.ts';
import { createSavings, type Savings } from '../ai/savings.ts';
import { toMs } from '../core/duration.ts';
import { encryptionFromEnv } from '../core/encryption.ts';
import { createIdem, type Idem } from '../core/engine.ts';
import { InvalidOptionError } from '../core/errors.ts';
import type { IdemEvent } from '../core/events.ts';
import { createStatsRecorder } from '../core/stats-recorder.ts';
import type { Store } from '../core/store.ts';
import { CREDENTIAL_HEADERS } from '../http/scope.ts';
import { errorType } from '../otel/errors.ts';
import { DEFAULT_SQLITE_PATH, redact, storeFromSpec } from '../stores/spec.ts';
import { adminGuard } from './admin.ts';
import { localAdminSource } from './admin-local.ts';
import { createAdminServer } from './admin-server.ts';
import type { AdminSource } from './admin-source.ts';
import { adminListenerOf, checkConfigFields, type GatewayConfig } from './config.ts';
import { createProxyHandler } from './handler.ts';
import { applyPreset } from './llm.ts';
import { currentRequest, type GatewayLogger, jsonLogger, logLevelOf } from './log.ts';
import { type GatewayMetrics, gatewayMetrics } from './metrics.ts';
import { policyDocument } from './policy-doc.ts';
import { keyTracker } from './recent-keys.ts';
import { writeProblem } from './respond.ts';
import { compileRoutes } from './routes.ts';
import { createUpstream, type Upstream } from './upstream.ts';

export type { Savings, SavingsReport } from '../ai/savings.ts';
export { redact, storeFromSpec } from '../stores/spec.ts';
export { localAdminSource } from './admin-local.ts';
export { type AdminServerOptions, adminHandler, createAdminServer } from './admin-server.ts';
export type { AdminSource, KeyLifecycle } from './admin-source.ts';
export {
  isServeWorker,
  onShutdown,
  reportFatal,
  reportReady,
  startWorkers,
  type Workers,
  type WorkersOptions,
} from './cluster.ts';
export {
  answerAdminCalls,
  clusterAdminSource,
  primaryAdminSource,
  sumSavings,
} from './cluster-admin.ts';
export { clusterWake } from './cluster-wake.ts';
export type { Concurrency, GatewayConfig, KeyMode, RoutePolicy } from './config.ts';
export { loadGatewayConfig } from './config.ts';
export { applyPreset, type PresetName } from './llm.ts';
export { type GatewayLogger, LOG_LEVELS, type LogLevel, traceparentOf } from './log.ts';
export type { GatewayMetrics } from './metrics.ts';

/** A running (or ready to run) gateway. */
export interface Gateway {
  readonly server: http.Server;
  readonly idem: Idem;
  readonly store: Store;
  readonly metrics: GatewayMetrics;
  /** Duplicate LLM calls suppressed on `preset` / `llm` routes: tokens and money saved. */
  readonly savings: Savings;
  /** What the admin listener shows: metrics, savings, the recent keys (a ring of 500) and key search. */
  readonly admin: AdminSource;
  /** The admin listener (dashboard, `/metrics`, `/savings`, `/api/…`) when `adminPort` is set. */
  readonly adminServer: http.Server | undefined;
  /** The admin listener's URL once `listen()` started it. */
  readonly adminUrl: string | undefined;
  /**
   * Listens on `port` / `host` (defaults from the config, then 8080 and 127.0.0.1), and starts
   * the admin listener when `adminPort` is set; answers the URL.
   */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops accepting, waits for in-flight requests, closes the upstream pool and the store it opened. */
  close(): Promise<void>;
}

/** What a gateway process gets from where it runs (not from a config file). */
export interface GatewayRuntime {
  /**
   * Where `/metrics` and `/savings` read from instead of this gateway alone: with
   * `idem serve --workers N`, every worker's data gathered by the primary (src/gateway/cluster-admin.ts).
   */
  admin?: AdminSource;
}

const DEFAULT_ENDPOINTS: Record<'health' | 'metrics' | 'policy' | 'savings', string | false> = {
  health: '/healthz',
  metrics: '/metrics',
  policy: '/.well-known/idempotency-policy',
  savings: false,
};
const HEALTH_ID = 'idem-gateway-healthz';

/**
 * Builds a gateway from a config: opens the store (a spec is loaded lazily), compiles the
 * routes, and prepares the server. Call `listen()` to start it.
 *
 * @example
 * const gateway = await createGateway({ upstream: 'http://127.0.0.1:4000', store: 'sqlite:.idem/gw.db' });
 * const url = await gateway.listen(0);
 */
export async function createGateway(options: GatewayConfig, runtime: GatewayRuntime = {}): Promise<Gateway> {
  if (options && typeof options === 'object') checkConfigFields(options);
  const config = options && typeof options === 'object' ? applyPreset(options) : options;
  if (!config || typeof config.upstream !== 'string') {
    throw new InvalidOptionError('createGateway needs { upstream: "http://host:port" } (or a preset)');
  }
  const upstreamUrl = config.upstream;
  const routes = compileRoutes(config.routes, config.defaults);
  const keyHeader = (config.keyHeader ?? 'idempotency-key').toLowerCase();
  const downstreamKeyHeader: string | false =
    config.downstreamKeyHeader === false
      ? false
      : (config.downstreamKeyHeader ?? 'idempotency-key').toLowerCase();
  const scopeHeaders = strings(config.scopeHeaders ?? [], 'scopeHeaders').map((h) => h.toLowerCase());
  const scopeCookies =
    config.scopeCookies === undefined ? undefined : strings(config.scopeCookies, 'scopeCookies');
  const onStoreError = config.onStoreError ?? 'closed';
  if (onStoreError !== 'closed' && onStoreError !== 'open') {
    throw new InvalidOptionError(
      `onStoreError must be 'closed' or 'open', got ${JSON.stringify(onStoreError)}`,
    );
  }
  const endpoints = { ...DEFAULT_ENDPOINTS, ...config.endpoints };
  const adminListener = adminListenerOf(config);
  const upstream = createUpstream(config.upstream, {
    timeoutMs: toMs(config.upstreamTimeout ?? '10m', 'upstreamTimeout'),
    connectTimeoutMs: toMs(config.connectTimeout ?? '10s', 'connectTimeout'),
    connections: config.connections ?? 128,
  });
  if (config.persistStats !== undefined && typeof config.persistStats !== 'boolean')
    throw new InvalidOptionError(
      `persistStats must be true or false, got ${JSON.stringify(config.persistStats)}`,
    );
  const ownsStore = typeof config.store !== 'object';
  const store = ownsStore
    ? await storeFromSpec((config.store as string) ?? `sqlite:${DEFAULT_SQLITE_PATH}`)
    : (config.store as Store);
  const logger: GatewayLogger =
    config.logger ?? jsonLogger(logLevelOf(config.logLevel, process.env.IDEM_LOG_LEVEL));
  const metrics = gatewayMetrics();
  const savings = createSavings({ prices: resolvePrices(config.prices, 'prices') });
  savings.onSaved(metrics.llmSaved);
  const stats = persistedStats(config, store, logger);
  if (stats) savings.onSaved(stats.llmSaved);
  const onEvent: GatewayMetrics['onEvent'] = stats
    ? (e) => {
        metrics.onEvent(e);
        stats.onEvent(e);
      }
    : metrics.onEvent;
  const largest = Math.max(...routes.map((r) => r.maxResponseBytes));
  const admitted = adminGuard(config.adminToken ?? (process.env.IDEM_ADMIN_TOKEN || undefined));
  // the dashboard's recent keys, fed by the engine's events and the handler's results
  const tracker = keyTracker({ metrics: { ...metrics, onEvent }, keyHeader });
  const idem = createIdem({
    store: metrics.instrument(store),
    encryption: config.encryption ?? encryptionFromEnv(process.env.IDEM_ENCRYPTION_KEYS),
    onEvent: (event) => {
      tracker.onEvent(event); // also counts it in the metrics and the stored stats
      if (event.type === 'store_error' || event.type === 'lease_lost') logEvent(logger, event);
    },
    // The gateway enforces maxResponseBytes itself; leave room for base64 and headers.
    maxOutcomeBytes: Math.ceil(largest * 1.4) + 1024 * 1024,
  });
  const facts = {
    keyHeader,
    downstreamKeyHeader,
    scopeHeaders: [...scopeHeaders, ...CREDENTIAL_HEADERS],
    onStoreError,
  };
  const policyJson = JSON.stringify(policyDocument(routes, facts), null, 2);
  const proxy = createProxyHandler({
    idem,
    upstream,
    routes,
    metrics: tracker.metrics,
    savings,
    namespace: config.namespace ?? 'gateway',
    logger,
    ...facts,
    scopeHeaders,
    scopeCookies,
    describedBy: `<${config.docsUrl ?? (endpoints.policy || 'https://idem.dev/docs/gateway')}>; rel="describedby"`,
  });

  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    if (req.method === 'GET' && req.url) {
      const url = req.url;
      if (url === endpoints.health) return void health(store, upstream, res);
      if (url === endpoints.metrics)
        return void (admitted(req, res) && sendMetrics(metrics, res, runtime.admin));
      if (endpoints.savings && url === endpoints.savings) {
        if (!admitted(req, res)) return;
        return void sendSavings(savings, res, runtime.admin);
      }
      if (url === endpoints.policy) {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
        return void res.end(policyJson);
      }
    }
    tracker.within(req, res, () => proxy(req, res)); // never rejects: it answers 500 internal-error itself
  });
  const namespace = config.namespace ?? 'gateway';
  const admin = localAdminSource({ metrics, savings, tracker, store, namespace });
  const adminServer = adminListener && createAdminServer(admin, { token: adminListener.token });
  let adminUrl: string | undefined;

  const purgeMs = config.purgeEvery === false ? 0 : toMs(config.purgeEvery ?? '5m', 'purgeEvery');
  let purgeTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | undefined;
  if (purgeMs > 0) {
    purgeTimer = setInterval(() => {
      idem.purgeExpired({ batchSize: 1000, maxBatches: 20 }).catch(() => {});
    }, purgeMs);
    purgeTimer.unref();
  }

  return {
    server,
    idem,
    store,
    metrics,
    savings,
    admin,
    adminServer,
    get adminUrl() {
      return adminUrl;
    },
    async listen(port = config.port ?? 8080, host = config.host ?? '127.0.0.1') {
      const url = await listenOn(server, port, host);
      if (adminServer && adminListener) {
        adminUrl = await listenOn(adminServer, adminListener.port, adminListener.host).catch((error) => {
          server.close();
          throw error;
        });
      }
      logger.info?.(
        {
          url,
          ...(adminUrl && { adminUrl }),
          upstream: redact(upstreamUrl),
          store: describeStore(config.store),
          routes: routes.length,
        },
        'gateway listening',
      );
      return url;
    },
    close() {
      // a second close (shutdown hooks, tests' cleanup) waits for the first instead of failing
      closing ??= (async () => {
        logger.info?.({}, 'gateway closing');
        clearInterval(purgeTimer);
        await Promise.all(
          [server, adminServer].map(
            (s) =>
              s?.listening &&
              new Promise<void>((resolve) => {
                s.close(() => resolve());
                s.closeIdleConnections();
              }),
          ),
        );
        await upstream.close();
        await stats?.close(); // the last counts, before the store closes
        if (ownsStore) await store.close?.();
        logger.info?.({}, 'gateway closed');
        // pino writes asynchronously: a process.exit() with a write in flight would print the
        // buffered 'closed' before the in-flight 'closing' (seen in CI), or lose lines
        await new Promise<void>((resolve) => (logger.flush ? logger.flush(() => resolve()) : resolve()));
      })();
      return closing;
    },
  };
}

/**
 * Listens; answers the URL (`http://127.0.0.1:8080`, IPv6 in brackets).
 *
 * @example
 * const url = await listenOn(http.createServer(handler), 0, '127.0.0.1');
 */
export function listenOn(server: http.Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
    });
  });
}

/** The recorder keeping counts in the store, unless `persistStats: false` or the store has no counters. */
function persistedStats(config: GatewayConfig, store: Store, logger: GatewayLogger) {
  if (config.persistStats === false || !store.counters) return undefined;
  let told = false;
  return createStatsRecorder(store, {
    onError: (error) => {
      if (told) return;
      told = true; // once: a store that is down says so on every request already
      logger.warn(
        `idem: replay and savings counts not written to the store yet (${(error as Error)?.message ?? error}); kept and retried`,
      );
    },
  });
}

/** Describes a store for start-up logs without secrets. */
export function describeStore(spec: string | Store | undefined): string {
  if (spec === undefined) return `sqlite:${DEFAULT_SQLITE_PATH}`;
  return typeof spec === 'string' ? redact(spec) : spec.name;
}

/** A store error or a lost lease as one error line, with the request's traceparent and route. */
function logEvent(logger: GatewayLogger, event: IdemEvent): void {
  const note = currentRequest.getStore();
  const fields: Record<string, unknown> = {
    event: event.type,
    recordId: event.recordId,
    ...(note && { route: note.route, traceparent: note.traceparent }),
  };
  if ('error' in event) {
    fields.errorType = errorType(event.error);
    fields.error = (event.error instanceof Error ? event.error.message : String(event.error)).slice(0, 300);
  }
  const message = event.type === 'store_error' ? 'store error' : 'lease lost: the outcome was not stored';
  if (logger.error)
    logger.error(
      logger.info ? fields : `[idem gateway] ${message} ${JSON.stringify(fields)}`,
      logger.info ? message : undefined,
    );
  else logger.warn(`[idem gateway] ${message} ${JSON.stringify(fields)}`);
}

/** The store answers a read, and the upstream accepts a connection, each within 2 s. */
async function health(store: Store, upstream: Upstream, res: http.ServerResponse): Promise<void> {
  const started = performance.now();
  const [storeError, upstreamError] = await Promise.all([
    within(2000, () => store.get(HEALTH_ID)),
    within(2000, () => upstream.probe(2000)),
  ]);
  const latencyMs = Math.round((performance.now() - started) * 100) / 100;
  const ok = !storeError && !upstreamError;
  const body = {
    status: ok ? 'ok' : 'unavailable',
    store: store.name,
    upstream: upstreamError ? 'unreachable' : 'reachable',
    ...(storeError && { error: storeError }),
    ...(upstreamError && { upstreamError }),
    latencyMs,
  };
  res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Runs `fn` with a deadline; answers the error message, or undefined when it succeeded in time. */
async function within(ms: number, fn: () => Promise<unknown>): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  } finally {
    clearTimeout(timer);
  }
}

function strings(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw new InvalidOptionError(`${field} must be an array of strings`);
  return value;
}

async function sendMetrics(metrics: GatewayMetrics, res: http.ServerResponse, admin?: AdminSource) {
  try {
    const { contentType, text } = admin
      ? await admin.metricsText()
      : { contentType: metrics.registry.contentType, text: await metrics.registry.metrics() };
    res.writeHead(200, { 'content-type': contentType });
    res.end(text);
  } catch (error) {
    writeProblem(res, 'internal-error', `metrics unavailable: ${(error as Error).message}`);
  }
}

async function sendSavings(savings: Savings, res: http.ServerResponse, admin?: AdminSource) {
  try {
    const report = admin ? await admin.savings() : savings.report();
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(report));
  } catch (error) {
    writeProblem(res, 'internal-error', `savings unavailable: ${(error as Error).message}`);
  }
}

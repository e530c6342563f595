/**
 * Idempotency-Key plugin for Fastify 5.
 *
 * Register it (it is not encapsulated, like `fastify-plugin`): its hooks apply to the routes
 * of the context it is registered in. Per route, `config: { idempotency: false }` turns it
 * off and `config: { idempotency: { required: true } }` overrides options.
 *
 * How it maps onto the lifecycle:
 * - `preParsing`: key and method checks (400), the raw body is read with the limit (413) and
 *   fingerprinted, then handed on to Fastify's own content-type parsers, untouched;
 * - `preHandler`: the key is claimed; a replay, 409 or 422 is sent from here and the handler
 *   never runs. Our own replies are marked so the `onSend` hook leaves them alone;
 * - `onSend`: the handler's serialized payload is captured, streamed to the store, and sent;
 * - `onError`: a handler that throws releases the key; the error reply is sent as usual.
 *
 * Validation (400) and content-type (415) errors happen before the claim and are never stored.
 * Replies written to `reply.raw` after `reply.hijack()` cannot be captured: the key is released
 * (a retry runs the handler again) and a warning naming the route is logged once.
 *
 * @module
 */
import { Readable } from 'node:stream';
import type { ReadableStream as NodeWebStream } from 'node:stream/web';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidOptionError } from '../../core/errors.ts';
import {
  createHttpIdempotency,
  type HttpIdempotency,
  type IdempotencyInfo,
  type IdempotencyPlan,
} from '../core.ts';
import { answerBeforeDiscarding, clientSignal, readNodeBody, webRequestOf } from '../node.ts';
import type { IdempotencyOptions } from '../options.ts';
import { NULL_BODY_STATUSES } from '../outcome.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by idem's plugin while the handler runs under an Idempotency-Key; null otherwise. */
    idempotency: IdempotencyInfo | null;
  }
  interface FastifyContextConfig {
    /** `false` turns idempotency off for the route; an object overrides the plugin's options. */
    idempotency?: false | Partial<IdempotencyOptions>;
  }
}

export type { IdempotencyInfo, IdempotencyOptions };

interface State {
  plan?: IdempotencyPlan;
  /** We answered ourselves (400/413/409/422/replay): onSend passes the payload through. */
  ours?: boolean;
  started?: boolean;
  settled?: boolean;
  failed?: { error: unknown };
  resolve?: (response: Response) => void;
  reject?: (error: unknown) => void;
  result?: Promise<Response>;
}

const STATE = Symbol('idem.fastify');
type WithState = FastifyRequest & { [STATE]?: State };

/**
 * A Fastify plugin enforcing the `Idempotency-Key` header (IETF draft) on POST and PATCH.
 *
 * @example
 * import Fastify from 'fastify';
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { idempotency } from 'idem/fastify';
 *
 * const app = Fastify();
 * await app.register(idempotency({ idem: createIdem({ store: sqliteStore() }) }));
 * app.post('/payments', { config: { idempotency: { required: true } } }, async (req, reply) => {
 *   reply.code(201);
 *   return charge(req.body, req.idempotency!.downstreamKey);
 * });
 */
export function idempotency(options: IdempotencyOptions): FastifyPluginCallback {
  if (isFastifyInstance(options)) {
    // `app.register(idempotency, { idem })`: Fastify called the factory as the plugin.
    const error = new InvalidOptionError(
      'idempotency is a factory: register idempotency({ idem }), not idempotency itself',
    );
    // biome-ignore lint/complexity/noArguments: the plugin's `done`, passed by Fastify only in this misuse
    const done = arguments[2] as unknown;
    if (typeof done === 'function') return void done(error) as never;
    throw error;
  }
  const base = createHttpIdempotency(options);
  const perRoute = new WeakMap<object, HttpIdempotency>();
  const coreFor = (request: FastifyRequest): HttpIdempotency | undefined => {
    const override = request.routeOptions.config?.idempotency;
    if (override === false) return undefined;
    if (!override) return base;
    let core = perRoute.get(override);
    if (!core) {
      core = createHttpIdempotency({ ...options, ...override });
      perRoute.set(override, core);
    }
    return core;
  };

  const plugin: FastifyPluginCallback = (fastify, _opts, done) => {
    if (!fastify.hasRequestDecorator('idempotency')) fastify.decorateRequest('idempotency', null);
    // A route's overrides are validated when the route is declared, not at its first request.
    fastify.addHook('onRoute', (route) => {
      const override = route.config?.idempotency;
      if (override && !perRoute.has(override)) {
        perRoute.set(override, createHttpIdempotency({ ...options, ...override }));
      }
    });

    fastify.addHook('preParsing', async (request: WithState, reply, payload) => {
      const core = coreFor(request);
      if (!core) return payload;
      const prepared = await core.prepare(
        webRequestOf(request.raw, request.url, clientSignal(reply.raw)),
        (limit) => readNodeBody(payload, limit),
      );
      if (prepared.action === 'pass') return payload;
      const state: State = {};
      request[STATE] = state;
      if (prepared.action === 'respond') {
        state.ours = true;
        if (request.raw.readableEnded) {
          await sendOwn(reply, prepared.response);
          return undefined;
        }
        // The client may still be sending (over the limit): answer, then drop the rest of the
        // upload before the connection closes, so the client reads the answer instead of a reset.
        reply.hijack();
        for (const [name, value] of Object.entries(reply.getHeaders())) {
          if (value !== undefined) reply.raw.setHeader(name, value as string | string[]);
        }
        await answerBeforeDiscarding(request.raw, reply.raw, prepared.response);
        return undefined;
      }
      state.plan = prepared.plan;
      const replay = Readable.from([Buffer.from(prepared.plan.body)]) as Readable & {
        receivedEncodedLength: number;
      };
      replay.receivedEncodedLength = prepared.plan.body.byteLength;
      return replay;
    });

    fastify.addHook('preHandler', async (request: WithState, reply) => {
      const state = request[STATE];
      const core = coreFor(request);
      if (!state?.plan || !core) return;
      let proceed!: () => void;
      const handlerMayRun = new Promise<'run'>((resolve) => (proceed = () => resolve('run')));
      state.result = core.execute(state.plan, (_request, info) => {
        request.idempotency = info;
        state.started = true;
        const captured = new Promise<Response>((resolve, reject) => {
          state.resolve = resolve;
          state.reject = reject;
        });
        // A hijacked reply finishes without passing onSend: give the key back, and say so once
        // per route (the handler will run again on a retry).
        reply.raw.once('finish', () => {
          if (state.settled) return;
          warnHijacked(core, `${request.method} ${request.routeOptions.url ?? request.url}`);
          settle(state, undefined, new Error('the reply bypassed Fastify (hijacked)'));
        });
        proceed();
        return captured;
      });
      const first = await Promise.race([
        handlerMayRun,
        state.result.then(
          () => 'answer' as const,
          () => 'answer' as const,
        ),
      ]);
      if (first === 'run') return;
      state.ours = true;
      await sendOwn(reply, await state.result); // throws to Fastify's error handler otherwise
      return reply;
    });

    fastify.addHook('onError', async (request: WithState, _reply, error) => {
      const state = request[STATE];
      if (state?.started && !state.settled) state.failed = { error };
    });

    fastify.addHook('onSend', async (request: WithState, reply, payload) => {
      const state = request[STATE];
      if (!state?.started || state.ours || state.settled || !state.result) return payload;
      if (state.failed) {
        settle(state, undefined, state.failed.error);
        await state.result.catch(() => {}); // released
        return payload;
      }
      settle(state, capture(reply, payload));
      const response = await state.result; // the live response: streams as the handler's did
      reply.code(response.status);
      // Headers the core added (Idempotency-Status) or a Response payload carried.
      for (const [name, value] of response.headers) {
        if (name === 'set-cookie' ? payload instanceof Response : !reply.hasHeader(name))
          reply.header(name, value);
      }
      if (response.body === null) return '';
      // Strings and Buffers stay whole (with a Content-Length); streams stay streams (SSE),
      // ending once the outcome is stored.
      if (isNodeStream(payload) || isWebStream(payload) || payload instanceof Response) {
        return Readable.fromWeb(response.body as NodeWebStream<Uint8Array>);
      }
      return Buffer.from(await response.arrayBuffer());
    });
    done();
  };
  Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: 'idem-idempotency',
  });
  return plugin;
}

// --- Internal helpers ---

const hijackWarned = new WeakMap<HttpIdempotency, Set<string>>();

/** Warns once per core and route that a hijacked reply released its key. */
function warnHijacked(core: HttpIdempotency, route: string) {
  const routes = hijackWarned.get(core) ?? new Set<string>();
  hijackWarned.set(core, routes);
  if (routes.has(route)) return;
  routes.add(route);
  try {
    core.options.logger.warn(
      `idem: ${route} replied with reply.hijack(): the reply cannot be captured, so its Idempotency-Key ` +
        'was released and a retry runs the handler again. Turn idempotency off for this route ' +
        '(config: { idempotency: false }) or reply through Fastify.',
    );
  } catch {
    // a logger that throws must not break the reply
  }
}

function settle(state: State, response?: Response, error?: unknown) {
  if (state.settled) return;
  state.settled = true;
  if (response) state.resolve?.(response);
  else state.reject?.(error);
}

async function sendOwn(reply: FastifyReply, response: Response) {
  reply.code(response.status);
  for (const [name, value] of response.headers) reply.header(name, value);
  const bytes = response.body === null ? undefined : Buffer.from(await response.arrayBuffer());
  return reply.send(bytes);
}

/** The handler's reply as a web `Response`, from the payload `onSend` sees. */
function capture(reply: FastifyReply, payload: unknown): Response {
  const headers = new Headers();
  let status = reply.statusCode;
  let body: Uint8Array | ReadableStream<Uint8Array> | null = null;
  if (payload instanceof Response) {
    status = payload.status;
    for (const [name, value] of payload.headers) headers.append(name, value);
    body = payload.body;
  } else if (typeof payload === 'string') body = new TextEncoder().encode(payload);
  else if (payload instanceof Uint8Array) body = new Uint8Array(payload);
  else if (isNodeStream(payload)) body = Readable.toWeb(payload) as ReadableStream<Uint8Array>;
  else if (isWebStream(payload)) body = payload;
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value === undefined || headers.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, String(v));
  }
  const bodiless = body === null || NULL_BODY_STATUSES.has(status);
  return new Response(bodiless ? null : (body as ConstructorParameters<typeof Response>[0]), {
    status,
    headers,
  });
}

const isNodeStream = (p: unknown): p is Readable => !!p && typeof (p as Readable).pipe === 'function';
const isWebStream = (p: unknown): p is ReadableStream<Uint8Array> =>
  !!p && typeof (p as ReadableStream).getReader === 'function';

function isFastifyInstance(value: unknown): boolean {
  const v = value as { register?: unknown; decorateRequest?: unknown } | null;
  return typeof v?.register === 'function' && typeof v.decorateRequest === 'function';
}

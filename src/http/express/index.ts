/**
 * Idempotency-Key middleware for Express 5.
 *
 * - Mount it before the handlers it protects, with or without a body parser before it. If
 *   `express.json()` (or any parser) already read the body, the fingerprint uses `req.body`;
 *   otherwise the middleware reads the raw body itself (with the limit) and sets `req.rawBody`
 *   and `req.body` (JSON parsed, form fields, text as a string, anything else a Buffer).
 * - The handler's response is captured whatever way it is written (`res.json`, `res.send` with
 *   binary, `res.write` streams, `res.sendFile`) and streamed to the client as it is written.
 * - Mount `idempotencyErrors()` after your routes: a handler that throws then releases the key
 *   (a retry runs again). Without it, the 500 written by Express's error handler is stored
 *   like any other 500.
 * - `res.locals.idempotency` holds the key's details while the handler runs.
 *
 * @module
 */
import { parse as parseQueryString } from 'node:querystring';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { isJsonContentType } from '../body.ts';
import { createHttpIdempotency, type IdempotencyInfo } from '../core.ts';
import { checkKnownOptions } from '../known.ts';
import {
  answerBeforeDiscarding,
  clientSignal,
  readNodeBody,
  webRequestOf,
  writersOf,
  writeWebResponse,
} from '../node.ts';
import type { IdempotencyOptions } from '../options.ts';
import { problemResponse } from '../problem.ts';
import { type Capture, captureResponse } from './capture.ts';

export type { IdempotencyInfo, IdempotencyOptions };

const captures = new WeakMap<object, Capture>();

/**
 * Express middleware enforcing the `Idempotency-Key` header (IETF draft) on POST and PATCH.
 *
 * @example
 * import express from 'express';
 * import { createIdem } from 'idem';
 * import { sqliteStore } from 'idem/sqlite';
 * import { idempotency, idempotencyErrors } from 'idem/express';
 *
 * const idem = createIdem({ store: sqliteStore() });
 * const app = express();
 * app.use(express.json());
 * app.post('/payments', idempotency({ idem, required: true }), async (req, res) => {
 *   res.status(201).json(await charge(req.body, res.locals.idempotency.downstreamKey));
 * });
 * app.use(idempotencyErrors());
 */
export function idempotency(options: IdempotencyOptions): RequestHandler {
  const core = createHttpIdempotency(options);
  const { logger } = core.options;

  async function run(req: Request, res: Response, next: (error?: unknown) => void) {
    let continued = false;
    let cap: Capture | undefined;
    try {
      const request = webRequestOf(req, req.originalUrl ?? req.url, clientSignal(res));
      const prepared = await core.prepare(request, (limit) => readExpressBody(req, limit));
      if (prepared.action === 'pass') {
        continued = true;
        return next();
      }
      if (prepared.action === 'respond') {
        if (req.readableEnded) return await writeWebResponse(res, prepared.response, writersOf(res), false);
        return await answerBeforeDiscarding(req, res, prepared.response); // an over-limit body
      }
      const response = await core.execute(prepared.plan, (_request, info) => {
        res.locals.idempotency = info;
        cap = captureResponse(res);
        captures.set(res, cap);
        continued = true;
        next();
        return cap.response;
      });
      await writeWebResponse(res, response, cap?.writers ?? writersOf(res), cap !== undefined);
    } catch (error) {
      const failed = cap as Capture | undefined;
      if (failed?.errorResponse && !res.headersSent) {
        // The handler threw and the key is released; send what the error handler wrote.
        if (error !== failed.failed) safely(() => logger.error('idem: failed after the handler ran', error));
        return await writeWebResponse(res, failed.errorResponse, failed.writers, false);
      }
      if (!continued) return next(error);
      safely(() => logger.error('idem: failed after the handler ran', error));
      if (!res.writableFinished) res.destroy(error instanceof Error ? error : undefined);
    }
  }

  return function idempotency(req, res, next) {
    // Last resort: whatever failed above (a logger that throws, a write that fails) ends this
    // response instead of becoming an unhandled rejection.
    run(req, res, next).catch(() => {
      if (!res.writableFinished) res.destroy();
    });
  };
}

/**
 * Express error middleware that tells `idempotency()` a handler threw, so its key is released
 * and a retry runs the handler again. Mount it after your routes (before or instead of your
 * own error handlers; it passes the error on).
 *
 * It also answers a body parser's own 413 (`express.json()` and friends, which run before
 * `idempotency()` and throw `entity.too.large`) with a 413 `payload-too-large` problem, so an
 * error handler that answers 500 to everything cannot turn it into a 500.
 *
 * @example
 * app.use(express.json());
 * app.post('/orders', idempotency({ idem }), createOrder);
 * app.use(idempotencyErrors());
 * app.use((err, req, res, next) => res.status(500).json({ error: 'internal' }));
 */
export function idempotencyErrors(options: { problemBase?: string } = {}): ErrorRequestHandler {
  checkKnownOptions(options, ['problemBase']);
  return function idempotencyErrors(error, req, res, next) {
    const cap = captures.get(res);
    if (cap) {
      cap.fail(error);
      return next(error);
    }
    if (!isParserTooLarge(error) || res.headersSent) return next(error);
    const limit = (error as { limit?: unknown }).limit;
    const response = problemResponse('payload-too-large', {
      base: options.problemBase,
      detail: typeof limit === 'number' ? `the limit is ${limit} bytes` : undefined,
      headers: { 'x-should-retry': 'false', connection: 'close' },
    });
    writeWebResponse(res, response, writersOf(res), false).then(
      () => {
        if (!req.readableEnded) req.resume(); // discard the rest of the upload
      },
      (e: unknown) => next(e),
    );
  };
}

/** A body parser's "request entity too large" (the `http-errors` shape body-parser throws). */
function isParserTooLarge(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { type?: unknown; status?: unknown; statusCode?: unknown };
  return e.type === 'entity.too.large' || e.status === 413 || e.statusCode === 413;
}

// --- Internal helpers ---

/** Runs `fn` (a user logger), ignoring what it throws. */
function safely(fn: () => void) {
  try {
    fn();
  } catch {
    // a logger that throws must not turn an answered request into an unhandled rejection
  }
}

type BodyCarrier = Request & { rawBody?: Buffer };

async function readExpressBody(req: BodyCarrier, limit: number): Promise<Uint8Array> {
  if (req.readableEnded || req.body !== undefined) return bytesOfParsed(req.body);
  const bytes = await readNodeBody(req, limit);
  req.rawBody = Buffer.from(bytes);
  if (bytes.byteLength > 0) req.body = parseLikeExpress(req.rawBody, req.headers['content-type']);
  return bytes;
}

/** The bytes a parser-produced `req.body` stands for. */
function bytesOfParsed(body: unknown): Uint8Array {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (body instanceof Uint8Array) return new Uint8Array(body);
  if (typeof body === 'string') return new TextEncoder().encode(body);
  return new TextEncoder().encode(JSON.stringify(body));
}

/** What `express.json()`, `.urlencoded()`, `.text()` or `.raw()` would have set. */
function parseLikeExpress(raw: Buffer, contentType: string | undefined): unknown {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (isJsonContentType(type)) {
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      return undefined; // malformed JSON: the handler finds req.rawBody
    }
  }
  if (type === 'application/x-www-form-urlencoded') return { ...parseQueryString(raw.toString('utf8')) };
  if (type.startsWith('text/')) return raw.toString('utf8');
  return raw;
}

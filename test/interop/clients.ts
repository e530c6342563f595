/**
 * The real HTTP clients of the matrix, each configured as docs/clients.md recommends, behind
 * one small interface: create a customer with a key, and say what the application saw (a
 * customer with an id, or the client's own typed error with status and code).
 */
import got, { HTTPError as GotHTTPError, RequestError as GotRequestError } from 'got';
import { createIdempotentFetch } from 'idem/fetch';
import ky, { HTTPError as KyHTTPError } from 'ky';
import Stripe from 'stripe';
import { Agent, RetryAgent, request, errors as undiciErrors } from 'undici';

/**
 * What the application got back. `error` is the class of the client's error; `attempts` is
 * known for clients that report it (idem/fetch).
 */
export type Outcome = (
  | { ok: true; id: string | undefined; replayed: boolean }
  | { ok: false; error: string; status: number | undefined; code: string | undefined }
) & { attempts?: number };

export interface Client {
  name: string;
  /** False for stripe-node: it never retries a 429 (Stripe rate-limits before executing). */
  retries429: boolean;
  create(params: Record<string, string>, key: string): Promise<Outcome>;
  close?(): Promise<void>;
}

/** The credential every client sends (the default scope hashes it). */
export const API_KEY = 'sk_test_interop';
const auth = { authorization: `Bearer ${API_KEY}` };
/** Each attempt's timeout: shorter than the upstream's slow answer (1.5 s). */
export const CLIENT_TIMEOUT_MS = 1000;
/** No client may take longer than this for one call, whatever the server says. */
const HARD_STOP_MS = 12_000;

const codeOf = (body: unknown): string | undefined => {
  const b = body as { code?: unknown; error?: { code?: unknown } } | undefined;
  const code = b?.code ?? b?.error?.code;
  return typeof code === 'string' ? code : undefined;
};
const parse = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};
const isReplay = (get: (name: string) => string | null | undefined) =>
  get('idempotent-replayed') === 'true' || get('x-should-retry') === 'false';
const success = (body: unknown, replayed: boolean): Outcome => ({
  ok: true,
  id: (body as { id?: string } | undefined)?.id,
  replayed,
});

/** stripe-node: always pass `idempotencyKey`; its own retries (409, 5xx, timeouts) keep it. */
export function stripeClient(baseUrl: string): Client {
  const url = new URL(baseUrl);
  const stripe = new Stripe(API_KEY, {
    host: url.hostname,
    port: Number(url.port),
    protocol: 'http',
    timeout: CLIENT_TIMEOUT_MS,
    maxNetworkRetries: 2,
  });
  return {
    name: 'stripe',
    retries429: false,
    async create(params, key) {
      try {
        const customer = await stripe.customers.create(params, { idempotencyKey: key });
        return success(customer, customer.lastResponse.headers['idempotent-replayed'] === 'true');
      } catch (error) {
        if (!(error instanceof Stripe.errors.StripeError)) throw error;
        return { ok: false, error: error.type, status: error.statusCode, code: error.code };
      }
    },
  };
}

/** ky: retry POST on 408/409/429/5xx and on timeouts, cap Retry-After, stop on a replay. */
export function kyClient(baseUrl: string): Client {
  const api = ky.create({
    baseUrl,
    headers: auth,
    timeout: CLIENT_TIMEOUT_MS,
    retry: {
      limit: 3,
      methods: ['post'],
      statusCodes: [408, 409, 429, 500, 502, 503, 504],
      afterStatusCodes: [409, 429, 503],
      maxRetryAfter: 5000,
      retryOnTimeout: true,
      shouldRetry: ({ error }) =>
        error instanceof KyHTTPError && isReplay((n) => error.response.headers.get(n)) ? false : undefined,
    },
  });
  return {
    name: 'ky',
    retries429: true,
    async create(params, key) {
      try {
        const res = await api.post('v1/customers', {
          json: params,
          headers: { 'idempotency-key': key },
          signal: AbortSignal.timeout(HARD_STOP_MS),
        });
        return success(await res.json(), res.headers.get('idempotent-replayed') === 'true');
      } catch (error) {
        if (error instanceof KyHTTPError) {
          return { ok: false, error: error.name, status: error.response.status, code: codeOf(error.data) };
        }
        return { ok: false, error: (error as Error).name, status: undefined, code: undefined };
      }
    },
  };
}

/** got: retry POST on 408/409/429/5xx and timeouts, `maxRetryAfter` above idem's Retry-After, stop on a replay. */
export function gotClient(baseUrl: string): Client {
  const api = got.extend({
    prefixUrl: baseUrl,
    headers: auth,
    timeout: { request: CLIENT_TIMEOUT_MS },
    retry: {
      limit: 3,
      methods: ['POST'],
      statusCodes: [408, 409, 429, 500, 502, 503, 504],
      maxRetryAfter: 5000,
      calculateDelay: ({ error, computedValue }) =>
        error.response && isReplay((n) => error.response?.headers[n] as string | undefined)
          ? 0
          : computedValue,
    },
  });
  return {
    name: 'got',
    retries429: true,
    async create(params, key) {
      try {
        const res = await api.post('v1/customers', {
          json: params,
          headers: { 'idempotency-key': key },
          signal: AbortSignal.timeout(HARD_STOP_MS),
        });
        return success(parse(res.body), res.headers['idempotent-replayed'] === 'true');
      } catch (error) {
        if (error instanceof GotHTTPError) {
          const body = parse(String(error.response.body));
          return { ok: false, error: error.name, status: error.response.statusCode, code: codeOf(body) };
        }
        if (error instanceof GotRequestError)
          return { ok: false, error: error.name, status: undefined, code: error.code };
        throw error;
      }
    },
  };
}

/** undici `request` + `RetryAgent`: POST, 409 and timeouts retried, `maxTimeout` caps Retry-After. */
export function undiciClient(baseUrl: string): Client {
  const dispatcher = new RetryAgent(new Agent({ headersTimeout: CLIENT_TIMEOUT_MS }), {
    methods: ['POST'],
    statusCodes: [409, 429, 500, 502, 503, 504],
    errorCodes: [
      'ECONNRESET',
      'ECONNREFUSED',
      'EPIPE',
      'UND_ERR_SOCKET',
      'UND_ERR_HEADERS_TIMEOUT', // the attempt timed out: retry it, with the same key
    ],
    maxRetries: 2,
    minTimeout: 300,
    maxTimeout: 2000,
  });
  return {
    name: 'undici',
    retries429: true,
    async create(params, key) {
      try {
        const res = await request(`${baseUrl}/v1/customers`, {
          method: 'POST',
          dispatcher,
          headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(params), // a string (or Buffer): RetryAgent can send it again
          signal: AbortSignal.timeout(HARD_STOP_MS),
        });
        const body = parse(await res.body.text());
        if (res.statusCode >= 400)
          return { ok: false, error: 'response', status: res.statusCode, code: codeOf(body) };
        return success(body, res.headers['idempotent-replayed'] === 'true');
      } catch (error) {
        if (error instanceof undiciErrors.RequestRetryError) {
          return { ok: false, error: error.name, status: error.statusCode, code: undefined };
        }
        if (error instanceof undiciErrors.UndiciError) {
          return { ok: false, error: error.name, status: undefined, code: error.code };
        }
        throw error;
      }
    },
    close: () => dispatcher.close(),
  };
}

/** idem/fetch: one key per logical request, retried as the server says. */
export function idemFetchClient(baseUrl: string): Client {
  const post = createIdempotentFetch({
    attemptTimeout: CLIENT_TIMEOUT_MS,
    maxAttempts: 4,
    timeout: HARD_STOP_MS,
  });
  return {
    name: 'idem/fetch',
    retries429: true,
    async create(params, key) {
      const res = await post(
        `${baseUrl}/v1/customers`,
        {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify(params),
        },
        { key },
      );
      const body = parse(await res.text());
      const attempts = res.attempts;
      if (res.status >= 400)
        return { ok: false, error: 'response', status: res.status, code: codeOf(body), attempts };
      return { ...success(body, res.replayed), attempts };
    },
  };
}

/** Every client of the matrix, against one base URL. */
export const CLIENTS = [stripeClient, kyClient, gotClient, undiciClient, idemFetchClient];

/**
 * The contract between the shared HTTP suite and each adapter: an adapter harness builds an
 * app with `idempotency(options)` in front of one framework-neutral test handler, and sends
 * requests to it in-process (Hono `app.request`, Fastify `inject`, Express on port 0,
 * `withIdempotency` called directly).
 */
import { createIdem, type Store, StoreUnavailableError } from 'idem';
import type { IdempotencyInfo, IdempotencyOptions } from 'idem/http';

/** What the test handler sees, whatever the framework. */
export interface TestRequest {
  method: string;
  path: string;
  query: string;
  headers: Headers;
  /** The body as the handler's framework hands it over, as text. */
  body: string;
  info: IdempotencyInfo | undefined;
}

/** What the test handler answers. `chunks` are streamed with a small pause between them. */
export interface TestReply {
  status: number;
  headers?: [string, string][];
  body?: string | Uint8Array;
  chunks?: (string | Uint8Array)[];
}

export type TestHandler = (req: TestRequest) => Promise<TestReply>;

export interface SendInit {
  headers?: [string, string][];
  body?: string | Uint8Array;
  /** Send the body as a stream, without Content-Length. */
  stream?: boolean;
}

export interface TestResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  text(): string;
  json(): Record<string, unknown>;
}

export interface TestApp {
  send(method: string, path: string, init?: SendInit): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface AdapterHarness {
  name: string;
  /** Whether a `Date` header is added by the server itself (Node's http does). */
  serverDate: boolean;
  start(options: IdempotencyOptions, handler: TestHandler): Promise<TestApp>;
}

export function testResponse(status: number, headers: Headers, body: Uint8Array): TestResponse {
  return {
    status,
    headers,
    body,
    text: () => new TextDecoder().decode(body),
    json: () => JSON.parse(new TextDecoder().decode(body)),
  };
}

export async function fromFetchResponse(res: Response): Promise<TestResponse> {
  return testResponse(res.status, res.headers, new Uint8Array(await res.arrayBuffer()));
}

/** A handler reply as a web Response (for Hono and withIdempotency). */
export function replyToResponse(reply: TestReply): Response {
  const headers = new Headers();
  for (const [n, v] of reply.headers ?? []) headers.append(n, v);
  if (reply.chunks) {
    const chunks = reply.chunks;
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        for (const chunk of chunks) {
          c.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
          await pause(5);
        }
        c.close();
      },
    });
    return new Response(body, { status: reply.status, headers });
  }
  const body = reply.status === 204 || reply.status === 304 ? null : (reply.body ?? '');
  return new Response(body as ConstructorParameters<typeof Response>[0], { status: reply.status, headers });
}

/** A request body as a web ReadableStream (no Content-Length). */
export function bodyStream(body: string | Uint8Array): ReadableStream<Uint8Array> {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  return new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.byteLength; i += 512) c.enqueue(bytes.slice(i, i + 512));
      c.close();
    },
  });
}

export const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store whose every call fails, as an unreachable backend does. */
export function downStore(): Store {
  const fail = async (): Promise<never> => {
    throw new StoreUnavailableError('store unreachable (test)');
  };
  return {
    name: 'down',
    claim: fail,
    complete: fail,
    release: fail,
    renew: fail,
    get: fail,
    purgeExpired: fail,
  };
}

/** A quiet logger that records what it was told. */
export function recordingLogger() {
  const lines: string[] = [];
  return {
    lines,
    warn: (m: string) => void lines.push(`warn: ${m}`),
    error: (m: string) => void lines.push(`error: ${m}`),
  };
}

export const engine = (
  store: Store,
  opts: Parameters<typeof createIdem>[0] extends infer O ? Partial<O> : never = {},
) => createIdem({ store, ...opts });

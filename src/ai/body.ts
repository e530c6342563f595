/**
 * What an LLM request's body contributes to its fingerprint, and the body to send upstream.
 * JSON bodies are fingerprinted by their canonical form; multipart bodies (image edits) by their
 * fields, with files hashed, because the multipart boundary changes with every serialization.
 *
 * @module
 */
import { createHash } from 'node:crypto';

/** Whatever `fetch` accepts as a body. */
export type FetchBody = ConstructorParameters<typeof Response>[0];

/** A request body as fingerprinted, and as sent upstream (read once, sent as read). */
export interface ReadBody {
  print: unknown;
  send: FetchBody | null;
}

/**
 * Reads `body` (anything `fetch` accepts) into its fingerprint and a body that can be sent.
 *
 * @example
 * const { print, send } = await readBody(JSON.stringify({ model: 'gpt-x' })); // print = { model: 'gpt-x' }
 */
export async function readBody(body: FetchBody | null | undefined): Promise<ReadBody> {
  if (body === null || body === undefined) return { print: null, send: null };
  if (typeof body === 'string') return { print: parseJson(body), send: body };
  if (body instanceof FormData) return { print: await formPrint(body), send: body };
  const bytes = await new Response(body).bytes();
  return { print: { sha256: sha256(bytes) }, send: bytes };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { text };
  }
}

async function formPrint(form: FormData): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const [name, value] of form) {
    out.push(
      typeof value === 'string'
        ? [name, value]
        : [name, { file: value.name, type: value.type, sha256: sha256(await value.bytes()) }],
    );
  }
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * A short hash of the credential a request carries (`Authorization`, else `x-api-key`, else
 * `api-key`), so two API keys never share records; `'anonymous'` without one.
 *
 * @example
 * credentialScope(new Headers({ authorization: 'Bearer sk-1' })) // 'key:3c1b…'
 */
export function credentialScope(headers: Headers): string {
  const credential = headers.get('authorization') ?? headers.get('x-api-key') ?? headers.get('api-key');
  if (!credential) return 'anonymous';
  return `key:${createHash('sha256').update(credential).digest('hex').slice(0, 32)}`;
}

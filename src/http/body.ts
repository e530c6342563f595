/**
 * Reading request and response bodies: the request body with a limit enforced while reading
 * (a 50 MB upload is refused after the first MiB, not after it has been buffered), and JSON
 * content-type detection for fingerprints.
 *
 * @module
 */

/**
 * Default request body limit: 1 MiB.
 *
 * @example
 * idempotency({ idem, bodyLimit: 4 * DEFAULT_BODY_LIMIT })
 */
export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/**
 * The request body is larger than the limit. Thrown by {@link readLimited}; the HTTP layers
 * answer 413 `payload-too-large`.
 *
 * @example
 * try { await readLimited(req.body, 1024) } catch (e) { if (e instanceof BodyTooLargeError) … }
 */
export class BodyTooLargeError extends Error {
  override name = 'BodyTooLargeError';
  readonly limit: number;
  constructor(limit: number) {
    super(`the request body is over the limit of ${limit} bytes`);
    this.limit = limit;
  }
}

/**
 * Reads a body stream into one `Uint8Array`, throwing {@link BodyTooLargeError} as soon as more
 * than `limit` bytes arrived (the rest is left unread for the runtime to drop).
 *
 * @example
 * const bytes = await readLimited(request.body, 1024 * 1024);
 */
export async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      // Stop reading, but do not cancel: a cancelled body makes Node's web bridges destroy the
      // socket, and a client still sending then gets EPIPE instead of our 413. Left unread, the
      // runtime drops the rest of the upload after the response, as it does for any handler.
      reader.releaseLock();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  return concatBytes(chunks, size);
}

/**
 * Joins chunks into one `Uint8Array`.
 *
 * @example
 * concatBytes([new Uint8Array([1]), new Uint8Array([2])]) // Uint8Array [1, 2]
 */
export function concatBytes(chunks: readonly Uint8Array[], size?: number): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(size ?? chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/**
 * True for JSON media types: `application/json` and any `+json` suffix, parameters ignored.
 *
 * @example
 * isJsonContentType('application/merge-patch+json; charset=utf-8') // true
 */
export function isJsonContentType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  const essence = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return essence === 'application/json' || /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+json$/.test(essence);
}

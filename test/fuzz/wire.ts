/**
 * The fuzz slice's HTTP/1.1 client over raw `node:net` sockets: it sends exactly the bytes a
 * case is made of (no client-side validation), reads the first response with a deadline and
 * parses it (Content-Length, chunked, or until close).
 */
import { connect } from 'node:net';

/** What came back for one raw request. */
export type WireReply =
  | { kind: 'response'; status: number; headers: Map<string, string[]>; body: Buffer }
  | { kind: 'closed'; detail: string } // the connection ended before a whole response head
  | { kind: 'timeout' };

/** Sends `bytes` to 127.0.0.1:`port` and reads one response within `timeoutMs`. */
export function sendRaw(
  port: number,
  bytes: Buffer,
  options: { timeoutMs: number; halfClose?: boolean; trickle?: boolean },
): Promise<WireReply> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (reply: WireReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), options.timeoutMs);
    const tryParse = (ended: boolean) => {
      const parsed = parseResponse(Buffer.concat(chunks), ended);
      if (parsed) finish(parsed);
      else if (ended) finish({ kind: 'closed', detail: describeClosed(chunks) });
    };
    socket.on('connect', async () => {
      if (!options.trickle) {
        // Written in one go; a server that answers early and closes may reset the rest.
        socket.write(bytes, () => {
          if (options.halfClose) socket.end();
        });
        return;
      }
      // A client that keeps sending in pieces while the server may already have answered.
      for (let i = 0; i < bytes.length && !settled && !socket.destroyed; i += 32 * 1024) {
        await new Promise<void>((r) => socket.write(bytes.subarray(i, i + 32 * 1024), () => r()));
        await new Promise((r) => setImmediate(r));
      }
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true));
    socket.on('close', () => tryParse(true));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // A reset after a whole response arrived still counts as that response.
      const parsed = parseResponse(Buffer.concat(chunks), true);
      finish(parsed ?? { kind: 'closed', detail: e.code ?? e.message });
    });
  });
}

function describeClosed(chunks: Buffer[]): string {
  const got = Buffer.concat(chunks);
  return got.length === 0
    ? 'closed without a response'
    : `partial: ${JSON.stringify(got.subarray(0, 60).toString('latin1'))}`;
}

/** The first whole response in `data`, or undefined when more bytes are needed. */
export function parseResponse(data: Buffer, ended: boolean): WireReply | undefined {
  const headEnd = data.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const lines = data.subarray(0, headEnd).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? Number.NaN);
  if (!Number.isFinite(status)) return { kind: 'closed', detail: `garbage: ${JSON.stringify(lines[0])}` };
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  const rest = data.subarray(headEnd + 4);
  const response = (body: Buffer): WireReply => ({ kind: 'response', status, headers, body });
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return response(Buffer.alloc(0));
  const length = headers.get('content-length')?.[0];
  if (length !== undefined) {
    const n = Number(length);
    if (rest.length >= n) return response(rest.subarray(0, n));
    return ended ? response(rest) : undefined;
  }
  if ((headers.get('transfer-encoding')?.[0] ?? '').toLowerCase().includes('chunked')) {
    const body = dechunk(rest);
    if (body) return response(body);
    return ended ? response(rest) : undefined;
  }
  return ended ? response(rest) : undefined;
}

function dechunk(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (!Number.isFinite(size)) return undefined;
    if (size === 0) return Buffer.concat(parts);
    if (data.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** The first value of a header of a parsed reply. */
export function header(reply: WireReply, name: string): string | undefined {
  return reply.kind === 'response' ? reply.headers.get(name)?.[0] : undefined;
}

/**
 * Property-based slice (fast-check, fixed seed): request parsing at the HTTP level, through
 * the gateway and the Express adapter over raw sockets. For any key field value, target and
 * JSON body: the answer is documented (see check.ts), and the key is accepted or refused
 * exactly as the Idempotency-Key grammar says (a bare token of 1-255 visible ASCII characters
 * without a comma; quoted strings are left to the unit tests).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import { createIdem, memoryStore } from 'idem';
import { idempotency } from 'idem/express';
import { createGateway, type Gateway } from 'idem/gateway';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FuzzCase, SEED, toBytes } from './cases.ts';
import { EXEC_HEADER, execBody, judge } from './check.ts';
import { header, sendRaw } from './wire.ts';

const RUNS = 150;
const servers: http.Server[] = [];
let gateway: Gateway;
const ports: Record<'gateway' | 'express', number> = { gateway: 0, express: 0 };

async function listen(server: http.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  const answer = (id: string | undefined, body: Buffer, res: http.ServerResponse) => {
    res.writeHead(201, { 'content-type': 'application/json', [EXEC_HEADER]: '1' });
    res.end(execBody(id, body));
  };
  const upstream = await listen(
    http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => answer(req.headers['x-fuzz-case'] as string, Buffer.concat(chunks), res));
    }),
  );
  gateway = await createGateway({
    upstream: `http://127.0.0.1:${upstream}`,
    store: 'memory',
    purgeEvery: false,
    logger: { warn: () => {} },
  });
  ports.gateway = Number(new URL(await gateway.listen(0, '127.0.0.1')).port);
  const app = express();
  app.use(idempotency({ idem: createIdem({ store: memoryStore() }), logger: { warn() {}, error() {} } }));
  app.use((req: express.Request & { rawBody?: Buffer }, res) =>
    answer(req.get('x-fuzz-case'), req.rawBody ?? Buffer.alloc(0), res),
  );
  ports.express = await listen(http.createServer(app));
});

afterAll(async () => {
  await gateway?.close();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** Field values Node's parser accepts (no CR, LF, NUL or other controls but tab). */
const fieldValue = fc
  .oneof(
    fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.stringMatching(/^[\x21-\x7e]{250,260}$/),
    fc.constantFrom('', ' ', 'a,b', '"q"', '"unterminated', 'ключ', 'ok-key'),
  )
  .filter((v) => [...v].every((ch) => ch === '\t' || (ch >= ' ' && ch !== '\u007f')));

/** Origin-form targets (what a normal client sends). */
const originTarget = fc.oneof(
  fc.constant('/payments'),
  fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
);
/** Any target a client can put on the request line. */
const anyTarget = fc.oneof(
  originTarget,
  fc
    .string({ unit: 'grapheme-ascii', maxLength: 30 })
    .map((s) => s.replace(/[\s#]/g, ''))
    .filter((s) => s !== ''),
  fc.constantFrom('*', '//[x/p', '//a:99999/p', 'http://h/p', '/%zz', 'ftp://h/p'),
);
const validKey = fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/);

/** The grammar's verdict on a bare field value: true valid, false invalid, undefined not modelled. */
function keyIsValid(value: string): boolean | undefined {
  const v = value.replace(/^[ \t]+|[ \t]+$/g, '');
  if (v.startsWith('"')) return undefined;
  return v.length >= 1 && v.length <= 255 && !v.includes(',') && /^[\x21-\x7e]+$/.test(v);
}

const PROPERTIES = {
  'any key field on an origin-form target': [fieldValue, originTarget],
  'any request target with a valid key': [validKey, anyTarget],
} as const;

describe('property: request parsing at the HTTP level', () => {
  for (const name of ['gateway', 'express'] as const) {
    for (const [title, [keys, targets]] of Object.entries(PROPERTIES)) {
      it(`${name}: ${title}: a documented answer, the key judged by the grammar`, async () => {
        const quiet = vi.spyOn(console, 'error').mockImplementation(() => {});
        let n = 0;
        const property = fc.asyncProperty(
          keys,
          targets,
          fc.json({ maxDepth: 3 }),
          async (key, path, json) => {
            const c: FuzzCase = {
              id: `p${name[0]}${n++}`,
              family: 'property',
              variant: title,
              method: 'POST',
              target: path,
              headers: [
                ['Idempotency-Key', key],
                ['Authorization', 'Bearer property'],
                ['Content-Type', 'application/json'],
              ],
              body: Buffer.from(json),
              framing: 'length',
            };
            const reply = await sendRaw(ports[name], toBytes(c), { timeoutMs: 8000 });
            const problems = judge(c, reply).map((v) => `${v.cause}: ${v.detail}`);
            expect(problems).toEqual([]);
            const valid = keyIsValid(key);
            if (reply.kind !== 'response' || header(reply, 'content-type') === undefined) return;
            // a target refused first (e.g. a path starting with "//") leaves the key unjudged
            if (reply.status === 400 && reply.body.toString().includes('invalid-target')) return;
            const refusedKey = reply.status === 400 && reply.body.toString().includes('invalid-key');
            if (valid === true) expect(refusedKey, `key ${JSON.stringify(key)} is valid`).toBe(false);
            if (valid === false) expect(refusedKey, `key ${JSON.stringify(key)} is invalid`).toBe(true);
          },
        );
        try {
          await fc.assert(property, { seed: SEED | 0, numRuns: RUNS });
        } finally {
          quiet.mockRestore();
        }
      }, 120_000);
    }
  }
});

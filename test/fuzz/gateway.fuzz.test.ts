/**
 * Fuzz slice, gateway: generated hostile requests through `createGateway` (in process, memory
 * store) to a counting upstream on loopback, over raw sockets and fetch. Seeded: set
 * IDEM_FUZZ_SEED to replay a run. See check.ts for what is asserted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGateway, type Gateway } from 'idem/gateway';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FuzzCase, generateGroups, SEED } from './cases.ts';
import {
  createLedger,
  doubleRuns,
  EXEC_HEADER,
  execBody,
  probeUnhandled,
  report,
  runGroups,
  sampleRss,
  sliceTimeout,
  type Violation,
} from './check.ts';

/** `npm run fuzz` sets IDEM_FUZZ_REQUESTS=100000 for the full run. */
const REQUESTS = Number(process.env.IDEM_FUZZ_REQUESTS ?? 5200);
const ledger = createLedger();
let upstream: http.Server;
let gateway: Gateway;
let url: string;
let upstreamCalls = 0;

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    upstreamCalls++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const caseId = req.headers['x-fuzz-case'] as string | undefined;
      ledger.record(caseId, req.headers['x-fuzz-logical'] as string | undefined);
      res.writeHead(201, { 'content-type': 'application/json', [EXEC_HEADER]: '1' });
      res.end(execBody(caseId, Buffer.concat(chunks)));
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as AddressInfo).port;
  gateway = await createGateway({
    upstream: `http://127.0.0.1:${port}`,
    store: 'memory',
    purgeEvery: false,
    connectTimeout: '2s',
    upstreamTimeout: '5s',
    logger: { warn: () => {} },
  });
  url = await gateway.listen(0, '127.0.0.1');
});

afterAll(async () => {
  await gateway?.close();
  upstream?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
});

describe('fuzz: gateway', () => {
  it(
    `${REQUESTS} generated requests: documented answers only, no 5xx, no hang, at most one run per key`,
    async () => {
      const probe = probeUnhandled();
      // The gateway logs each failed request; count them instead of flooding the output.
      const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
      const groups = generateGroups(SEED, REQUESTS, 'g');
      const rss = sampleRss(); // after the cases are built: what serving them costs
      const cases = new Map<string, FuzzCase>(groups.flatMap((g) => g.cases.map((c) => [c.id, c])));
      const port = Number(new URL(url).port);
      const { violations, sent } = await runGroups(groups, { port, url }, 24);
      const all: Violation[] = [...violations, ...doubleRuns(ledger, cases)];
      probe.stop();
      const errorsLogged = logged.mock.calls.length;
      logged.mockRestore();
      // The gateway still serves a normal request afterwards.
      const after = await fetch(`${url}/payments`, {
        method: 'POST',
        headers: {
          'idempotency-key': 'after-fuzz',
          authorization: 'Bearer after',
          'content-type': 'application/json',
        },
        body: '{"ok":true}',
        signal: AbortSignal.timeout(5000),
      }).catch((e: Error) => e);
      const memory = rss.stop();
      const text = `${report('gateway', SEED, sent, all)}\n  (the gateway logged ${errorsLogged} errors; ${memory.text})`;
      console.log(text);
      expect(sent).toBeGreaterThanOrEqual(REQUESTS);
      expect(memory.peak - memory.start, `RSS bounded: ${memory.text}`).toBeLessThan(512);
      expect(upstreamCalls).toBeGreaterThan(0);
      expect(probe.seen, 'unhandled rejections / uncaught exceptions').toEqual([]);
      expect(
        after instanceof Response ? after.status : String(after),
        'a normal request after the fuzz',
      ).toBe(201);
      expect(all.length, text).toBe(0);
    },
    sliceTimeout(REQUESTS),
  );
});

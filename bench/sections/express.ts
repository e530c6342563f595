/**
 * Issue 14: idem's Express middleware next to `express-idempotency` (a peer with a pluggable
 * data adapter: its in-memory one, and `express-idempotency-redis-adapter`), in one Express app
 * over real HTTP: fresh keys and replays with 1 and 16 concurrent clients, and a duplicate
 * burst (16 concurrent requests with one fresh key) that counts how often the handler ran.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createClient } from '@redis/client';
import express, { type RequestHandler } from 'express';
import {
  getSharedIdempotencyService,
  type IIdempotencyDataAdapter,
  idempotency as peerIdempotency,
} from 'express-idempotency';
import * as redisAdapterModule from 'express-idempotency-redis-adapter';
import { createIdem, memoryStore } from 'idem';
import { idempotency, idempotencyErrors } from 'idem/express';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, reachable, SERVICES } from '../lib/env.ts';
import { measure } from '../lib/measure.ts';
import { emptySection, type SectionResult, throughputTable } from '../lib/report.ts';
import { LEASE_MS, REPLAY_KEYS, TTL_MS } from '../lib/workload.ts';

const BURST_CALLERS = 16;
// a CommonJS module with `exports.default`: Node's default import is the exports object
type AdapterClass = new (o: { connectionInstance: unknown; ttl?: number }) => IIdempotencyDataAdapter;
const adapterExports = redisAdapterModule as unknown as { default: AdapterClass | { default: AdapterClass } };
const RedisAdapter: AdapterClass =
  'default' in adapterExports.default ? adapterExports.default.default : adapterExports.default;

export async function expressSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('express', 'Express middleware: idem vs express-idempotency (issue 14)');
  const redisUp = await reachable(SERVICES.redis);
  const run = randomBytes(4).toString('hex');
  const prefix = `bench-express-${run}`;
  const runs = new Map<string, number>();
  let handlerRuns = 0;

  // the handler: counts its runs per key, answers 201 with a body that names the run
  const handler: RequestHandler = (req, res) => {
    if (req.get('x-peer') && getSharedIdempotencyService().isHit(req)) return; // the peer's documented check
    const key = req.get('idempotency-key') ?? '';
    handlerRuns++;
    runs.set(key, (runs.get(key) ?? 0) + 1);
    res.status(201).json({ receipt: `r_${handlerRuns}`, amount: 1240.55 });
  };
  const memIdem = createIdem({ store: memoryStore(), ttl: TTL_MS, lease: LEASE_MS });
  const redisIdem = redisUp
    ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix }), ttl: TTL_MS, lease: LEASE_MS })
    : undefined;
  const peerRedis = redisUp ? createClient({ url: SERVICES.redis }) : undefined;
  await peerRedis?.connect();

  const app = express();
  app.use(express.json());
  app.post('/plain', handler);
  app.post('/idem-memory', idempotency({ idem: memIdem, required: true }), handler);
  if (redisIdem) app.post('/idem-redis', idempotency({ idem: redisIdem, required: true }), handler);
  // express-idempotency keeps one shared service: each route gets its own middleware instance
  app.post('/peer-memory', peerIdempotency(), handler);
  if (peerRedis) {
    const dataAdapter = new RedisAdapter({ connectionInstance: peerRedis, ttl: TTL_MS / 1000 });
    app.post('/peer-redis', peerIdempotency({ dataAdapter }), handler);
  }
  app.use(idempotencyErrors());
  app.use(((err, _req, res, _next) => {
    if (!res.headersSent)
      res.status(res.statusCode >= 400 ? res.statusCode : 500).json({ error: err.message });
  }) as express.ErrorRequestHandler);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const targets = [
    { name: 'no idempotency', path: '/plain' },
    { name: 'idem/express, memory', path: '/idem-memory' },
    ...(redisIdem ? [{ name: 'idem/express, Redis', path: '/idem-redis' }] : []),
    { name: 'express-idempotency, memory adapter', path: '/peer-memory' },
    ...(peerRedis ? [{ name: 'express-idempotency, Redis adapter', path: '/peer-redis' }] : []),
  ];
  const post = async (path: string, key: string) => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer bench', // one caller: idem scopes keys by credentials
        'idempotency-key': key,
        ...(path.startsWith('/peer') && { 'x-peer': '1' }),
      },
      body: JSON.stringify({ amount: 1240.55 }),
    });
    const body = await res.text();
    if (res.status >= 300) throw new Error(`${res.status} ${body.slice(0, 120)}`);
    return body;
  };

  try {
    // the replay keys: one completed request each, before anything is measured
    for (const t of targets)
      for (let i = 0; i < REPLAY_KEYS; i++) await post(t.path, `${prefix}-replay-${t.path}-${i}`);
    const runsBeforeReplays = handlerRuns;
    let n = 0;
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      const fresh = await measure(
        targets.map((t, i) => ({
          name: t.name,
          ...(i > 0 && { baseline: 'no idempotency' }),
          op: () => post(t.path, `${prefix}-fresh-${n++}`),
        })),
        opts,
      );
      s.tables.push(throughputTable(`Fresh keys over HTTP, ${concurrency} concurrent client(s)`, fresh));
    }
    const replayRunsBefore = handlerRuns;
    for (const concurrency of [1, 16]) {
      const opts = { concurrency, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
      const replay = await measure(
        targets
          .filter((t) => t.path !== '/plain')
          .map((t) => ({
            name: t.name,
            op: (i: number) => post(t.path, `${prefix}-replay-${t.path}-${i % REPLAY_KEYS}`),
          })),
        opts,
      );
      s.tables.push(
        throughputTable(`Replays of completed keys, ${concurrency} concurrent client(s)`, replay),
      );
    }
    const replayRuns = handlerRuns - replayRunsBefore;
    s.checks.push({
      target: 'replays never run the handler (both libraries)',
      actual: `${replayRuns} handler runs during ${'replays'}`,
      met: replayRuns === 0,
    });

    // the duplicate burst: 16 concurrent requests with one fresh key, many times
    const rows: string[][] = [];
    const bursts = cfg.quick ? 20 : 100;
    for (const t of targets.filter((x) => x.path !== '/plain')) {
      let maxRuns = 0;
      let dupBursts = 0;
      let errors = 0;
      for (let b = 0; b < bursts; b++) {
        const key = `${prefix}-burst-${t.path}-${b}`;
        await Promise.all(
          Array.from({ length: BURST_CALLERS }, () => post(t.path, key).catch(() => errors++)),
        );
        const r = runs.get(key) ?? 0;
        maxRuns = Math.max(maxRuns, r);
        if (r > 1) dupBursts++;
      }
      rows.push([t.name, String(bursts), String(dupBursts), String(maxRuns), String(errors)]);
      s.checks.push({
        target: `${t.name}: the handler runs once per key under a ${BURST_CALLERS}-request burst`,
        actual: `${dupBursts} of ${bursts} bursts ran it more than once (at most ${maxRuns} times)`,
        met: t.path.startsWith('/idem') ? dupBursts === 0 : undefined,
      });
    }
    s.tables.push({
      title: `Duplicate burst: ${BURST_CALLERS} concurrent requests with one fresh key`,
      columns: [
        'middleware',
        'bursts',
        'bursts that ran the handler twice or more',
        'most runs of one key',
        'requests answered with an error (409 in progress …)',
      ],
      rows,
    });
    s.facts.push(
      `express ${installedVersion('express')}, express-idempotency ${installedVersion('express-idempotency')}, express-idempotency-redis-adapter ${installedVersion('express-idempotency-redis-adapter')}`,
      redisUp
        ? `Redis ${SERVICES.redis} (shared; keys under ${prefix})`
        : 'Redis not reachable: the Redis rows are missing',
      `${runsBeforeReplays} handler runs to set up ${REPLAY_KEYS} replay keys per middleware`,
    );
    s.notes.push(
      'One Express 5 app, one route per middleware, the same handler (counts its runs per key, answers 201 JSON), driven over HTTP by `fetch` (keep-alive) from the same process. Fresh keys: a new `Idempotency-Key` per request. Replays: keys completed before measuring.',
      'express-idempotency answers a replay from the middleware but still calls `next()`: its docs have the handler check `isHit(req)` and return, which this handler does. It looks the key up and then creates it in two requests to its adapter, so concurrent first requests with one key can all miss and all run; idem claims the key atomically and makes the others wait for the outcome.',
      'The machine is shared and loaded (see the run facts): compare rows of one run, not runs.',
    );
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await memIdem.close();
    await redisIdem?.close();
    if (peerRedis) {
      for await (const keys of peerRedis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 }))
        for (const k of [keys].flat()) await peerRedis.del(k);
      await peerRedis.quit();
    }
    if (redisUp) {
      const r = new Redis(SERVICES.redis);
      const keys = await r.keys(`${prefix}*`);
      if (keys.length) await r.del(...keys);
      r.disconnect();
    }
  }
  return s;
}

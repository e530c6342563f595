/**
 * Issue 9: LLM calls through idem next to the bare `openai` SDK, against the local
 * OpenAI-compatible server of the tests (test/ai/server.ts: answers at once, so every
 * microsecond measured is client-side or idem's). The server and the gateway run in child
 * processes (bench/lib/llm-child.ts); the SDK clients and withIdem in this one.
 *
 * ```
 * fresh call     bare SDK │ withIdem on SQLite │ withIdem on Redis       (a new key per call)
 * replay         bare SDK (the upstream answers) │ withIdem on SQLite replaying one stored key
 * first byte     bare SDK │ withIdem (SQLite) │ bare SDK through `idem serve --preset openai`
 *                (stream opened, first content chunk read, then the app stops reading)
 * ```
 *
 * @module
 */

import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem, type Idem } from 'idem';
import { withIdem } from 'idem/openai';
import { redisStore } from 'idem/redis';
import { sqliteStore } from 'idem/sqlite';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import type { RunConfig } from '../lib/config.ts';
import { installedVersion, reachable, SERVICES } from '../lib/env.ts';
import { type Case, measure } from '../lib/measure.ts';
import { unlinkMatching } from '../lib/redis-keys.ts';
import { emptySection, fmtUs, type SectionResult, throughputTable } from '../lib/report.ts';

const BARE = 'bare openai SDK';
const SQLITE = 'withIdem, sqliteStore';
const REDIS = 'withIdem, redisStore';
const GATEWAY = 'bare SDK → idem serve --preset openai (memory store)';
const CHILD = new URL('../lib/llm-child.ts', import.meta.url).pathname;

/** Starts a child (server or gateway) and resolves with its URL and a way to ask it things. */
async function child(...args: string[]) {
  const proc: ChildProcess = fork(CHILD, args, { execArgv: ['--conditions=idem-source'], stdio: 'inherit' });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('message', (m: { type: string; url?: string; message?: string }) =>
      m.type === 'ready' ? resolve(m.url!) : reject(new Error(m.message)),
    );
    proc.once('exit', (code) => reject(new Error(`llm-child ${args[0]} exited ${code}`)));
  });
  return {
    url,
    count: (key: string) =>
      new Promise<number>((resolve) => {
        proc.once('message', (m: { n: number }) => resolve(m.n));
        proc.send({ type: 'count', key });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.send({ type: 'close' });
      }),
  };
}

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Say hi' }] };

export async function llmSection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('llm', 'LLM calls: withIdem and the gateway preset vs the bare SDK (issue 9)');
  const server = await child('server');
  const gateway = await child('gateway', server.url).catch(async (error) => {
    await server.close();
    throw error;
  });
  const dir = mkdtempSync(join(tmpdir(), 'idem-bench-llm-'));
  const run = `${process.pid}-${Date.now()}`;
  const idems: Idem[] = [];
  try {
    const gatewayUrl = gateway.url;
    const sdk = (baseURL: string) =>
      new OpenAI({ apiKey: 'sk-bench', baseURL: `${baseURL}/v1`, maxRetries: 0 });
    const bare = sdk(server.url);
    const viaGateway = sdk(gatewayUrl);
    const sqliteIdem = createIdem({ store: sqliteStore({ path: join(dir, 'llm.db') }) });
    idems.push(sqliteIdem);
    const wrapped = withIdem(sdk(server.url), { idem: sqliteIdem, savings: false });
    const redisUp = await reachable(SERVICES.redis);
    const redisIdem = redisUp
      ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix: `idem_bench_llm_${run}` }) })
      : undefined;
    if (redisIdem) idems.push(redisIdem);
    const wrappedRedis = redisIdem && withIdem(sdk(server.url), { idem: redisIdem, savings: false });

    const opts = { concurrency: 1, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };
    const fresh: Case[] = [
      { name: BARE, op: () => bare.chat.completions.create(chat) },
      {
        name: SQLITE,
        baseline: BARE,
        op: (i) => wrapped.chat.completions.create(chat, { idempotencyKey: `fresh-sqlite-${run}-${i}` }),
      },
    ];
    if (wrappedRedis) {
      fresh.push({
        name: REDIS,
        baseline: BARE,
        op: (i) => wrappedRedis.chat.completions.create(chat, { idempotencyKey: `fresh-redis-${run}-${i}` }),
      });
    } else s.notes.push(`Redis at ${SERVICES.redis} was unreachable: its row is missing.`);
    const freshResults = await measure(fresh, opts);

    await wrapped.chat.completions.create(chat, { idempotencyKey: `replay-${run}` });
    const replayResults = await measure(
      [
        { name: `${BARE} (the upstream answers)`, op: () => bare.chat.completions.create(chat) },
        {
          name: `${SQLITE}, replay of a stored key`,
          baseline: `${BARE} (the upstream answers)`,
          op: () => wrapped.chat.completions.create(chat, { idempotencyKey: `replay-${run}` }),
        },
      ],
      opts,
    );
    const replayBilled = (await server.count(`replay-${run}`)) - 1;

    const firstChunk = async (client: OpenAI, options: object) => {
      const stream = await client.chat.completions.create({ ...chat, stream: true }, options);
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break;
    };
    const firstByte = await measure(
      [
        { name: BARE, op: () => firstChunk(bare, {}) },
        {
          name: SQLITE,
          baseline: BARE,
          op: (i) => firstChunk(wrapped, { idempotencyKey: `stream-${run}-${i}` }),
        },
        {
          name: GATEWAY,
          baseline: BARE,
          op: (i) => firstChunk(viaGateway, { headers: { 'Idempotency-Key': `gw-${run}-${i}` } }),
        },
      ],
      opts,
    );

    s.facts.push(
      `openai ${installedVersion('openai')}; the local OpenAI-compatible server (test/ai/server.ts: answers at once, events 0 ms apart) and the gateway each in a child process; one caller at a time`,
    );
    s.tables.push(throughputTable('Fresh non-streamed chat completion (a new key per call)', freshResults));
    s.tables.push(throughputTable('Replay of a stored answer vs asking the upstream', replayResults));
    s.tables.push(throughputTable('Streaming: time to the first content chunk', firstByte));
    const added = (rows: typeof freshResults, name: string) => {
      const row = rows.find((r) => r.name === name);
      const base = rows.find((r) => r.name === row?.baseline);
      return row && base ? row.p50Us - base.p50Us : undefined;
    };
    for (const name of [SQLITE, REDIS]) {
      const us = added(freshResults, name);
      if (us === undefined) continue;
      s.checks.push({ target: `fresh call, ${name}: ≤ 1 ms p50 added`, actual: fmtUs(us), met: us <= 1000 });
    }
    const [up, rep] = replayResults;
    if (up && rep)
      s.checks.push({
        target: 'a replay answers faster than the upstream (p50)',
        actual: `${fmtUs(rep.p50Us)} vs ${fmtUs(up.p50Us)}`,
        met: rep.p50Us < up.p50Us,
      });
    s.checks.push({
      target: 'replays bill nothing',
      actual: `${replayBilled} billed`,
      met: replayBilled === 0,
    });
    for (const name of [SQLITE, GATEWAY]) {
      const us = added(firstByte, name);
      if (us === undefined) continue;
      s.checks.push({
        target: `first byte, ${name}: within 2 ms of the bare SDK (p50)`,
        actual: fmtUs(us),
        met: us <= 2000,
      });
    }
    s.notes.push(
      'The local server answers in microseconds, so the upstream row of the replay table is a floor: a real provider takes hundreds of milliseconds, a replay does not.',
    );
    return s;
  } finally {
    for (const idem of idems) await idem.close();
    await gateway.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
    if (await reachable(SERVICES.redis)) {
      // the records this section wrote live for the engine's default retention (24 h) otherwise
      const client = new Redis(SERVICES.redis);
      await unlinkMatching(client, `idem_bench_llm_${run}*`).finally(() => client.disconnect());
    }
  }
}

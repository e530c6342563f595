/**
 * The gateway keeps its LLM savings in the store: duplicate chat completions through a
 * `preset: 'openai'` gateway (in front of the local provider server) are counted as calls,
 * tokens and micro-USD saved in the store's counters, the same as its `GET /savings` report.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createGateway } from '../../src/gateway/index.ts';
import { sqliteStore } from '../../src/stores/sqlite/index.ts';
import { chat } from '../ai/drivers.ts';
import { startServer } from '../ai/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'idem-persist-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('duplicate LLM calls through a preset gateway: calls, tokens and money saved kept in the store', async () => {
  const server = await startServer();
  const store = sqliteStore({ path: join(dir, 'llm.db') });
  const gateway = await createGateway({
    preset: 'openai',
    upstream: server.url,
    store,
    purgeEvery: false,
    logger: { warn() {}, error() {} },
    prices: { 'gpt-test': { input: 2, output: 10 } },
  });
  const url = await gateway.listen(0);
  const call = () =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-a', 'idempotency-key': 'k1' },
      body: JSON.stringify(chat),
    }).then(async (r) => ({ status: r.status, body: await r.text() }));
  expect((await call()).status).toBe(200);
  for (let i = 0; i < 3; i++) expect((await call()).status).toBe(200);
  const report = gateway.savings.report();
  await gateway.close();
  await server.close();
  expect(server.billed).toBe(1);
  expect(report.duplicatesSuppressed).toBe(3);
  const kept = await store.counters!.read();
  expect(kept).toMatchObject({
    replays: 3,
    llm_calls_saved: 3,
    llm_tokens_saved_input: report.tokensSaved.input,
    llm_tokens_saved_output: report.tokensSaved.output,
    llm_cost_saved_microusd: Math.round(report.costSavedUsd * 1e6),
  });
  expect(kept.llm_tokens_saved_input).toBeGreaterThan(0);
  expect(kept.llm_cost_saved_microusd).toBeGreaterThan(0);
  await store.close?.();
});

/**
 * The scenarios every LLM wrapper must pass against the local server with the real SDK:
 * billed == logical under SDK retries after a timeout, concurrent duplicates, transient
 * provider failures, streams cut by the upstream or interrupted by the client, two idem
 * instances over one SQLite file, replays marked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem, type Idem } from 'idem';
import { isIndeterminateOutcomeError } from 'idem/openai';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decodeOutcome } from '../../src/core/outcome.ts';
import { startServer, type TestServer } from './server.ts';

/** Client options every driver understands. */
export interface ClientOptions {
  apiKey?: string;
  timeout?: number;
  maxRetries?: number;
}

/** What a scenario needs from one SDK. */
export interface Driver<C> {
  name: string;
  /** A bare SDK client against `baseURL`. */
  bare(baseURL: string, options?: ClientOptions): C;
  /** The same client through `withIdem`. */
  wrap(client: C, idem: Idem): C;
  /** One non-streamed call; `key` undefined lets the wrapper mint one; `signal` aborts it. */
  complete(client: C, key?: string, signal?: AbortSignal): Promise<{ text: string; replayed: boolean }>;
  /** One streamed call, read up to `stopAfter` events (then the app stops reading). */
  stream(client: C, key: string, stopAfter?: number): Promise<string>;
  /** One streamed call's raw body. */
  raw(client: C, key: string): Promise<string>;
}

export const ANSWER = 'The answer is forty-two. (#1)';

export function llmScenarios<C>(driver: Driver<C>): {
  server: () => TestServer;
  idem: () => Idem;
  dir: () => string;
} {
  let server: TestServer;
  let dir: string;
  let idem: Idem;
  let n = 0;
  const bare = (options?: ClientOptions) =>
    driver.bare(server.url, { timeout: 1000, maxRetries: 2, ...options });
  const client = (options?: ClientOptions) => driver.wrap(bare(options), idem);

  beforeAll(async () => {
    server = await startServer();
    dir = mkdtempSync(join(tmpdir(), `idem-ai-${driver.name}-`));
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    server.reset();
    idem = createIdem({ store: sqliteStore({ path: join(dir, `t${++n}.db`) }) });
  });
  afterEach(() => idem.close());

  describe(`${driver.name} through withIdem (SQLite store)`, () => {
    it('control: the bare SDK bills a call slower than its timeout twice', async () => {
      server.set({ delayMs: 1300 });
      await expect(driver.complete(bare({ maxRetries: 1 }))).rejects.toThrow(/timed out|timeout/i);
      expect(server.billed).toBe(2);
    });

    it('a call slower than the SDK timeout is billed once, and the SDK retry returns its answer', async () => {
      server.set({ delayMs: 1300 });
      const started = Date.now();
      const answer = await driver.complete(client());
      expect(answer.text).toBe(ANSWER);
      expect(server.billed).toBe(1);
      expect(server.requests).toBe(1);
      expect(Date.now() - started).toBeLessThan(1300 + 2000);
    });

    it('5 concurrent duplicates with one key: billed once, one answer, 4 marked replays', async () => {
      server.set({ delayMs: 200 });
      const c = client();
      const answers = await Promise.all(Array.from({ length: 5 }, () => driver.complete(c, 'dup-5')));
      expect(server.billed).toBe(1);
      expect(new Set(answers.map((a) => a.text))).toEqual(new Set([ANSWER]));
      expect(answers.filter((a) => a.replayed)).toHaveLength(4);
    });

    it.each([429, 500, 503, 529])(
      'the first 2 calls answer %d, then the SDK retry succeeds: billed once, every attempt under one key',
      async (status) => {
        server.set({ fail: { count: 2, status } });
        const answer = await driver.complete(client());
        expect(answer).toEqual({ text: ANSWER, replayed: false });
        expect(server.requests).toBe(3);
        expect(server.billed).toBe(1);
        expect(new Set(server.keys).size).toBe(1);
        expect(server.keys[0]).toBeTruthy();
      },
    );

    it.each([
      ['reset', false],
      ['closed without its last event', true],
    ])(
      'a stream cut by the upstream (%s): a typed error, stored incomplete, never billed again under its key',
      async (_, cleanCut) => {
        server.set({ cutAfterEvents: 3, cleanCut });
        const c = client();
        const first = await driver.stream(c, 'cut-1').catch((e: unknown) => e);
        expect(isIndeterminateOutcomeError(first)).toBe(true);
        const again = await driver.stream(c, 'cut-1').catch((e: unknown) => e);
        expect(isIndeterminateOutcomeError(again)).toBe(true);
        expect(server.billed).toBe(1);
        // the explicit escape hatch: a derived key, billed again knowingly
        server.set({ cutAfterEvents: undefined });
        if (!isIndeterminateOutcomeError(again)) throw again;
        expect(again.retryWithNewKey().idempotencyKey).toBe('cut-1:retry:1');
        expect(await driver.stream(c, again.retryWithNewKey().idempotencyKey)).toBe(
          ANSWER.replace('#1', '#2'),
        );
        expect(server.billed).toBe(2);
      },
    );

    it('a stream the app stops reading keeps recording; the retry with the same key gets it whole, byte-identical', async () => {
      server.set({ eventGapMs: 30 });
      const c = client();
      const part = await driver.stream(c, 'interrupted', 2);
      expect(ANSWER.startsWith(part) && part.length < ANSWER.length).toBe(true);
      expect(await driver.stream(c, 'interrupted')).toBe(ANSWER); // follows the recording live
      const stored = await driver.raw(c, 'interrupted'); // from the store
      const storedAgain = await driver.raw(client(), 'interrupted');
      expect(storedAgain).toBe(stored);
      expect(stored).toContain('forty');
      expect(server.billed).toBe(1);
    });

    it('the app aborts a slow call; the upstream call goes on, and the retry with the key gets its answer', async () => {
      server.set({ delayMs: 800 });
      const c = client();
      const aborted = await driver.complete(c, 'aborted', AbortSignal.timeout(200)).catch((e: unknown) => e);
      expect(aborted).toBeInstanceOf(Error);
      const started = Date.now();
      expect(await driver.complete(c, 'aborted')).toEqual({ text: ANSWER, replayed: true });
      expect(Date.now() - started).toBeLessThan(800);
      expect(server.billed).toBe(1);
    });

    it('the store is down: nothing is sent upstream, the app gets an error', async () => {
      const c = client({ maxRetries: 0 });
      await idem.close();
      const error = await driver.complete(c, 'store-down').catch((e: unknown) => e);
      expect(error).toMatchObject({ status: 503 });
      expect(server.requests).toBe(0);
    });

    it('a stream replays byte-identical to the one the first caller read', async () => {
      const c = client();
      const live = await driver.raw(c, 'bytes');
      expect(await driver.raw(c, 'bytes')).toBe(live);
      expect(server.billed).toBe(1);
    });

    it('a malformed key (over 255 characters) is refused with a 400 before anything is sent', async () => {
      const error = await driver
        .complete(client({ maxRetries: 0 }), 'k'.repeat(256))
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ status: 400 });
      expect(server.requests).toBe(0);
    });

    it('the same key through two idem instances over one SQLite file: billed once', async () => {
      server.set({ delayMs: 300 });
      const path = join(dir, `shared-${driver.name}.db`);
      const a = createIdem({ store: sqliteStore({ path }) });
      const b = createIdem({ store: sqliteStore({ path }) });
      try {
        const [x, y] = await Promise.all([
          driver.complete(driver.wrap(bare(), a), 'two-instances'),
          driver.complete(driver.wrap(bare(), b), 'two-instances'),
        ]);
        expect([x.text, y.text]).toEqual([ANSWER, ANSWER]);
        expect([x.replayed, y.replayed].sort()).toEqual([false, true]);
        expect(server.billed).toBe(1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a replay is marked with Idempotent-Replayed; the first answer is not', async () => {
      const c = client();
      expect(await driver.complete(c, 'marked')).toEqual({ text: ANSWER, replayed: false });
      expect(await driver.complete(c, 'marked')).toEqual({ text: ANSWER, replayed: true });
      expect(server.billed).toBe(1);
    });

    it('two API keys (tenants) with the same idempotency key never share a record', async () => {
      const a = await driver.complete(client({ apiKey: 'sk-tenant-a' }), 'shared-key');
      const b = await driver.complete(client({ apiKey: 'sk-tenant-b' }), 'shared-key');
      expect(a.text).toBe(ANSWER);
      expect(b).toEqual({ text: ANSWER.replace('#1', '#2'), replayed: false });
      expect(server.billed).toBe(2);
    });

    it('a two-step tool loop keyed by run and step: running the loop again bills nothing new', async () => {
      const c = client();
      const loop = async (runId: string) => {
        server.set({ toolCalls: true }); // step 1 answers with a tool call
        const step1 = await driver.complete(c, `${runId}:step-1`);
        server.set({ toolCalls: false }); // step 2 (after the tool ran) answers with text
        const step2 = await driver.complete(c, `${runId}:step-2`);
        return [step1, step2];
      };
      const first = await loop('run-7');
      expect(first).toEqual([
        { text: '', replayed: false },
        { text: ANSWER.replace('#1', '#2'), replayed: false },
      ]);
      expect(await loop('run-7')).toEqual(first.map((step) => ({ ...step, replayed: true })));
      expect(server.billed).toBe(2);
    });

    it('calls without an explicit key get one key each (logical calls are not merged)', async () => {
      const c = client();
      await driver.complete(c);
      await driver.complete(c);
      expect(server.billed).toBe(2);
      expect(new Set(server.keys).size).toBe(2);
    });
  });

  return { server: () => server, idem: () => idem, dir: () => dir };
}

/** The `usage` stored with a key's outcome (waiting up to 2 s for it to be stored). */
export async function storedUsage(idem: Idem, key: string, scope: string): Promise<unknown> {
  const id = idem.ids(key, scope).recordId;
  // an SDK stops reading a stream at its last event: the outcome is stored a moment later
  let record = await idem.store.get(id);
  for (let i = 0; i < 100 && record?.state !== 'completed'; i++) {
    await new Promise((r) => setTimeout(r, 20));
    record = await idem.store.get(id);
  }
  const outcome = decodeOutcome(record?.outcome ?? '');
  return outcome.kind === 'value' ? (outcome.value as { usage?: unknown }).usage : outcome;
}

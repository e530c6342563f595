/**
 * What the idem/ai-sdk tests share: the local server, a fresh SQLite idem instance per test,
 * and models from the real `@ai-sdk/openai` (chat completions, or the Responses API that
 * `openai(model)` calls by default) wrapped with idemMiddleware.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LanguageModel, wrapLanguageModel } from 'ai';
import { createIdem, type Idem } from 'idem';
import { type IdemMiddlewareOptions, idemMiddleware } from 'idem/ai-sdk';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { type Api, bareModel } from './ai-sdk-model.ts';
import { startServer, type TestServer } from './server.ts';

export { ANSWER, type Api, bareModel, nth } from './ai-sdk-model.ts';

export function aiSdkSetup() {
  let server: TestServer;
  let dir: string;
  let idem: Idem;
  let n = 0;
  beforeAll(async () => {
    server = await startServer();
    dir = mkdtempSync(join(tmpdir(), 'idem-ai-sdk-'));
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
  return {
    server: () => server,
    idem: () => idem,
    dir: () => dir,
    /** A wrapped model over this test's idem instance (or `over`). */
    model: (api: Api, options: Partial<IdemMiddlewareOptions> = {}): LanguageModel =>
      wrapLanguageModel({
        model: bareModel(server.url, api),
        middleware: idemMiddleware({ idem, ...options }),
      }),
  };
}

/** `providerOptions` carrying a logical key. */
export const keyed = (key: string, scope?: string) => ({
  providerOptions: { idem: scope === undefined ? { key } : { key, scope } },
});

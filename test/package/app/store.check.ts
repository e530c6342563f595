/**
 * Copied into the temporary consumer app as `store.test.ts` and run there with the app's own
 * vitest: the conformance suite from the installed `idem/testing`, multi-process tests included
 * (their workers are started by the installed package, from dist/).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteStore } from 'idem/sqlite';
import { testStore } from 'idem/testing';

const dir = mkdtempSync(join(tmpdir(), 'idem-consumer-store-'));
const path = join(dir, 'idem.db');

testStore({
  name: 'sqlite from the installed package',
  create: () => sqliteStore({ path }),
  destroy: () => rmSync(dir, { recursive: true, force: true }),
  processStore: { module: new URL('./sqlite-factory.ts', import.meta.url).pathname, arg: { path } },
  processes: 4,
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteStore } from 'idem/sqlite';
import { testStore } from 'idem/testing';

const dir = mkdtempSync(join(tmpdir(), 'idem-sqlite-'));
const path = join(dir, 'idem.db');

testStore({
  name: 'sqlite',
  create: () => sqliteStore({ path }),
  destroy: () => rmSync(dir, { recursive: true, force: true }),
  processStore: { module: new URL('./fixtures/sqlite-factory.ts', import.meta.url).pathname, arg: { path } },
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidOptionError } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { testStore } from 'idem/testing';
import { expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'idem-sqlite-'));
const path = join(dir, 'idem.db');

testStore({
  name: 'sqlite',
  create: () => sqliteStore({ path }),
  destroy: () => rmSync(dir, { recursive: true, force: true }),
  processStore: { module: new URL('./fixtures/sqlite-factory.ts', import.meta.url).pathname, arg: { path } },
});

it('a path under a file is an InvalidOptionError naming the path and the cause, not a raw fs error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idem-sqlite-file-'));
  try {
    const file = join(dir, 'not-a-folder');
    writeFileSync(file, 'x');
    const path = join(file, 'sub', 'idem.db');
    const err = (() => {
      try {
        sqliteStore({ path });
      } catch (e) {
        return e;
      }
    })() as InvalidOptionError;
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/ENOTDIR|not a directory|EEXIST/);
    expect((err.cause as NodeJS.ErrnoException).code).toMatch(/ENOTDIR|EEXIST/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

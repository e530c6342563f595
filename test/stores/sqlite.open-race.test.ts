/**
 * Several processes opening the same new SQLite file at the same moment: every one must open it.
 * Switching a new file to WAL takes a lock SQLite does not wait for, and the CI run saw a process
 * fail with "database is locked" (1 in 60 opens in a repro) before the store retried it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CHILD = new URL('./fixtures/sqlite-open-child.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'idem-open-race-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sqlite store: processes opening one new file at once', () => {
  it('8 processes × 10 new files: every open succeeds', async () => {
    const failures: string[] = [];
    for (let round = 0; round < 10; round++) {
      const path = join(dir, `r${round}.db`);
      const at = Date.now() + 700;
      await Promise.all(
        Array.from(
          { length: 8 },
          () =>
            new Promise<void>((resolve) => {
              const c = spawn(process.execPath, ['--conditions=idem-source', CHILD, path, String(at)], {
                stdio: ['ignore', 'ignore', 'pipe'],
              });
              let err = '';
              c.stderr.on('data', (d: Buffer) => (err += d));
              c.on('close', (code) => {
                if (code !== 0)
                  failures.push(err.split('\n').find((l) => l.includes('Error')) ?? err.slice(0, 200));
                resolve();
              });
            }),
        ),
      );
    }
    expect(failures).toEqual([]);
  }, 60_000);
});

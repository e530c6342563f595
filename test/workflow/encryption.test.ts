/**
 * Encryption at rest covers the run journal: the run's result, every step's outcome and the
 * `run.tx` rows are sealed in the store (read back from the SQLite files byte by byte), a resumed
 * run opens them, and `runs.get` still reads the run.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createIdem } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { afterAll, describe, expect, it } from 'vitest';

const SECRET = 'patient Ada Lovelace, claim 7781';
const dir = mkdtempSync(join(tmpdir(), 'idem-wf-enc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bytesOf = (path: string) =>
  readdirSync(path)
    .map((f) => readFileSync(join(path, f)).toString('latin1'))
    .join('\n');

describe('workflows with encryption at rest', () => {
  for (const sealed of [true, false]) {
    it(
      sealed ? 'steps, results and run.tx rows are sealed' : 'control: without encryption the text is there',
      async () => {
        const path = join(dir, sealed ? 'sealed' : 'plain');
        mkdirSync(path, { recursive: true });
        const encryption = { keys: { k1: randomBytes(32) } };
        const open = () =>
          createIdem({ store: sqliteStore({ path: join(path, 'idem.db') }), ...(sealed && { encryption }) });
        const db = new DatabaseSync(join(path, 'app.db'));
        db.exec('CREATE TABLE ledger (note TEXT)');
        let runs = 0;
        const body = async (run: Parameters<Parameters<ReturnType<typeof open>['workflow']>[1]>[0]) => {
          runs++;
          const a = await run.step('intake', () => ({ note: SECRET }));
          const b = await run.tx('book', db, (d) => {
            d.prepare('INSERT INTO ledger VALUES (?)').run('booked');
            return { booked: SECRET };
          });
          return { a, b };
        };
        const idem = open();
        const first = await idem.workflow('claim-1', body);
        await idem.close();
        const again = open();
        expect(await again.workflow('claim-1', body)).toEqual(first);
        const info = await again.runs.get('claim-1');
        expect(info.status).toBe('completed');
        expect(info.steps.map((s) => s.status)).toEqual(['completed', 'completed']);
        await again.close();
        db.close();
        expect(runs).toBe(1);
        const bytes = bytesOf(path);
        if (sealed) {
          expect(bytes).not.toContain('Lovelace');
          expect(bytes).toContain('e1:k1.');
        } else expect(bytes).toContain('Lovelace');
      },
    );
  }
});

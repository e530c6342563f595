/**
 * A zombie across processes: a holder frozen with SIGSTOP past its lease is taken over by
 * another process, and when it thaws (SIGCONT) its late complete is rejected (LeaseLostError)
 * and the stored outcome stays the new holder's.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdem } from '../../src/core/engine.ts';
import { InProgressError } from '../../src/core/errors.ts';
import { postgresStore } from '../../src/stores/postgres/index.ts';
import { serviceAvailable, uniqueName } from '../helpers/services.ts';
import { adminPool, dropSchema, PG_URL } from './fixtures/postgres-suite.ts';

const up = await serviceAvailable('postgres');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!up)('postgres store: a frozen holder across processes', () => {
  const schema = uniqueName('idem_pg_zombie');
  const store = postgresStore({ connectionString: PG_URL, schema });
  afterAll(async () => {
    await store.close();
    const admin = adminPool();
    await dropSchema(admin, schema);
    await admin.end();
  });

  it('is taken over after its lease, never before, and its late complete is rejected', async () => {
    const leaseMs = 800;
    const key = `zombie-${randomUUID()}`;
    const child = spawn(
      process.execPath,
      [
        '--conditions=idem-source',
        new URL('./fixtures/postgres-skew-child.ts', import.meta.url).pathname,
        JSON.stringify({ connectionString: PG_URL, schema }),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stdin!.write(`${JSON.stringify({ op: 'run', key, leaseMs, holdMs: 1000, announce: true })}\n`);
    const idem = createIdem({ store, lease: leaseMs, onInProgress: 'reject' });
    expect(JSON.parse((await lines.next()).value as string)).toEqual({ holding: true });
    child.kill('SIGSTOP');
    const frozenAt = Date.now();
    let ran: { at: number; attempt: number; mayHaveRun: boolean } | undefined;
    while (!ran) {
      try {
        await idem.run(key, (ctx) => {
          ran = { at: Date.now(), attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun };
          return 'rescuer';
        });
      } catch (e) {
        expect(e).toBeInstanceOf(InProgressError);
        await sleep(20);
      }
    }
    // its last renewal was at most a third of a lease before the freeze
    expect(ran.at - frozenAt).toBeGreaterThanOrEqual((leaseMs * 2) / 3 - 50);
    expect(ran).toMatchObject({ attempt: 2, mayHaveRun: true });

    child.kill('SIGCONT');
    const answer = JSON.parse((await lines.next()).value as string);
    expect(answer).toMatchObject({ error: 'LeaseLostError' });
    expect(await idem.run(key, () => 'again')).toBe('rescuer');
    child.stdin!.end(`${JSON.stringify({ op: 'exit' })}\n`);
    await new Promise((r) => child.once('exit', r));
  });
});

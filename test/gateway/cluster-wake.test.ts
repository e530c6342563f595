/**
 * SQLite cannot notify another process, so with `idem serve --workers N` a waiter would only
 * notice a completed record at its next poll. clusterWake + the primary's relay in
 * startWorkers() wake the other workers' subscribers as soon as one worker completes a record.
 * Real node:cluster workers on one SQLite file.
 */
import cluster, { type Worker } from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkers, type Workers } from '../../src/gateway/cluster.ts';

const dir = mkdtempSync(join(tmpdir(), 'idem-wake-'));

describe('clusterWake over startWorkers (SQLite, 3 workers)', () => {
  let workers: Workers;
  beforeAll(async () => {
    cluster.setupPrimary({ execArgv: ['--conditions=idem-source'] });
    workers = await startWorkers({
      workers: 3,
      exec: join(import.meta.dirname, 'fixtures/wake-worker.ts'),
      args: [],
      env: { WAKE_STORE: `sqlite:${join(dir, 'wake.db')}` },
    });
  });
  afterAll(async () => {
    expect(await workers?.close()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  const all = () => Object.values(cluster.workers ?? {}) as Worker[];
  const next = (w: Worker, type: string, ms = 5000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${type} from worker ${w.process.pid} within ${ms} ms`)),
        ms,
      );
      const on = (m: Record<string, unknown>) => {
        if (m?.type !== type) return;
        clearTimeout(timer);
        w.off('message', on);
        resolve(m);
      };
      w.on('message', on);
    });

  it('every worker listens and the primary knows their pids', () => {
    expect(workers.pids()).toHaveLength(3);
    expect(workers.url).toMatch(/^worker \d+$/);
  });

  it("a record completed on one worker wakes the other workers' subscribers at once", async () => {
    const [a, b, c] = all() as [Worker, Worker, Worker];
    for (const w of [b, c]) {
      const subscribed = next(w, 'subscribed');
      w.send({ type: 'subscribe', id: 'rec-1' });
      await subscribed;
    }
    const woken = [next(b, 'woken', 2000), next(c, 'woken', 2000)];
    const completed = next(a, 'completed');
    a.send({ type: 'complete', id: 'rec-1' });
    expect((await completed).done).toBe(true);
    const pids = (await Promise.all(woken)).map((m) => m.pid);
    expect(pids.sort()).toEqual([b.process.pid, c.process.pid].sort());
  });
});

/**
 * Admin data across `idem serve --workers N` with a real node:cluster: three worker processes
 * each answer AdminSource calls about themselves (test/gateway/fixtures/admin-worker.ts); the
 * primary's clusterAdminSource() adds their metrics up (AggregatorRegistry), merges keys newest
 * first, finds a key on whichever worker saw it, and sums savings. A worker asking the primary
 * (its `/metrics`) gets the same whole view.
 */
import cluster, { type Worker } from 'node:cluster';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterAdminSource, sumSavings } from '../../src/gateway/cluster-admin.ts';

const WORKERS = 3;
const FIXTURE = join(import.meta.dirname, 'fixtures/admin-worker.ts');

describe('clusterAdminSource over 3 real cluster workers', () => {
  const workers: Worker[] = [];
  let admin: ReturnType<typeof clusterAdminSource>;

  beforeAll(async () => {
    cluster.setupPrimary({ exec: FIXTURE, execArgv: ['--conditions=idem-source'], silent: false });
    admin = clusterAdminSource({ workers: () => workers.filter((w) => w.isConnected()) });
    await Promise.all(
      Array.from({ length: WORKERS }, (_, i) => {
        const w = cluster.fork({ WORKER_INDEX: String(i) });
        workers.push(w);
        return new Promise<void>((resolve, reject) => {
          w.on('message', (m: { type?: string }) => m?.type === 'ready' && resolve());
          w.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
        });
      }),
    );
  });

  afterAll(async () => {
    admin?.stop();
    await Promise.all(
      workers.map(
        (w) =>
          new Promise((r) => {
            if (w.isDead()) return r(null);
            w.once('exit', r);
            w.kill();
          }),
      ),
    );
  });

  it('metrics: the counts of every worker add up', async () => {
    const { text, contentType } = await admin.metricsText();
    expect(contentType).toMatch(/^text\/plain/);
    // replayed: 1 + 2 + 3; executed: 10 per worker
    expect(text).toContain('idem_test_requests_total{result="replayed"} 6');
    expect(text).toContain('idem_test_requests_total{result="executed"} 30');
    const json = (await admin.metricsJson()) as { name: string; values: { value: number }[] }[];
    const total = json.find((m) => m.name === 'idem_test_requests_total');
    expect(total?.values.reduce((n, v) => n + v.value, 0)).toBe(36);
  });

  it('recentKeys: every worker’s keys, newest first, at most limit', async () => {
    const keys = await admin.recentKeys(4);
    expect(keys.map((k) => k.recordId)).toEqual(['r-2-2', 'r-1-2', 'r-0-2', 'r-2-1']);
    expect(new Set((await admin.recentKeys(100)).map((k) => k.pid)).size).toBe(WORKERS);
  });

  it('findKey: found on the worker that saw it, nothing for an unknown key', async () => {
    expect((await admin.findKey('key-1')).map((k) => k.recordId)).toEqual(['r-1-1']);
    expect(await admin.findKey('key-9')).toEqual([]);
  });

  it('savings: summed over the workers', async () => {
    const s = await admin.savings();
    expect(s.duplicatesSuppressed).toBe(6);
    expect(s.tokensSaved).toEqual({ input: 300, cached: 30, output: 150 });
    expect(s.costSavedUsd).toBeCloseTo(1.5);
    expect(s.byModel['gpt-x']?.duplicatesSuppressed).toBe(6);
    expect(s.since).toBe(5000);
    expect(s.keys.map((k) => k.id)).toEqual(['s-2', 's-1', 's-0']);
  });

  it("a worker's view through the primary is the whole cluster's", async () => {
    const w = workers[1] as Worker;
    const text = await new Promise<string>((resolve) => {
      const on = (m: { type?: string; text?: string }) => {
        if (m?.type !== 'through-primary') return;
        w.off('message', on);
        resolve(m.text as string);
      };
      w.on('message', on);
      w.send({ type: 'through-primary' });
    });
    expect(text).toContain('idem_test_requests_total{result="replayed"} 6');
  });

  it('a worker that does not answer in time is left out instead of hanging the view', async () => {
    const quick = clusterAdminSource({ timeoutMs: 300, workers: () => [...workers, fakeSilentWorker()] });
    try {
      const started = performance.now();
      const { text } = await quick.metricsText();
      expect(performance.now() - started).toBeLessThan(5000);
      expect(text).toContain('idem_test_requests_total{result="executed"} 30');
    } finally {
      quick.stop();
    }
  });
});

describe('sumSavings', () => {
  it('of no reports is an empty report', () => {
    const s = sumSavings([]);
    expect(s.duplicatesSuppressed).toBe(0);
    expect(s.keys).toEqual([]);
  });
});

/** A worker that takes messages and never answers. */
function fakeSilentWorker(): Worker {
  return { send: () => true, isConnected: () => true } as unknown as Worker;
}

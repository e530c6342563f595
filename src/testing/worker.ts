/**
 * A child process of the conformance suite. Loads the store from the user's factory module,
 * then either races through shared keys (`race`) or claims one key and hangs until killed
 * (`hold`). Every execution appends `<key> <pid> <value>` to the side-effect ledger, a file
 * opened in append mode, so the parent can count executions independently of the store.
 *
 * `race`: answers READY once the store works, waits for a line on stdin, delivers every key
 * `deliveries` times in a shuffled order, `concurrency` at a time, then prints one JSON line
 * `{ seen: { key: [value, …] }, events: { type: count } }` and exits.
 */
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { createIdem } from '../core/engine.ts';
import { StoreUnavailableError } from '../core/errors.ts';
import type { Store } from '../core/store.ts';

export interface WorkerConfig {
  mode: 'race' | 'hold';
  module: string;
  arg?: unknown;
  ledger: string;
  leaseMs: number;
  keys: string[];
  deliveries: number;
  concurrency: number;
  /** Each action lasts a random 0–actionMs ms. */
  actionMs?: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
const factory = (await import(pathToFileURL(cfg.module).href)) as {
  createStore(arg: unknown): Store | Promise<Store>;
};
const store = await factory.createStore(cfg.arg);
const events: Record<string, number> = {};
const idem = createIdem({
  store,
  lease: cfg.leaseMs,
  onInProgress: 'wait',
  waitTimeout: '120s',
  onEvent: (e) => {
    const name = e.type === 'replayed' ? (e.shared ? 'replayed_shared' : 'replayed_stored') : e.type;
    events[name] = (events[name] ?? 0) + 1;
  },
});

if (cfg.mode === 'hold') {
  setInterval(() => {}, 60_000); // keep the process alive while the action hangs
  const key = cfg.keys[0]!;
  await idem.run(key, async () => {
    appendFileSync(cfg.ledger, `${key} ${process.pid} held\n`);
    process.stdout.write('HOLDING\n');
    await new Promise(() => {});
  });
} else {
  await store.get('idem-conformance-warm-up'); // connected (and migrated) before the start line
  process.stdout.write('READY\n');
  await new Promise<void>((resolve) =>
    createInterface({ input: process.stdin }).once('line', () => resolve()),
  );
  const jobs = cfg.keys.flatMap((k) => Array.from({ length: cfg.deliveries }, () => k));
  for (let i = jobs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
  }
  const seen: Record<string, string[]> = {};
  /**
   * One delivery, retried like a client would when the store did not answer before anything
   * ran (a claim timing out on a loaded machine): that is no duplicate, so it must not fail the
   * race. A failure after the action ran is not retried: the parent's checks see it.
   */
  const deliver = async (key: string): Promise<string> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await idem.run(
          key,
          async () => {
            const v = `${process.pid}:${Math.random().toString(36).slice(2)}`;
            appendFileSync(cfg.ledger, `${key} ${process.pid} ${v}\n`);
            await new Promise((r) => setTimeout(r, Math.random() * (cfg.actionMs ?? 3)));
            return v;
          },
          { input: { key } },
        );
      } catch (error) {
        if (!(error instanceof StoreUnavailableError) || error.actionCompleted || attempt >= 5) throw error;
        events.retried_store_unavailable = (events.retried_store_unavailable ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  };
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) {
      const key = jobs[next++]!;
      const value = await deliver(key);
      seen[key] = [...(seen[key] ?? []), value];
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency }, lane));
  process.stdout.write(`${JSON.stringify({ seen, events })}\n`);
  await store.close?.();
  process.exit(0);
}

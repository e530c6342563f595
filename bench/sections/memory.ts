/**
 * Issue 2: `idem.run` on the memory store next to calling the action directly. The store does
 * no I/O, so the gap is the engine's own cost per call.
 *
 * @module
 */
import { createIdem, memoryStore } from 'idem';
import type { RunConfig } from '../lib/config.ts';
import { measure } from '../lib/measure.ts';
import { emptySection, type SectionResult, throughputTable } from '../lib/report.ts';
import { LEASE_MS, REPLAY_KEYS, send, TTL_MS } from '../lib/workload.ts';

export async function memorySection(cfg: RunConfig): Promise<SectionResult> {
  const s = emptySection('memory', 'Memory store: engine cost per call (issue 2)');
  const idem = createIdem({ store: memoryStore(), ttl: TTL_MS, lease: LEASE_MS });
  let replayRuns = 0;
  for (let i = 0; i < REPLAY_KEYS; i++) await idem.run(`replay:${i}`, () => send(i));
  const opts = { concurrency: 1, durationMs: cfg.durationMs, rounds: cfg.rounds, warmupMs: cfg.warmupMs };

  const fresh = await measure(
    [
      { name: 'direct call', op: (i) => send(i) },
      { name: 'idem.run, memory', baseline: 'direct call', op: (i) => idem.run(`fresh:${i}`, () => send(i)) },
    ],
    opts,
  );
  const replay = await measure(
    [
      { name: 'direct call', op: (i) => send(i) },
      {
        name: 'idem.run, memory',
        baseline: 'direct call',
        op: (i) =>
          idem.run(`replay:${i % REPLAY_KEYS}`, () => {
            replayRuns++;
            return send(i);
          }),
      },
    ],
    opts,
  );
  await idem.close();

  s.tables.push(throughputTable('Fresh key: claim, run, complete', fresh));
  s.tables.push(throughputTable('Replay of a completed key', replay));
  s.checks.push({
    target: 'replays never run the action',
    actual: `${replayRuns} runs during replay`,
    met: replayRuns === 0,
  });
  s.notes.push(
    'The action is `async (n) => ({ receipt, amount })`; the direct call awaits it. No input, so no fingerprint hashing.',
  );
  return s;
}

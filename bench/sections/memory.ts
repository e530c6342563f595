/**
 * Issue 2: `idem.run` on the memory store next to calling the action directly. The store does
 * no I/O, so the gap is the engine's own cost per call; issue 12 sets targets on its CPU per call.
 *
 * @module
 */
import { createIdem, memoryStore } from 'idem';
import type { RunConfig } from '../lib/config.ts';
import { measure } from '../lib/measure.ts';
import { emptySection, fmtUs, type SectionResult, throughputTable } from '../lib/report.ts';
import { LEASE_MS, REPLAY_KEYS, send, TTL_MS } from '../lib/workload.ts';

/** Issue 12's targets: client CPU per `idem.run` on the memory store, in µs. */
const FRESH_CPU_US = 8;
const REPLAY_CPU_US = 3;

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
  // Issue 12: the engine's own cost, as client CPU per call (user + system, every thread, so
  // garbage collection included; less sensitive to a busy machine than ops/s)
  const freshCpu = fresh.find((r) => r.name === 'idem.run, memory')!.cpuUs;
  const replayCpu = replay.find((r) => r.name === 'idem.run, memory')!.cpuUs;
  s.checks.push({
    target: 'fresh key: idem.run ≤ 8 µs CPU per call',
    actual: fmtUs(freshCpu),
    met: freshCpu <= FRESH_CPU_US,
  });
  s.checks.push({
    target: 'replay: idem.run ≤ 3 µs CPU per call',
    actual: fmtUs(replayCpu),
    met: replayCpu <= REPLAY_CPU_US,
  });
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

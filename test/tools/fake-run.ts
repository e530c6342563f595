/**
 * A small in-memory `AmbientRun` for the unit tests of the in-run path (the real journal,
 * `idem.workflow`, is tested with the tools once merged): steps keyed by name + occurrence,
 * a recorded step answered again without running, a changed input refused.
 */
import type { AmbientRun, StepContext } from '../../src/workflow/ambient.ts';

export interface FakeRun extends AmbientRun {
  /** `name#occurrence` of every step asked for, in order. */
  asked: string[];
  /** Recorded outputs by step id. */
  recorded: Map<string, { input: string; value: unknown }>;
  /** Starts a new invocation of the run: occurrences count from 1 again. */
  resume(): void;
}

export function fakeRun(id: string): FakeRun {
  let seen = new Map<string, number>();
  const run: FakeRun = {
    id,
    asked: [],
    recorded: new Map(),
    resume: () => {
      seen = new Map();
    },
    async step<T>(name: string, fn: (ctx: StepContext) => T | Promise<T>, options?: { input?: unknown }) {
      const n = (seen.get(name) ?? 0) + 1;
      seen.set(name, n);
      const stepId = `${name}#${n}`;
      run.asked.push(stepId);
      const input = JSON.stringify(options?.input ?? null);
      const hit = run.recorded.get(stepId);
      if (hit) {
        if (hit.input !== input) throw new Error(`step ${stepId}: input changed`);
        return hit.value as T;
      }
      const ctx: StepContext = {
        runId: id,
        stepId,
        attempt: 1,
        mayHaveRun: false,
        downstreamKey: `${id}/${stepId}`,
        signal: new AbortController().signal,
      };
      const value = await fn(ctx);
      run.recorded.set(stepId, { input, value });
      return value;
    },
  };
  return run;
}

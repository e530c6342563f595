/**
 * The quick chaos profile (test/chaos/run.ts with QUICK): on SQLite, a private Redis and a
 * private PostgreSQL, library workers and three gateways under SIGKILL, SIGSTOP, upstream
 * faults, store restarts, cut connections and skewed clocks — 0 duplicate effects, 0 lost
 * outcomes, 0 conflicting outcomes, 0 stuck keys, 0 premature takeovers. And the checker's
 * self-tests: the same run with idem bypassed must be caught (duplicate effects), and so must a
 * deliberately broken setup, clocks skewed by minutes on SQLite (which keeps time on the app's
 * clock), where the fast clocks take over live holders' leases (premature takeovers, which the
 * checker once excused because those runs were told `mayHaveRun`). Seeded (IDEM_CHAOS_SEED
 * replays a run).
 */
import { describe, expect, it } from 'vitest';
import { clean, formatReport } from './check.ts';
import { type ChaosStore, QUICK, runChaos } from './run.ts';
import { canRunPrivatePostgres } from './services.ts';

const SEED = Number(process.env.IDEM_CHAOS_SEED ?? 20261201);
const REQUIRE = process.env.IDEM_REQUIRE_SERVICES === '1';
const pgOk = canRunPrivatePostgres();
if (!pgOk) {
  if (REQUIRE)
    throw new Error('chaos: a private PostgreSQL cannot run here, and IDEM_REQUIRE_SERVICES=1 requires it');
  console.warn('[idem tests] skipping postgres chaos: no PostgreSQL binaries or postgres user');
}

describe('chaos, quick profile', () => {
  for (const store of ['sqlite', 'redis', 'postgres'] as ChaosStore[]) {
    it.skipIf(store === 'postgres' && !pgOk)(
      `${store}: no duplicate effect, lost outcome, conflict or stuck key`,
      async () => {
        const report = await runChaos({ ...QUICK, store, seed: SEED });
        const text = formatReport(report);
        console.log(text);
        expect(report.effects, 'effects happened').toBeGreaterThan(0);
        expect(
          Object.values(report.faults).reduce((a, b) => a + b, 0),
          'faults were injected',
        ).toBeGreaterThan(3);
        expect(clean(report), text).toBe(true);
      },
      180_000,
    );
  }

  it('self-test: with idem bypassed, the checker finds the duplicates', async () => {
    const report = await runChaos({
      ...QUICK,
      ops: 40,
      gateways: 0,
      store: 'sqlite',
      seed: SEED,
      bypass: true,
    });
    expect(report.duplicateEffects, formatReport(report)).toBeGreaterThan(0);
  }, 120_000);

  it('self-test: with clocks skewed past the lease on SQLite, the checker finds premature takeovers', async () => {
    const report = await runChaos({
      ...QUICK,
      ops: 40,
      gateways: 0,
      store: 'sqlite',
      seed: SEED,
      skewAppClock: true,
      skewMs: 3_000, // 5 leases: enough to take live leases over, short enough not to wait minutes
    });
    const text = formatReport(report);
    expect(report.prematureTakeovers, text).toBeGreaterThan(0);
    expect(clean(report)).toBe(false);
  }, 120_000);
});

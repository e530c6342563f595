/**
 * `npm run chaos [-- --quick] [--store sqlite,postgres,redis,dynamodb] [--ops N] [--seed N] [--skew-app-clock]`:
 * runs the chaos harness (run.ts) on each store and prints the checker's report (check.ts); exits
 * 1 when any duplicate effect, premature takeover, lost outcome, conflicting outcome or stuck key
 * is found. `--skew-app-clock` is the broken setup the checker must fail (clocks skewed on SQLite).
 * `--store dynamodb` (a private dynalite) is opt-in: see docs/RELIABILITY.md for how far it runs.
 */
import { parseArgs } from 'node:util';
import { clean, formatReport } from './check.ts';
import { type ChaosStore, FULL, QUICK, runChaos } from './run.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite,postgres,redis' },
    ops: { type: 'string' },
    seed: { type: 'string' },
    'skew-app-clock': { type: 'boolean', default: false },
  },
});
const stores = values.store.split(',').map((s) => s.trim()) as ChaosStore[];
for (const s of stores) {
  if (!['sqlite', 'postgres', 'redis', 'dynamodb'].includes(s)) {
    console.error(`chaos: unknown store "${s}" (sqlite, postgres, redis, dynamodb)`);
    process.exit(2);
  }
}
const profile = values.quick ? QUICK : FULL;
const seed = values.seed ? Number(values.seed) : Date.now() % 1_000_000;
let ok = true;
for (const store of stores) {
  const report = await runChaos({
    ...profile,
    ...(values.ops && { ops: Number(values.ops) }),
    store,
    seed,
    skewAppClock: values['skew-app-clock'],
    log: (line) => console.log(line),
  });
  console.log(formatReport(report));
  ok &&= clean(report);
}
console.log(ok ? 'chaos: clean' : `chaos: FAILED (seed ${seed}: rerun with --seed for the same fault mix)`);
process.exit(ok ? 0 : 1);

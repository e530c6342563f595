/**
 * Command-line options of `npm run bench`.
 *
 * ```
 * npm run bench                               # everything, ~3-4 minutes
 * npm run bench -- --only sqlite,redis        # some sections
 * npm run bench -- --quick                    # short runs, to check the harness
 * npm run bench -- --duration 1000                # measured ms per case (default 3000)
 * npm run bench -- --docs                     # also refresh the tables in docs/BENCHMARKS.md
 * npm run bench -- --out /tmp/results.md      # where the markdown goes (default bench/results/latest.md)
 * ```
 *
 * @module
 */

export const SECTIONS = [
  'memory',
  'sqlite',
  'postgres',
  'redis',
  'gateway',
  'llm',
  'journal',
  'tools',
  'dynamodb',
  'inbox',
  'outbox',
  'express',
] as const;
export type SectionId = (typeof SECTIONS)[number];

export interface RunConfig {
  only: SectionId[];
  quick: boolean;
  docs: boolean;
  out: string;
  /** Measured time per case, split over `rounds` interleaved slices. */
  durationMs: number;
  rounds: number;
  warmupMs: number;
  /** Measured time per duplicate-burst case. */
  burstMs: number;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs(argv: string[]): RunConfig {
  const cfg: RunConfig = {
    only: [...SECTIONS],
    quick: false,
    docs: false,
    out: 'bench/results/latest.md',
    durationMs: 3000,
    rounds: 3,
    warmupMs: 500,
    burstMs: 3000,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--only': {
        const ids = value()
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
        for (const id of ids) {
          if (!(SECTIONS as readonly string[]).includes(id)) {
            throw new UsageError(`--only: unknown section "${id}"; known: ${SECTIONS.join(', ')}`);
          }
        }
        cfg.only = ids as SectionId[];
        break;
      }
      case '--quick':
        Object.assign(cfg, { quick: true, durationMs: 400, rounds: 2, warmupMs: 100, burstMs: 400 });
        break;
      case '--duration': {
        const ms = Number(value());
        if (!(ms >= 100 && ms <= 60_000))
          throw new UsageError('--duration: milliseconds per case, 100 to 60000');
        Object.assign(cfg, { durationMs: ms, burstMs: ms });
        break;
      }
      case '--docs':
        cfg.docs = true;
        break;
      case '--out':
        cfg.out = value();
        break;
      case '--help':
      case '-h':
        throw new UsageError('usage');
      default:
        throw new UsageError(`unknown option ${arg}`);
    }
  }
  return cfg;
}

export const USAGE = `usage: npm run bench -- [--only ${SECTIONS.join(',')}] [--quick] [--duration ms] [--docs] [--out file.md]`;

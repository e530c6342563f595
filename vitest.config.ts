import { join } from 'node:path';
import { defineConfig } from 'vitest/config';
import LongFirstSequencer from './test/helpers/long-first-sequencer.ts';

// 'idem-source' resolves the package's own subpath imports ('idem', 'idem/sqlite', …) to src/*.ts.
// Only that condition is added: vitest hands these to worker processes as Node --conditions,
// and a general one such as 'import' would make require() load ESM builds of CJS packages.
export default defineConfig({
  resolve: { conditions: ['idem-source'] },
  ssr: { resolve: { conditions: ['idem-source'] } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two workers: most suites wait on sockets, stores and child processes rather than the CPU,
    // so two forks halve the wall time on 2 cores (vitest's default there is one).
    maxWorkers: 2,
    // the files that take minutes start first, so none runs alone at the end
    sequence: { sequencer: LongFirstSequencer },
    // gateways started by tests (in process or `idem serve` children) log warnings only, not a line per request
    env: {
      IDEM_LOG_LEVEL: process.env.IDEM_LOG_LEVEL ?? 'warn',
      // the hundreds of Node processes the suites start (idem CLIs, gateways, chaos workers) share
      // one compile cache: after the first, each skips compiling (and type-stripping) idem's
      // source, about half of a start's CPU
      NODE_COMPILE_CACHE:
        process.env.NODE_COMPILE_CACHE ?? join(import.meta.dirname, 'node_modules/.cache/node-compile'),
    },
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});

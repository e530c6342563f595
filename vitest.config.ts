import { defineConfig } from 'vitest/config';

// 'source' resolves the package's own subpath imports ('idem', 'idem/sqlite', …) to src/*.ts.
// Only that condition is added: vitest hands these to worker processes as Node --conditions,
// and a general one such as 'import' would make require() load ESM builds of CJS packages.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});

/**
 * Workaround for running Express under this repo's vitest config: vitest starts its workers
 * with `--conditions import`, so Node's `require()` inside CommonJS packages resolves dual
 * packages to their ESM build and receives a namespace object instead of the function
 * (Express 5's `router` → `is-promise`: "isPromise is not a function"). Preload the CommonJS
 * build under the path `require()` resolves to. Import this before `express`.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const fromRouter = createRequire(require.resolve('router'));
const resolved = fromRouter.resolve('is-promise');
if (resolved.endsWith('.mjs')) {
  const exports = fromRouter(resolved.replace(/\.mjs$/, '.js'));
  require.cache[resolved] = {
    id: resolved,
    filename: resolved,
    loaded: true,
    exports,
    children: [],
  } as never;
}

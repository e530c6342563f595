/**
 * The `source` export condition resolves idem's own subpaths to `src/*.ts` in tests. Some
 * packages publish a `source` condition of their own (eventsource-parser, under `ai`), pointing
 * at TypeScript that Node refuses to strip inside node_modules. This hook sends those to the
 * same export's built file (`import`, else `default`). Node resolves a module graph before it
 * runs it, so register it with `--import` (child processes) or before `ai` is first imported.
 */
import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

type Exports = Record<string, string | Record<string, string>>;

registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    const m = /^(.*\/node_modules\/(?:@[^/]+\/)?[^/]+)\/(.+(?<!\.d)\.[cm]?ts)$/.exec(resolved.url);
    if (!m) return resolved;
    const [, root, file] = m as unknown as [string, string, string];
    const pkg = JSON.parse(readFileSync(new URL(`${root}/package.json`), 'utf8')) as { exports?: Exports };
    for (const entry of Object.values(pkg.exports ?? {})) {
      if (typeof entry !== 'object' || entry.source?.replace(/^\.\//, '') !== file) continue;
      const built = entry.import ?? entry.default;
      if (built) return { url: new URL(built, `${root}/`).href, shortCircuit: true };
    }
    return resolved;
  },
});

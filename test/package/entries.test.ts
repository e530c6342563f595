/** The package's own entry modules: the Node version check and the `idem/sqlite` wrapper. */
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { nodeVersionProblem, REQUIRED_NODE_MAJOR, requireNode24 } from '../../src/runtime.ts';

it('nodeVersionProblem names the Node needed and the one found; undefined from 24 on', () => {
  expect(REQUIRED_NODE_MAJOR).toBe(24);
  expect(nodeVersionProblem('20.20.2')).toMatch(/^idem needs Node ≥ 24, found v20\.20\.2 \(/);
  expect(nodeVersionProblem('22.12.0')).toMatch(/found v22\.12\.0/);
  expect(nodeVersionProblem('20.20.2')).not.toContain('\n');
  for (const ok of ['24.0.0', '24.21.0', '25.1.0', '100.0.0']) expect(nodeVersionProblem(ok)).toBeUndefined();
  expect(nodeVersionProblem()).toBeUndefined(); // this test runs on Node 24
});

it('requireNode24 throws one line with code ERR_IDEM_NODE_VERSION on an older Node', () => {
  expect(() => requireNode24('idem/sqlite', '24.0.0')).not.toThrow();
  let error: (Error & { code?: string }) | undefined;
  try {
    requireNode24('idem/sqlite', '20.1.0');
  } catch (e) {
    error = e as Error & { code?: string };
  }
  expect(error?.code).toBe('ERR_IDEM_NODE_VERSION');
  expect(error?.message).toBe(`idem/sqlite: ${nodeVersionProblem('20.1.0')}`);
});

it('the idem/sqlite wrapper (src/sqlite.ts) exports every value of the SQLite store module, the same instances, silently', () => {
  // In plain Node (not vitest's module runner), where require(esm) and import share one module map.
  const wrapper = new URL('../../src/sqlite.ts', import.meta.url).href;
  const store = new URL('../../src/stores/sqlite/index.ts', import.meta.url).href;
  const script = `const w = await import('${wrapper}'); const s = await import('${store}');
    console.log(JSON.stringify({ w: Object.keys(w).sort(), s: Object.keys(s).sort(), same: w.sqliteStore === s.sqliteStore }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  const seen = JSON.parse(r.stdout) as { w: string[]; s: string[]; same: boolean };
  expect(seen.w).toEqual(seen.s);
  expect(seen.same).toBe(true);
});

it('require("idem/sqlite") from CommonJS works (the wrapper has no top-level await)', () => {
  const wrapper = new URL('../../src/sqlite.ts', import.meta.url).pathname;
  const script = `const m = require(${JSON.stringify(wrapper)}); console.log(typeof m.sqliteStore);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('function');
});

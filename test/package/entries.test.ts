/** The package's own entry modules: the Node version check and the `idem/sqlite` wrapper. */
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

it('the idem/sqlite wrapper (src/sqlite.ts) exports every value the SQLite store module does', async () => {
  const wrapper = await import('../../src/sqlite.ts');
  const store = await import('../../src/stores/sqlite/index.ts');
  expect(Object.keys(wrapper).sort()).toEqual(Object.keys(store).sort());
  expect(wrapper.sqliteStore).toBe(store.sqliteStore);
});

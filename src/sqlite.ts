/**
 * What `import … from 'idem/sqlite'` loads in the built package: checks the Node version first,
 * then loads the SQLite store. `node:sqlite` only exists from Node 22.5 (unflagged in 24), and a
 * static import of it fails while Node links the modules, before any check could run; so the
 * store module is loaded here with a dynamic import, after the check. Types come from the store
 * module itself (package.json "types").
 *
 * @example
 * import { sqliteStore } from 'idem/sqlite';
 * const store = sqliteStore({ path: '.idem/idem.db' });
 *
 * @module
 */
import { requireNode24 } from './runtime.ts';

requireNode24('idem/sqlite');

const entry = await import('./stores/sqlite/index.ts');

/** The SQLite store; see src/stores/sqlite/index.ts. */
export const { sqliteStore } = entry;

/**
 * What `import … from 'idem/sqlite'` loads in the built package: checks the Node version first,
 * then loads the SQLite store. `node:sqlite` only exists from Node 22.5 (unflagged in 24), and a
 * static import of it fails while Node links the modules, before any check could run; so the
 * store module is loaded here after the check, with a synchronous `require()` of the ES module
 * (Node 24), not a top-level `await import()`, so that `require('idem/sqlite')` from CommonJS
 * keeps working. Types come from the store module itself (package.json "types").
 *
 * @example
 * import { sqliteStore } from 'idem/sqlite';
 * const store = sqliteStore({ path: '.idem/idem.db' });
 *
 * @module
 */
import { createRequire } from 'node:module';
import { requireNode24 } from './runtime.ts';

requireNode24('idem/sqlite');

type SqliteEntry = typeof import('./stores/sqlite/index.ts');
const file = `./stores/sqlite/index${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`;
const entry = createRequire(import.meta.url)(file) as SqliteEntry;

/** The SQLite store; see src/stores/sqlite/index.ts. */
export const sqliteStore: SqliteEntry['sqliteStore'] = entry.sqliteStore;

/** Builds the SQLite store in the conformance suite's worker processes, from the installed package. */
import { sqliteStore } from 'idem/sqlite';

export function createStore(arg: { path: string }) {
  return sqliteStore({ path: arg.path });
}

/**
 * The Node version idem needs. Checked where an older Node would otherwise fail with a stack
 * trace about a module it does not have (`node:sqlite`): the `idem/sqlite` entry, the store specs
 * of the CLI and gateway. The `idem` command checks the same in bin/idem.js, before it loads
 * anything.
 *
 * @module
 */

/** The oldest Node major version idem runs on. */
export const REQUIRED_NODE_MAJOR = 24;

/**
 * The one-line complaint about `version` (default: this process's), or undefined when it is
 * new enough.
 *
 * @example
 * nodeVersionProblem('20.20.2'); // 'idem needs Node ≥ 24, found v20.20.2 …'
 * nodeVersionProblem('24.1.0');  // undefined
 */
export function nodeVersionProblem(version: string = process.versions.node): string | undefined {
  if (Number(version.split('.')[0]) >= REQUIRED_NODE_MAJOR) return undefined;
  return (
    `idem needs Node ≥ ${REQUIRED_NODE_MAJOR}, found v${version} (it uses node:sqlite and other Node ` +
    `${REQUIRED_NODE_MAJOR} APIs): install Node ${REQUIRED_NODE_MAJOR} (nvm, fnm, volta) or run with ` +
    `npx -p node@${REQUIRED_NODE_MAJOR} (see the README, "Install")`
  );
}

/**
 * Throws an Error (code `ERR_IDEM_NODE_VERSION`, the message of {@link nodeVersionProblem}) on a
 * Node older than 24; `what` names the part of idem that needed it.
 *
 * @example
 * requireNode24('idem/sqlite');
 */
export function requireNode24(what: string, version: string = process.versions.node): void {
  const problem = nodeVersionProblem(version);
  if (problem) throw Object.assign(new Error(`${what}: ${problem}`), { code: 'ERR_IDEM_NODE_VERSION' });
}

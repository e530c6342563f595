/**
 * Refusing unknown option names: `idempotency({ headerName: 'X-Request-Id' })` would otherwise
 * quietly protect nothing. Shared by the middleware options and the gateway's config and routes.
 *
 * @module
 */

import { InvalidOptionError } from '../core/errors.ts';
import { nearestName } from '../core/names.ts';

/**
 * Throws `InvalidOptionError` for the first own key of `options` that `known` does not list,
 * naming the nearest known one: `unknown option headerName — did you mean header?`. `where`
 * prefixes the name (`routes[0].`).
 *
 * @example
 * checkKnownOptions({ headerName: 'X' }, ['header', 'required']) // throws: unknown option headerName — did you mean header?
 */
export function checkKnownOptions(options: object, known: readonly string[], where = ''): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = nearestName(name, known);
    const hint = near === undefined ? ` (known: ${known.join(', ')})` : ` — did you mean ${where}${near}?`;
    throw new InvalidOptionError(`unknown option ${where}${name}${hint}`);
  }
}

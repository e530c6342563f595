/**
 * Checks the options of `otelInstrumentation` and `traced` where they enter: unknown names (with
 * a "did you mean"), and values of the wrong type, are an `InvalidOptionError`.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';
import { nearestName } from '../core/names.ts';

/**
 * Throws unless `options` is undefined or an object whose every field is known and of its type
 * (`'string'`: a non-empty string; `'boolean'`).
 *
 * @example
 * checkOptions('traced', { tracerName: 'x' }, { tracerName: 'string', recordId: 'boolean' });
 */
export function checkOptions(
  label: string,
  options: unknown,
  known: Record<string, 'string' | 'boolean'>,
): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidOptionError(`${label}: options must be an object`);
  const names = Object.keys(known);
  for (const [name, value] of Object.entries(options)) {
    const type = known[name];
    if (!type) {
      const near = nearestName(name, names);
      throw new InvalidOptionError(
        `${label}: unknown option "${name}"${near ? ` — did you mean ${near}?` : ` (known: ${names.join(', ')})`}`,
      );
    }
    if (value === undefined) continue;
    if (type === 'string' ? typeof value !== 'string' || value === '' : typeof value !== 'boolean')
      throw new InvalidOptionError(
        `${label}: ${name} must be ${type === 'string' ? 'a non-empty string' : 'true or false'}`,
      );
  }
}

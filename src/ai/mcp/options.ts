/**
 * Checking the options of `withIdem` and `idempotentHandler` where they enter.
 *
 * @module
 */
import { InvalidOptionError } from '../../core/errors.ts';
import { resolveRunOptions } from '../../core/options.ts';
import { checkKnownOptions } from '../../http/known.ts';
import type { McpIdemOptions } from './handler.ts';

const KNOWN = ['idem', 'scope', 'key', 'unkeyed', 'releaseIf', 'waitTimeout', 'ttl', 'lease'];

/** Throws `InvalidOptionError` for a missing idem, an unknown option or a bad value. */
export function checkMcpOptions(options: McpIdemOptions, label: string): void {
  if (!options || typeof options.idem?.execute !== 'function') {
    throw new InvalidOptionError(`${label} needs { idem }: a createIdem({ store }) instance`);
  }
  checkKnownOptions(options, KNOWN);
  for (const hook of ['scope', 'key', 'releaseIf'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') {
      throw new InvalidOptionError(`${label}: ${hook} must be a function`);
    }
  }
  if (options.unkeyed !== undefined && options.unkeyed !== 'run' && options.unkeyed !== 'reject') {
    throw new InvalidOptionError(`${label}: unkeyed must be 'run' or 'reject'`);
  }
  resolveRunOptions({ waitTimeout: options.waitTimeout, ttl: options.ttl, lease: options.lease }, label);
}

/**
 * How the `idem` command reports a failure: one line on stderr, `idem: <what went wrong and what
 * to do>`, and an exit code (docs/cli.md):
 *
 * | code | when |
 * |---|---|
 * | 1 | the command could not do its job: `idem check` saw a duplicate execute or could not reach the endpoint, a port is in use, the store does not answer |
 * | 2 | bad arguments or configuration (unknown option, missing `--upstream`, invalid store spec, unusable SQLite path) |
 * | 3 | `idem check` only: no duplicate executed, but a row of the behaviour table failed (`CHECK_EXIT` in check.ts) |
 *
 * @module
 */
import { CommanderError, InvalidArgumentError } from 'commander';
import { InvalidOptionError, isIdemError } from '../core/errors.ts';

/** Exit code of a usage or configuration error. */
export const EXIT_USAGE = 2;
/** Exit code of a command that could not do its job. */
export const EXIT_FAILED = 1;

/**
 * The network cause inside an error, as `CODE host:port` (`ECONNREFUSED 127.0.0.1:8080`), or
 * undefined when it has none. Follows `cause` chains and the per-address errors of an
 * AggregateError (a host name that resolves to several addresses).
 *
 * @example
 * try { await fetch(url); } catch (e) { networkCause(e); } // 'ECONNREFUSED 127.0.0.1:8080'
 */
export function networkCause(error: unknown): string | undefined {
  const seen = new Set<string>();
  const visit = (e: unknown, depth: number) => {
    if (!e || typeof e !== 'object' || depth > 5) return;
    const x = e as { code?: unknown; address?: unknown; port?: unknown; errors?: unknown; cause?: unknown };
    if (typeof x.code === 'string' && /^E[A-Z]+$/.test(x.code)) {
      seen.add(
        typeof x.address === 'string' ? `${x.code} ${x.address}${x.port ? `:${x.port}` : ''}` : x.code,
      );
    }
    if (Array.isArray(x.errors)) for (const inner of x.errors) visit(inner, depth + 1);
    visit(x.cause, depth + 1);
  };
  visit(error, 0);
  // A bare code (from a wrapper) adds nothing next to the same code with its address.
  const all = [...seen];
  const full = all.filter((c) => !all.some((o) => o !== c && o.startsWith(`${c} `)));
  return full.length ? full.join(', ') : undefined;
}

/**
 * The message for a server that could not listen: which address, why, and which setting
 * (`--port`, `PORT`…) picks another.
 *
 * @example
 * listenFailure(error, '--port'); // '127.0.0.1:8080 is already in use (EADDRINUSE): choose another port with --port'
 */
export function listenFailure(error: unknown, setting: string): string {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number };
  const where = e?.address !== undefined ? `${e.address}:${e.port}` : 'the address';
  if (e?.code === 'EADDRINUSE')
    return `${where} is already in use (EADDRINUSE): choose another port with ${setting}`;
  if (e?.code === 'EACCES')
    return `${where} needs privileges to listen on (EACCES): choose a port above 1023 with ${setting}`;
  if (e?.code === 'EADDRNOTAVAIL')
    return `${where} is not an address of this machine (EADDRNOTAVAIL): check --host`;
  return `cannot listen on ${where}: ${e?.message ?? String(error)}`;
}

/**
 * An error the CLI already phrased: printed as is, exits with `exitCode`.
 *
 * @example
 * throw cliFailure('127.0.0.1:8080 is already in use (EADDRINUSE): choose another port with --port');
 */
export function cliFailure(
  message: string,
  exitCode = EXIT_FAILED,
  cause?: unknown,
): Error & { exitCode: number } {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { exitCode });
}

/**
 * The one line and the exit code for any error that reached the top of the command.
 *
 * @example
 * const { line, exitCode } = describeFailure(error);
 * console.error(line);
 */
export function describeFailure(error: unknown): { line: string; exitCode: number } {
  const firstLine = (text: string) => text.split('\n')[0]!.trim();
  const phrased = error as { message?: unknown; exitCode?: unknown };
  if (error instanceof Error && typeof phrased.exitCode === 'number' && !(error instanceof CommanderError)) {
    return { line: `idem: ${firstLine(error.message)}`, exitCode: phrased.exitCode };
  }
  // An InvalidArgumentError thrown by an action (a CommanderError too, so tested first).
  if (error instanceof InvalidArgumentError || error instanceof InvalidOptionError) {
    return { line: `idem: ${firstLine(error.message)}`, exitCode: EXIT_USAGE };
  }
  if (error instanceof CommanderError) {
    // Commander printed its message already (see configureOutput in index.ts); only the code is left.
    return { line: '', exitCode: error.exitCode === 0 ? 0 : EXIT_USAGE };
  }
  if (isIdemError(error)) return { line: `idem: ${firstLine(error.message)}`, exitCode: EXIT_FAILED };
  const cause = networkCause(error);
  const message = error instanceof Error ? error.message : String(error);
  return {
    line: `idem: ${firstLine(message)}${cause && !message.includes(cause) ? ` (${cause})` : ''}`,
    exitCode: EXIT_FAILED,
  };
}

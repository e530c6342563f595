/**
 * `--store` specs: one string names a store and where it lives. Backends load lazily, so a
 * gateway on SQLite never loads `pg` or `ioredis`.
 *
 * | spec | store |
 * |---|---|
 * | `memory` | {@link memoryStore}: one process, nothing kept |
 * | `sqlite:PATH` (`sqlite:` alone: `.idem/gateway.db`) | `sqliteStore({ path })`: one machine, many processes |
 * | `postgres://…` / `postgresql://…` (`?schema=` and `?table=` are read and removed) | `postgresStore` |
 * | `redis://…` / `rediss://…` (`?prefix=` is read and removed) | `redisStore` |
 * | `redis+cluster://host:port,host:port` / `rediss+cluster://…` (`?prefix=`) | `redisStore` on a Cluster |
 * | `dynamodb://TABLE` (`?region=`, `?endpoint=`; credentials from the environment) | `dynamodbStore` |
 *
 * @module
 */

import { InvalidOptionError, isIdemError, StoreUnavailableError } from '../core/errors.ts';
import { nearestName } from '../core/names.ts';
import type { Store } from '../core/store.ts';
import { requireNode24 } from '../runtime.ts';
import { memoryStore } from './memory/index.ts';

/** Where `sqlite:` without a path keeps its file. */
export const DEFAULT_SQLITE_PATH = '.idem/gateway.db';

/**
 * Opens the store a spec names.
 *
 * @example
 * const store = await storeFromSpec('postgres://app@db/app?schema=idem_gateway');
 */
export async function storeFromSpec(spec: string): Promise<Store> {
  if (typeof spec !== 'string' || spec.trim() === '') throw new InvalidOptionError('the store spec is empty');
  const s = spec.trim();
  if (s === 'memory') return memoryStore();
  if (s.startsWith('sqlite:')) {
    const path = s.slice('sqlite:'.length).replace(/^\/\/(?=\/|\.|~)/, '') || DEFAULT_SQLITE_PATH;
    requireNode24('the sqlite: store');
    const { sqliteStore } = await import('./sqlite/index.ts');
    try {
      return sqliteStore({ path });
    } catch (error) {
      // sqliteStore reports a path it cannot create as an InvalidOptionError with the fs error as cause
      const fsError = isIdemError(error) ? error.cause : error;
      if (typeof (fsError as NodeJS.ErrnoException | undefined)?.code !== 'string') throw error;
      throw new InvalidOptionError(
        `cannot open the SQLite database sqlite:${path} (${fsReason(fsError)}): use a path whose directory ` +
          `can be created and written, e.g. sqlite:${DEFAULT_SQLITE_PATH}`,
        { cause: fsError },
      );
    }
  }
  if (/^postgres(ql)?:\/\//.test(s)) {
    const url = new URL(s);
    const schema = take(url, 'schema');
    const table = take(url, 'table');
    const { postgresStore } = await import('./postgres/index.ts');
    return postgresStore({
      connectionString: url.toString(),
      ...(schema && { schema }),
      ...(table && { table }),
    });
  }
  if (/^rediss?:\/\//.test(s)) {
    const url = new URL(s);
    const prefix = take(url, 'prefix');
    const { redisStore } = await import('./redis/index.ts');
    return redisStore({ url: url.toString(), ...(prefix && { prefix }) });
  }
  if (/^rediss?\+cluster:\/\//.test(s)) {
    // host:port,host:port is not one URL host: read ?prefix= by hand, the rest is the store's
    const [base, query = ''] = s.split('?', 2) as [string, string?];
    const params = new URLSearchParams(query);
    const prefix = params.get('prefix');
    params.delete('prefix');
    for (const name of params.keys()) {
      throw new InvalidOptionError(`redis+cluster:// spec: unknown parameter ${name} (known: prefix)`);
    }
    const { redisStore } = await import('./redis/index.ts');
    return redisStore({ url: base, ...(prefix && { prefix }) });
  }
  if (s.startsWith('dynamodb://')) {
    const url = new URL(s);
    const table = decodeURIComponent(url.host);
    const region = take(url, 'region');
    const endpoint = take(url, 'endpoint');
    for (const name of url.searchParams.keys()) {
      const near = nearestName(name, ['region', 'endpoint']);
      throw new InvalidOptionError(
        `dynamodb:// spec: unknown parameter ${name}${near ? ` — did you mean ${near}?` : ' (known: region, endpoint)'}`,
      );
    }
    const { dynamodbStore } = await import('./dynamodb/index.ts');
    return dynamodbStore({
      table,
      clientConfig: { ...(region && { region }), ...(endpoint && { endpoint }) },
    });
  }
  throw new InvalidOptionError(
    `unknown store "${redact(s)}": use memory, sqlite:PATH, postgres://…, redis://…, redis+cluster://… or dynamodb://TABLE`,
  );
}

/**
 * Where a spec's store lives, for messages: `host:port` for a URL spec (default ports filled
 * in), the file for `sqlite:`, `memory` for memory.
 *
 * @example
 * storeAddress('redis://127.0.0.1:6379/0'); // 'redis 127.0.0.1:6379'
 */
export function storeAddress(spec: string): string {
  const s = spec.trim();
  if (s.startsWith('sqlite:')) return `SQLite file ${s.slice('sqlite:'.length) || DEFAULT_SQLITE_PATH}`;
  if (s.startsWith('dynamodb://')) return `DynamoDB table ${s.slice('dynamodb://'.length).split('?')[0]}`;
  const cluster = /^rediss?\+cluster:\/\/(?:[^@/]*@)?([^/?#]*)/.exec(s);
  if (cluster) return `redis cluster ${cluster[1]}`;
  const ports: Record<string, string> = {
    postgres: '5432',
    postgresql: '5432',
    redis: '6379',
    rediss: '6379',
  };
  try {
    const url = new URL(s);
    const scheme = url.protocol.slice(0, -1);
    return `${scheme.startsWith('postgres') ? 'postgres' : 'redis'} ${url.hostname || 'localhost'}:${url.port || ports[scheme] || '?'}`;
  } catch {
    return redact(s);
  }
}

/**
 * Reads one record id nobody writes, to learn at start-up whether the store answers. A failure
 * becomes one {@link StoreUnavailableError} line that names the store's address, with any
 * millisecond figure rounded.
 *
 * @example
 * const store = await storeFromSpec(spec);
 * await checkStore(store, spec); // throws 'the store at redis 127.0.0.1:6379 did not answer: …'
 */
export async function checkStore(store: Store, spec: string): Promise<void> {
  try {
    await store.get('idem-store-check');
  } catch (error) {
    const message = (error as Error)?.message ?? String(error);
    throw new StoreUnavailableError(
      `the store at ${storeAddress(spec)} did not answer: ${roundMs(message)} (is it running, and is ${redact(spec)} right?)`,
      { cause: error },
    );
  }
}

/**
 * {@link checkStore}, tried again for up to `waitMs` while the store does not answer: for a
 * gateway started beside its store (compose, a supervisor restarting both). Says once on stderr
 * that it is waiting (unless `quiet`); the last failure is thrown when the wait is over.
 *
 * @example
 * await waitForStore(gateway.store, 'postgres://db/idem', 30_000);
 */
export async function waitForStore(store: Store, spec: string, waitMs: number, quiet = false): Promise<void> {
  const giveUpAt = performance.now() + waitMs; // monotonic, like every other wait in idem
  let told = false;
  for (let pause = 100; ; pause = Math.min(pause * 2, 2000)) {
    try {
      return await checkStore(store, spec);
    } catch (error) {
      const left = giveUpAt - performance.now();
      if (left <= 0) throw error;
      if (!told && !quiet)
        process.stderr.write(
          `idem: ${(error as Error).message}; trying again for up to ${Math.ceil(left / 1000)} s (--store-wait)\n`,
        );
      told = true;
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
    }
  }
}

/** `1835.9270179999999 ms` → `1836 ms`. */
function roundMs(text: string): string {
  return text.replace(/(\d+\.\d+)(?=\s*ms\b)/g, (n) => String(Math.round(Number(n))));
}

/** `ENOTDIR: /tmp/file is not a directory` from a file-system error; the message otherwise. */
function fsReason(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  const what: Record<string, string> = {
    EEXIST: 'a file is in the way of a directory',
    ENOTDIR: 'a part of the path is a file, not a directory',
    EACCES: 'permission denied',
    EROFS: 'read-only file system',
    EISDIR: 'the path is a directory',
  };
  if (e?.code && what[e.code]) return `${e.code}: ${what[e.code]}${e.path ? `: ${e.path}` : ''}`;
  return e?.message ?? String(error);
}

/** The spec with any password replaced by `***`, for logs. */
export function redact(spec: string): string {
  return spec.replace(/^([a-z+]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

function take(url: URL, name: string): string | undefined {
  const value = url.searchParams.get(name) ?? undefined;
  url.searchParams.delete(name);
  return value;
}

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
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';
import type { Store } from '../core/store.ts';
import { memoryStore } from '../stores/memory/index.ts';

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
    const { sqliteStore } = await import('../stores/sqlite/index.ts');
    return sqliteStore({ path });
  }
  if (/^postgres(ql)?:\/\//.test(s)) {
    const url = new URL(s);
    const schema = take(url, 'schema');
    const table = take(url, 'table');
    const { postgresStore } = await import('../stores/postgres/index.ts');
    return postgresStore({
      connectionString: url.toString(),
      ...(schema && { schema }),
      ...(table && { table }),
    });
  }
  if (/^rediss?:\/\//.test(s)) {
    const url = new URL(s);
    const prefix = take(url, 'prefix');
    const { redisStore } = await import('../stores/redis/index.ts');
    return redisStore({ url: url.toString(), ...(prefix && { prefix }) });
  }
  throw new InvalidOptionError(
    `unknown store "${redact(s)}": use memory, sqlite:PATH, postgres://… or redis://…`,
  );
}

/** The spec with any password replaced by `***`, for logs. */
export function redact(spec: string): string {
  return spec.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

function take(url: URL, name: string): string | undefined {
  const value = url.searchParams.get(name) ?? undefined;
  url.searchParams.delete(name);
  return value;
}

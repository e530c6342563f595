/**
 * Round-trip counting, outside the timed runs.
 *
 * - Redis: a MONITOR connection sees every command the server runs; commands touching a key
 *   under the benchmark's prefix are counted by name (commands run inside Lua, source `lua`,
 *   are not round trips and are left out). Other traffic on a shared server is ignored.
 * - Postgres: a pool wrapper counts `query()` calls (each one request/response exchange).
 *
 * @module
 */
import net from 'node:net';

export type Counts = Record<string, number>;

/** Per-operation counts: each count divided by `ops`, rendered `name ×n`. */
export function perOp(counts: Counts, ops: number): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = Object.entries(counts)
    .sort()
    .map(([k, v]) => `${k} ×${round(v / ops)}`);
  return `${round(total / ops)} (${parts.join(', ') || 'none'})`;
}

export const totalPerOp = (counts: Counts, ops: number) =>
  Object.values(counts).reduce((a, b) => a + b, 0) / ops;

const round = (n: number) => String(Math.round(n * 100) / 100);

export interface RedisMonitor {
  /** Counts since the last take, once every command sent so far has been seen. */
  take(): Promise<Counts>;
  close(): void;
}

/** The quoted arguments of one MONITOR line, unescaped enough to compare prefixes. */
function monitorArgs(line: string): { source: string; args: string[] } | undefined {
  const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
  if (!m) return undefined;
  const args = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!.replace(/\\(.)/g, '$1'));
  return { source: m[1]!, args };
}

/**
 * Counts commands on keys starting with `prefix`, read from a MONITOR connection of its own
 * (a plain socket: no client library state to confuse). `names` labels EVALSHA calls by sha.
 * `echo` sends `ECHO <arg>` on the connection under test's server, to mark "everything sent".
 *
 * @example
 * const mon = await redisMonitor(url, 'bench_x', (s) => client.echo(s), { [sha]: 'claim' });
 * await op(); const counts = await mon.take();
 */
export async function redisMonitor(
  url: string,
  prefix: string,
  echo: (text: string) => Promise<unknown>,
  names: Record<string, string> = {},
): Promise<RedisMonitor> {
  const u = new URL(url);
  const socket = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let counts: Counts = {};
  let sentinelSeen: (() => void) | undefined;
  const sentinel = `${prefix}:__sentinel__`;
  let buffered = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl = buffered.indexOf('\r\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 2);
      nl = buffered.indexOf('\r\n');
      const parsed = monitorArgs(line);
      if (!parsed || parsed.source === 'lua') continue;
      const { args } = parsed;
      if (args[1] === sentinel) {
        sentinelSeen?.();
        continue;
      }
      if (!args.some((a) => a.startsWith(prefix))) continue;
      const cmd = String(args[0]).toLowerCase();
      let label = cmd;
      if (cmd === 'evalsha') label = `evalsha ${names[String(args[1])] ?? String(args[1]).slice(0, 8)}`;
      else if (cmd === 'eval') label = 'eval (script load)';
      else if (cmd === 'set') label = args.some((a) => a.toUpperCase() === 'NX') ? 'set nx' : 'set';
      counts[label] = (counts[label] ?? 0) + 1;
    }
  });
  const started = new Promise<void>((resolve) => {
    const onOk = (chunk: string) => {
      if (chunk.startsWith('+OK')) resolve();
    };
    socket.once('data', onOk);
  });
  socket.write('MONITOR\r\n');
  await started;
  return {
    async take() {
      // MONITOR is asynchronous: a sentinel sent after the work arrives after it
      const seen = new Promise<void>((resolve) => (sentinelSeen = resolve));
      await echo(sentinel);
      await Promise.race([seen, new Promise((r) => setTimeout(r, 2000))]);
      const out = counts;
      counts = {};
      return out;
    },
    close() {
      socket.destroy();
    },
  };
}

/** The slice of pg's Pool and PoolClient that the store and the raw baseline use. */
export interface QueryClient {
  query(config: { text: string; values?: unknown[] }): Promise<unknown>;
  release(err?: Error | boolean): void;
}
export interface ConnectPool<C extends QueryClient> {
  connect(): Promise<C>;
}

/**
 * A pool whose clients count their queries, labelled by `label(text)`.
 *
 * @example
 * const counted = countingPool(pool, (sql) => (sql === statements.claim ? 'claim' : 'other'));
 */
export function countingPool<C extends QueryClient, P extends ConnectPool<C>>(
  pool: P,
  label: (text: string) => string,
): { pool: P; take(): Counts } {
  let counts: Counts = {};
  const wrapped = new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop !== 'connect') {
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      }
      return async () => {
        const client = await target.connect();
        return new Proxy(client, {
          get(c, p, r) {
            const v = Reflect.get(c, p, r);
            if (p !== 'query') return typeof v === 'function' ? v.bind(c) : v;
            return (config: { text: string; values?: unknown[] }) => {
              const name = label(typeof config === 'string' ? config : config.text);
              counts[name] = (counts[name] ?? 0) + 1;
              return c.query(config);
            };
          },
        });
      };
    },
  });
  return {
    pool: wrapped,
    take() {
      const out = counts;
      counts = {};
      return out;
    },
  };
}

/** The round-trip targets of issue 3, from counted fresh-key and replay calls. */
export function roundTripChecks(
  fresh: Counts,
  replay: Counts,
  ops: number,
  labels: { claim: string; complete: string },
): { target: string; actual: string; met: boolean }[] {
  const claim = (fresh[labels.claim] ?? 0) / ops;
  const complete = (fresh[labels.complete] ?? 0) / ops;
  return [
    { target: 'claim: one round trip', actual: `${round(claim)} per fresh call`, met: claim === 1 },
    { target: 'complete: one round trip', actual: `${round(complete)} per fresh call`, met: complete === 1 },
    {
      target: 'fresh key: two round trips in all',
      actual: round(totalPerOp(fresh, ops)),
      met: totalPerOp(fresh, ops) === 2,
    },
    {
      target: 'replay: one round trip',
      actual: round(totalPerOp(replay, ops)),
      met: totalPerOp(replay, ops) === 1,
    },
  ];
}

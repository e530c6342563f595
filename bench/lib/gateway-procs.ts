/**
 * The parent side of the gateway benchmark's child processes (bench/lib/gateway-child.ts):
 * starting them, reading their counters, waiting until they are idle, and cleaning up the
 * Postgres schema and Redis keys their stores used.
 *
 * @module
 */
import { type ChildProcess, fork } from 'node:child_process';
import { SERVICES } from './env.ts';
import type { ChildMessage } from './gateway-child.ts';
import { unlinkMatching } from './redis-keys.ts';
import { sleep } from './workload.ts';

const CHILD = new URL('./gateway-child.ts', import.meta.url).pathname;

/** A child's counters (see bench/lib/gateway-child.ts). */
export interface Stats {
  executions: number;
  cpuUs: number;
  inflight: number;
  storeUs: number;
}

/** A running child: the upstream or one gateway. */
export interface Child {
  url: string;
  stats(): Promise<Stats>;
  close(): Promise<void>;
}

/**
 * Waits until no gateway is still handling a request (a keyed request whose client left at the
 * end of a slice still claims and forwards) and the upstream's count stops moving, so no call
 * of one case lands in the next.
 */
export async function quiesce(upstream: Child, gateways: readonly Child[]) {
  let last = await upstream.stats();
  for (let i = 0; i < 400; i++) {
    await sleep(25);
    const busy = (await Promise.all(gateways.map((g) => g.stats()))).some((g) => g.inflight > 0);
    const now = await upstream.stats();
    if (!busy && now.executions === last.executions) return now;
    last = now;
  }
  throw new Error('the gateways did not finish their requests within 10 s of a slice');
}

/** Forks a child of bench/lib/gateway-child.ts and waits until it listens. */
export function startChild(args: string[]): Promise<Child> {
  const proc: ChildProcess = fork(CHILD, args, { execArgv: ['--conditions=idem-source'], stdio: 'inherit' });
  const what = `gateway-child ${args[0]}`;
  const waiting: { resolve: (m: Stats) => void; reject: (e: Error) => void }[] = [];
  proc.once('exit', (code) => {
    // a child that dies mid-run fails the section instead of hanging it
    for (const w of waiting.splice(0)) w.reject(new Error(`${what} exited with ${code}`));
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${what} exited with ${code}`));
    proc.once('exit', onExit);
    proc.on('message', (m: ChildMessage) => {
      if (m.type === 'stats') waiting.shift()?.resolve(m);
      else if (m.type === 'error') reject(new Error(`${what}: ${m.message}`));
      else if (m.type === 'ready') {
        proc.off('exit', onExit);
        resolve({
          url: m.url,
          stats: () =>
            new Promise((resolve, reject) => {
              if (proc.exitCode !== null) return reject(new Error(`${what} has exited`));
              waiting.push({ resolve, reject });
              proc.send({ type: 'stats' });
            }),
          close: () =>
            new Promise((r) => {
              if (proc.exitCode !== null) return r();
              const timer = setTimeout(() => proc.kill(), 5000);
              proc.once('exit', () => {
                clearTimeout(timer);
                r();
              });
              proc.send({ type: 'close' });
            }),
        });
      }
    });
  });
}

/** Drops the Postgres schema a gateway's store created. */
export async function dropSchema(schema: string): Promise<string> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: SERVICES.postgres });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    return `dropped Postgres schema ${schema}`;
  } finally {
    await client.end();
  }
}

/** Unlinks the Redis keys under a gateway store's prefix. */
export async function deletePrefix(prefix: string): Promise<string> {
  const { Redis } = await import('ioredis');
  const client = new Redis(SERVICES.redis);
  try {
    return `deleted ${await unlinkMatching(client, `${prefix}*`)} Redis keys under ${prefix}*`;
  } finally {
    client.disconnect();
  }
}

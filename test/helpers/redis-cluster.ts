/**
 * Throwaway Redis servers for tests that must stop, restart or cluster Redis, so the shared
 * server on 6379 is never touched: `startRedis()` runs one redis-server on a spare port,
 * `startCluster()` a local 3-master Redis Cluster. Both need redis-server and redis-cli.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** True when redis-server and redis-cli are on the PATH. */
export async function redisBinariesAvailable(): Promise<boolean> {
  try {
    await run('redis-server', ['--version']);
    await run('redis-cli', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** True when nothing listens on 127.0.0.1:port. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The first base port from `from` (stepping by 10) with `count` free ports after it. */
export async function freePorts(from: number, count: number): Promise<number[]> {
  for (let base = from; base < from + 1000; base += 10) {
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return ports;
  }
  throw new Error(`no ${count} free ports from ${from}`);
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
  return stdout;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * True while `pid` runs (a killed daemon nobody reaps stays a zombie: that counts as dead).
 * Only ever a real pid: 0 or -1 would address a whole process group.
 */
function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** True when `pid` is a live redis-server: the only processes this helper ever signals. */
function isRedis(pid: number): boolean {
  try {
    return alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('redis-server');
  } catch {
    return false;
  }
}

/** The pid in a pidfile, or 0 while the file is missing or half written. */
function readPid(file: string): number {
  try {
    const text = readFileSync(file, 'utf8');
    const pid = /^(\d+)\n$/.test(text) ? Number(text.trim()) : 0;
    return pid > 1 ? pid : 0;
  } catch {
    return 0;
  }
}

const DIR_PREFIX = 'idem-redis-';

/**
 * Stops servers this helper started for a test process that has since died (a run killed
 * before its afterAll): each server's directory names its owner pid.
 */
async function reapOrphans(): Promise<void> {
  for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name);
    try {
      const owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8'));
      if (alive(owner)) continue;
    } catch {
      continue; // not made by this helper
    }
    try {
      const pid = readPid(join(dir, 'redis.pid'));
      if (isRedis(pid)) {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 50 && alive(pid); i++) await sleep(20);
      }
    } catch {
      // no server (a cluster's own directory), or already gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One redis-server on `port`, without persistence. */
export interface RedisServer {
  port: number;
  url: string;
  /** Starts the server (again), and resolves once it answers PING. */
  start(): Promise<void>;
  /** Sends a signal to the server process: SIGKILL to crash it, SIGSTOP/SIGCONT to freeze it. */
  signal(signal: NodeJS.Signals): void;
  /** Stops the server if it runs and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Runs `redis-server --port <port> --save "" --appendonly no --daemonize yes` in a temp dir.
 *
 * @example
 * const server = await startRedis(6390); server.signal('SIGKILL'); await server.start();
 */
export async function startRedis(fromPort = 6390, extra: string[] = []): Promise<RedisServer> {
  await reapOrphans();
  const [port] = await freePorts(fromPort, 1);
  const dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${port}-`));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const pidfile = join(dir, 'redis.pid');
  let pid = 0;
  const server: RedisServer = {
    port: port!,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (pid && alive(pid)) throw new Error(`redis-server on ${port} is already running`);
      rmSync(pidfile, { force: true });
      await run('redis-server', [
        ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        ...['--daemonize', 'yes', '--dir', dir, '--pidfile', pidfile, '--logfile', join(dir, 'redis.log')],
        ...extra,
      ]);
      await waitFor(`redis-server on ${port}`, async () => {
        pid = readPid(pidfile);
        return alive(pid) && (await cli(port!, 'PING')).trim() === 'PONG';
      });
    },
    signal(signal) {
      if (!isRedis(pid)) throw new Error(`redis-server on ${port} is not running`);
      process.kill(pid, signal);
    },
    async stop() {
      if (isRedis(pid)) {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

/** A local Redis Cluster. */
export interface RedisCluster {
  nodes: { host: string; port: number }[];
  /** The masters, to crash or restart one (it rejoins from its nodes-<port>.conf). */
  servers: RedisServer[];
  stop(): Promise<void>;
}

/**
 * Starts three cluster-enabled masters (ports 7001–7003, or the next free block), joins them
 * with `redis-cli --cluster create`, and waits for cluster_state:ok.
 *
 * @example
 * const cluster = await startCluster(); const client = new Cluster(cluster.nodes);
 */
export async function startCluster(fromPort = 7001): Promise<RedisCluster> {
  const free = await freePorts(fromPort, 3);
  const servers: RedisServer[] = [];
  await reapOrphans();
  const dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}cluster-`));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of free) {
      servers.push(
        await startRedis(port, [
          ...['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`)],
          ...['--cluster-node-timeout', '2000'],
        ]),
      );
    }
    const ports = servers.map((s) => s.port);
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of ports) {
      await waitFor(`cluster_state:ok on ${port}`, async () =>
        (await cli(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok'),
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { nodes: servers.map((s) => ({ host: '127.0.0.1', port: s.port })), servers, stop };
}

/**
 * Private Redis, PostgreSQL and DynamoDB (dynalite) servers for the chaos harness: started in a
 * temp folder on free ports, restarted and cut off at will, removed at the end. The shared
 * services on 6379/5432 are never touched.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivateService {
  url: string;
  /** Stops and starts the server again; its data survives. */
  restart(): Promise<void>;
  /** Drops every client connection. */
  cutConnections(): Promise<void>;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect({ host: '127.0.0.1', port }, () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A private redis-server with an fsync'd append-only file, so a restart keeps every record. */
export async function privateRedis(): Promise<PrivateService> {
  const dir = mkdtempSync(join(tmpdir(), 'idem-chaos-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: 'ignore' },
    );
    await waitForPort(port);
  };
  const stopNow = async () => {
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc?.once('exit', r));
    proc.kill('SIGTERM'); // redis writes its AOF and exits
    await exited;
  };
  await start();
  const cli = (...args: string[]) =>
    execFileSync('redis-cli', ['-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  return {
    url: `redis://127.0.0.1:${port}`,
    async restart() {
      await stopNow();
      await start();
    },
    async cutConnections() {
      try {
        cli('CLIENT', 'KILL', 'TYPE', 'normal');
      } catch {
        // nobody connected
      }
    },
    async stop() {
      await stopNow();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const PG_BIN = (() => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const version = readdirSync(root).sort().at(-1);
  return version ? join(root, version, 'bin') : undefined;
})();

/** True when this machine can run a private PostgreSQL (its binaries and a `postgres` user). */
export function canRunPrivatePostgres(): boolean {
  try {
    return PG_BIN !== undefined && execFileSync('id', ['-u', 'postgres']).length > 0;
  } catch {
    return false;
  }
}

/** A private PostgreSQL cluster in a temp folder, run as the `postgres` user. */
export async function privatePostgres(): Promise<PrivateService> {
  if (!PG_BIN) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql');
  const dir = mkdtempSync(join(tmpdir(), 'idem-chaos-pg-'));
  chmodSync(dir, 0o700);
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  chownSync(dir, uid, gid);
  const data = join(dir, 'data');
  const asPostgres = (cmd: string, args: string[]) =>
    execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN as string, cmd), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off`;
  const start = async () => {
    asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start']);
    await waitForPort(port);
  };
  await start();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    async restart() {
      // immediate: like a crash; committed rows survive through WAL replay
      asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      await start();
    },
    async cutConnections() {
      const { default: pg } = await import('pg');
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL',
      );
      await c.end();
    },
    async stop() {
      try {
        asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const DYNALITE = new URL('./dynalite-server.ts', import.meta.url).pathname;

/**
 * A private dynalite in its own process with its tables on disk: a restart is a SIGKILL and a
 * start on the same folder (acknowledged writes survive), a cut closes every connection.
 * `url` is the endpoint.
 */
export async function privateDynalite(): Promise<PrivateService> {
  const dir = mkdtempSync(join(tmpdir(), 'idem-chaos-dynalite-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  /** Set once the process has its SIGUSR2 handler (before it, SIGUSR2 would kill it). */
  let ready = false;
  const start = async () => {
    const log = openSync(join(dir, 'log'), 'a');
    ready = false;
    const child = spawn(process.execPath, [DYNALITE, join(dir, 'db'), String(port)], {
      stdio: ['ignore', 'pipe', log],
    });
    proc = child;
    closeSync(log);
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('ready') && proc === child) ready = true;
    });
    await waitForPort(port, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}: ${readFileSync(join(dir, 'log'), 'utf8').slice(-2000)}`);
    });
  };
  const stopNow = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc?.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    url: `http://127.0.0.1:${port}`,
    async restart() {
      await stopNow();
      await start();
    },
    async cutConnections() {
      if (ready) proc?.kill('SIGUSR2');
    },
    async stop() {
      await stopNow();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Facts about the machine and the services, and probes that decide whether a section runs.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const SERVICES = {
  postgres: process.env.IDEM_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.IDEM_REDIS_URL ?? 'redis://127.0.0.1:6379',
} as const;

/** True when a TCP connection to the URL's host:port opens within 1 s. */
export function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

/** True when the repository file exists (a store still being written may not). */
export function sourceExists(relative: string): boolean {
  return existsSync(`${ROOT}${relative}`);
}

/** The installed version of a package, read from its package.json. */
export function installedVersion(pkg: string): string {
  try {
    return (
      JSON.parse(readFileSync(`${ROOT}node_modules/${pkg}/package.json`, 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'not installed';
  }
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    return line ? line.split(':').slice(1).join(':').trim() : (os.cpus()[0]?.model ?? 'unknown');
  } catch {
    return os.cpus()[0]?.model ?? 'unknown';
  }
}

export interface MachineFacts {
  date: string;
  node: string;
  nproc: number;
  cpu: string;
  memGiB: string;
  kernel: string;
  loadAtStart: string;
}

export function machineFacts(): MachineFacts {
  return {
    date: new Date().toISOString(),
    node: process.version,
    nproc: os.availableParallelism(),
    cpu: cpuModel(),
    memGiB: (os.totalmem() / 1024 ** 3).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    loadAtStart: loadAverage(),
  };
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(' / ');
}

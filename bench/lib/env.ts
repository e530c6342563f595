/**
 * Facts about the machine and the services, and probes that decide whether a section runs.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// The service addresses and the TCP probe are the test suites' own, so both read the same env vars.
export { reachable, SERVICES } from '../../test/helpers/services.ts';

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

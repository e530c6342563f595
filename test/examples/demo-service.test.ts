/**
 * `npm start` (examples/demo-service/start.ts) as a user runs it: a signal stops it, a port in use
 * is one line naming the variable that changes it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const started: ChildProcess[] = [];
afterEach(() => {
  for (const child of started.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

/** The pids of `pid`'s children (Linux /proc). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function npmStart(env: Record<string, string>) {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    env: { ...process.env, IDEM_STORE: 'memory', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, out: () => stdout, err: () => stderr };
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it.each(['SIGTERM', 'SIGINT'] as const)(
  '%s to `npm start` stops the servers and every process exits',
  async (signal) => {
    const port = await freePort();
    const upstream = await freePort();
    const run = npmStart({ PORT: String(port), UPSTREAM_PORT: String(upstream) });
    await until('the banner', () => run.out().includes('npx idem check'));
    expect(await portOpen(port)).toBe(true);
    const descendants = childrenOf(run.child.pid!).flatMap((pid) => [pid, ...childrenOf(pid)]);
    expect(descendants.length).toBeGreaterThan(0);

    run.child.kill(signal);
    await run.exit;
    await until('the gateway port to close', async () => !(await portOpen(port)), 10_000);
    await until('the demo service port to close', async () => !(await portOpen(upstream)), 10_000);
    await until('every process under npm to exit', () => descendants.every((pid) => !alive(pid)), 10_000);
    expect(run.err()).toBe('');
  },
);

it('`npm start` on a port in use: one line naming PORT, exit code 1, no stack trace', async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const run = npmStart({ PORT: String(port), UPSTREAM_PORT: String(await freePort()) });
    expect(await run.exit).toBe(1);
    const lines = run.err().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`127.0.0.1:${port} is already in use (EADDRINUSE)`);
    expect(lines[0]).toContain('PORT=');
  } finally {
    busy.close();
  }
});

it('`npm start` with a port that is not a number says which variable', async () => {
  const run = npmStart({ PORT: 'eighty' });
  expect(await run.exit).toBe(1);
  expect(run.err().trim()).toBe('npm start: PORT=eighty is not a number from 0 to 65535');
});

/**
 * The `idem` command as users run it (bin/idem.js, spawned): every failure is one line on stderr
 * and a non-zero exit code (docs/cli.md), and the happy paths still work.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { redisBinariesAvailable, startRedis } from '../helpers/redis-cluster.ts';

const redisBinaries = await redisBinariesAvailable();

const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/idem.js');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const dir = mkdtempSync(join(tmpdir(), 'idem-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const running: ChildProcess[] = [];
afterEach(() => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Runs `idem …` to its end; `node` defaults to this test's Node (24). */
function idem(args: string[], node = process.execPath, timeoutMs = 30_000) {
  const child = spawn(node, [BIN, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** Starts a long-running `idem …` and resolves once stdout matches `ready`. */
async function start(args: string[], ready: RegExp) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      stdout += d;
      if (ready.test(stdout)) resolve();
    });
    child.once('exit', () => reject(new Error(`idem ${args.join(' ')} ended: ${stderr}`)));
  });
  return { child, exit, stdout: () => stdout, stderr: () => stderr };
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Exactly one line on stderr, `idem: …`. */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^idem: /);
  return lines[0]!;
}

it('idem --version prints the package version', async () => {
  for (const flag of ['--version', '-v']) {
    const r = await idem([flag]);
    expect(r).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  }
});

it('idem --help lists the commands and exits 0', async () => {
  const r = await idem(['--help']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/serve[\s\S]*demo[\s\S]*check/);
  expect(r.stdout).toMatch(/^\s+keys\b/m);
  expect(r.stdout).toMatch(/^\s+purge\b/m);
  expect(r.stdout).toMatch(/^\s+stats\b/m);
});

describe('every failure is one line on stderr and a non-zero exit code', () => {
  it('idem check on a closed port names the address and the cause (exit 1)', async () => {
    const port = await closedPort();
    const r = await idem(['check', `http://127.0.0.1:${port}/payments`]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe(
      `idem: cannot reach http://127.0.0.1:${port}/payments: ECONNREFUSED 127.0.0.1:${port}`,
    );
  });

  it('idem check with something that is not a URL (exit 2)', async () => {
    const r = await idem(['check', 'payments']);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain('"payments" is not a URL');
  });

  it('a Redis store that is down: the address, whole milliseconds (exit 1)', async () => {
    const port = await closedPort();
    const r = await idem([
      'serve',
      '--upstream',
      'http://127.0.0.1:9',
      '--store',
      `redis://127.0.0.1:${port}`,
    ]);
    expect(r.code).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toContain(`the store at redis 127.0.0.1:${port} did not answer`);
    expect(line).not.toMatch(/\d\.\d+\s*ms/);
  });

  it('a Postgres store that is down: the address and the cause (exit 1)', async () => {
    const port = await closedPort();
    const spec = `postgres://app:secret@127.0.0.1:${port}/app`;
    const r = await idem(['serve', '--upstream', 'http://127.0.0.1:9', '--store', spec]);
    expect(r.code).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toContain(`the store at postgres 127.0.0.1:${port} did not answer`);
    expect(line).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
    expect(line).not.toContain('secret');
  });

  it.skipIf(!redisBinaries)(
    '--store-wait: serve waits for a store that is still starting, then serves',
    async () => {
      const redis = await startRedis(6440);
      redis.signal('SIGKILL'); // the store is down when the gateway starts
      try {
        const child = spawn(
          process.execPath,
          [
            BIN,
            'serve',
            '--upstream',
            'http://127.0.0.1:9',
            '--store',
            redis.url,
            '--port',
            '0',
            '--workers',
            '1',
            '--store-wait',
            '20s',
          ],
          { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        running.push(child);
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (d) => (stdout += d));
        child.stderr!.on('data', (d) => (stderr += d));
        const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
        const until = async (ok: () => boolean) => {
          for (const end = Date.now() + 15_000; !ok(); await new Promise((r) => setTimeout(r, 50)))
            if (Date.now() > end || child.exitCode !== null) throw new Error(`gave up: ${stderr}`);
        };
        await until(() => /trying again for up to \d+ s \(--store-wait\)/.test(stderr));
        expect(stderr).toContain(`the store at redis 127.0.0.1:${redis.port} did not answer`);
        await redis.start();
        await until(() => stdout.includes('idem gateway http'));
        child.kill('SIGTERM');
        expect(await exit).toBe(0);
      } finally {
        await redis.stop();
      }
    },
  );

  it('--store-wait: a store that never answers still fails, once the wait is over (exit 1)', async () => {
    const port = await closedPort();
    const started = Date.now();
    const r = await idem([
      'serve',
      '--upstream',
      'http://127.0.0.1:9',
      '--store',
      `redis://127.0.0.1:${port}`,
      '--store-wait',
      '4s',
    ]);
    expect(r.code).toBe(1);
    expect(Date.now() - started).toBeGreaterThan(3900);
    expect(r.stderr).toContain('(--store-wait)');
    expect(r.stderr.trim().split('\n').at(-1)).toContain(
      `the store at redis 127.0.0.1:${port} did not answer`,
    );
    const bad = await idem(['serve', '--upstream', 'http://127.0.0.1:9', '--store-wait', 'soon']);
    expect(bad.code).toBe(2);
    expect(oneLine(bad.stderr)).toContain('--store-wait');
  });

  it('a sqlite: path under a file says what to do (exit 2)', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'not a directory');
    for (const path of [`${file}/idem.db`, `${file}/deeper/idem.db`]) {
      const r = await idem(['serve', '--upstream', 'http://127.0.0.1:9', '--store', `sqlite:${path}`]);
      expect(r.code).toBe(2);
      const line = oneLine(r.stderr);
      expect(line).toContain(`cannot open the SQLite database sqlite:${path}`);
      expect(line).toMatch(/EEXIST|ENOTDIR/);
      expect(line).toContain('use a path whose directory can be created and written');
    }
  });

  it('idem serve on a port in use names the address and --port (exit 1)', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = await idem([
        'serve',
        '--upstream',
        'http://127.0.0.1:9',
        '--store',
        'memory',
        '--port',
        `${port}`,
      ]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toBe(
        `idem: 127.0.0.1:${port} is already in use (EADDRINUSE): choose another port with --port`,
      );
    } finally {
      busy.close();
    }
  });

  it('idem demo on a port in use says which of its two ports (exit 1)', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = await idem(['demo', '--store', 'memory', '--port', '0', '--upstream-port', `${port}`]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr)).toContain(`demo service: 127.0.0.1:${port} is already in use`);
      expect(r.stderr).toContain('--upstream-port');
    } finally {
      busy.close();
    }
  });

  it.each([
    [['serve', '--bogus'], "unknown option '--bogus'"],
    [['serve', '--store', 'memory'], '--upstream (or "upstream" in --config) is required'],
    [['serve', '--upstream', 'http://127.0.0.1:9', '--port', '99999'], "'99999' is invalid"],
    [['serve', '--upstream', 'http://127.0.0.1:9', '--store', 'mysql://x'], 'unknown store "mysql://x"'],
    [['nope'], "unknown command 'nope'"],
    [[], 'no command: use idem serve, idem demo, idem check, idem keys, idem stats or idem purge'],
    [
      ['serve', '--config', '/nonexistent/gateway.json'],
      'cannot read the config file /nonexistent/gateway.json',
    ],
    [['serve', '--upstream', 'localhost:4000', '--store', 'memory'], 'upstream must be http: or https:'],
    [['check', 'http://127.0.0.1:9/x', '-d', '{bad'], '--data must be JSON'],
  ])('usage error %j (exit 2)', async (args, text) => {
    const r = await idem(args);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toContain(text);
  });
});

it('idem demo, then idem check against it: idempotent (exit 0), and SIGTERM stops the demo', async () => {
  const demo = await start(
    ['demo', '--store', 'memory', '--port', '0', '--upstream-port', '0', '--delay', '10'],
    /npx idem check (\S+)/,
  );
  const url = demo.stdout().match(/npx idem check (\S+)/)![1]!;
  const r = await idem(['check', url]);
  expect(r.stderr).toBe('');
  expect(r.stdout).toContain('result: idempotent (exit 0)');
  expect(r.code).toBe(0);
  demo.child.kill('SIGTERM');
  expect(await demo.exit).toBe(0);
});

it('in a checkout without dist/ (a fresh clone), the command runs the TypeScript sources', async () => {
  const clone = mkdtempSync(join(tmpdir(), 'idem-clone-'));
  try {
    mkdirSync(join(clone, 'bin'));
    copyFileSync(BIN, join(clone, 'bin/idem.js'));
    copyFileSync(join(ROOT, 'package.json'), join(clone, 'package.json'));
    symlinkSync(join(ROOT, 'src'), join(clone, 'src'));
    symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'));
    const r = spawnSync(process.execPath, [join(clone, 'bin/idem.js'), '--version'], { encoding: 'utf8' });
    expect([r.status, r.stdout, r.stderr]).toEqual([0, `${VERSION}\n`, '']);
  } finally {
    rmSync(clone, { recursive: true, force: true });
  }
});

/** A Node older than 24 on this machine (the system one), if any. */
function oldNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      if (Number(version.slice(1).split('.')[0]) < 24) return candidate;
    } catch {}
  }
  return undefined;
}
const OLD_NODE = oldNode();
if (!OLD_NODE) console.warn('[idem tests] no Node < 24 on this machine: the old-Node CLI test is skipped');

it.skipIf(!OLD_NODE)('on Node < 24, idem says which Node it needs in one line (exit 1)', async () => {
  const version = execFileSync(OLD_NODE!, ['--version'], { encoding: 'utf8' }).trim();
  for (const args of [['--version'], ['serve', '--upstream', 'http://127.0.0.1:9']]) {
    const r = await idem(args, OLD_NODE);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toContain(`idem needs Node ≥ 24, found ${version}`);
  }
});

it('idem check against a route that refuses the request (401 missing-credentials) says it could not check, not "NOT idempotent"', async () => {
  const { checkEndpoint } = await import('../../src/cli/check.ts');
  const { formatCheck } = await import('../../src/cli/check-report.ts');
  const { startStack } = await import('../gateway/helpers.ts');
  const s = await startStack({
    routes: [{ path: '/payments', key: 'required', scope: 'required' }],
    logger: { warn: () => {} },
  });
  try {
    const refused = await checkEndpoint(`${s.url}/payments`);
    expect(refused).toMatchObject({ result: 'not-checked', exitCode: 1 });
    expect(refused.rows).toHaveLength(1);
    expect(refused.rows[0]).toMatchObject({ statuses: [401], verdict: 'fail' });
    expect(refused.rows[0]!.note).toMatch(/missing-credentials.*-H 'Authorization: …'/);
    const report = formatCheck(refused);
    expect(report).toMatch(/result: not checked/);
    expect(report).not.toMatch(/NOT idempotent/);
    const ok = await checkEndpoint(`${s.url}/payments`, { headers: { authorization: 'Bearer t' } });
    expect(ok).toMatchObject({ result: 'idempotent', exitCode: 0 });
    expect(ok.rows.find((r) => r.id === 'no-key')).toMatchObject({ verdict: 'pass', statuses: [400] });
  } finally {
    await s.close();
  }
});

/**
 * The package as a consumer gets it: `npm pack`, then `npm install <tarball> pg ioredis express
 * vitest` in a fresh app outside the repository (offline from the npm cache where it can), and
 * there: the library on memory, SQLite, Postgres and Redis, the Express middleware, the `idem`
 * command, `testStore()` with its multi-process tests under the app's own vitest, and the
 * one-line refusal of a Node older than 24.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeVersionProblem } from '../../src/runtime.ts';
import { SERVICES, serviceAvailable } from '../helpers/services.ts';

const ROOT = join(import.meta.dirname, '../..');
const TEMPLATES = join(import.meta.dirname, 'app');
const work = mkdtempSync(join(tmpdir(), 'idem-consumer-'));
const app = join(work, 'app');
const version = (name: string) =>
  JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version as string;

// The child npm must not inherit `npm test`'s npm_* variables (npm_config_local_prefix would point
// it at this repository), and must find this Node (24) first on PATH, as the consumer's would be.
const env: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)),
);
env.PATH = `${dirname(process.execPath)}:${process.env.PATH}`;
env.npm_config_update_notifier = 'false';
env.npm_config_fund = 'false';
env.npm_config_audit = 'false';

function run(cmd: string, args: string[], cwd: string, timeout = 120_000) {
  try {
    return execFileSync(cmd, args, {
      cwd,
      env,
      encoding: 'utf8',
      timeout,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const x = e as { status?: number; stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} exited ${x.status}\n${x.stdout ?? ''}\n${x.stderr ?? ''}`);
  }
}

let tarball = '';
const services = { postgres: false, redis: false };
const children: ChildProcess[] = [];

beforeAll(async () => {
  services.postgres = await serviceAvailable('postgres');
  services.redis = await serviceAvailable('redis');
  run('npm', ['pack', '--pack-destination', work], ROOT); // prepack builds dist/
  tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  const deps = ['pg', 'ioredis', 'express', 'vitest'].map((d) => `${d}@${version(d)}`);
  run('npm', ['install', tarball, ...deps, '--prefer-offline', '--no-audit', '--no-fund'], app, 150_000);
  copyFileSync(join(TEMPLATES, 'library.ts'), join(app, 'library.ts'));
  copyFileSync(join(TEMPLATES, 'sqlite-factory.ts'), join(app, 'sqlite-factory.ts'));
  copyFileSync(join(TEMPLATES, 'store.check.ts'), join(app, 'store.test.ts'));
}, 240_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

describe('the packed package, installed in a consumer app', () => {
  it('ships the built code, the bin, the sources and docs; no tests, no install-time scripts', () => {
    const files = run('tar', ['tzf', tarball], work).split('\n').filter(Boolean);
    for (const f of [
      'bin/idem.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/sqlite.js',
      'dist/cli/index.js',
    ])
      expect(files).toContain(`package/${f}`);
    expect(files).toContain('package/dist/testing/worker.js');
    expect(files.filter((f) => /\.test\.|^package\/(test|bench|scripts|examples)\//.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/idem/package.json'), 'utf8'));
    expect(Object.keys(pkg.scripts ?? {}).filter((s) => /^(pre|post)?(install|prepare)$/.test(s))).toEqual(
      [],
    );
  });

  it('every exported entry loads; the library: memory, SQLite, Postgres, Redis and the Express middleware', () => {
    const withServices = services.postgres && services.redis ? [SERVICES.postgres, SERVICES.redis] : [];
    const out = run(process.execPath, ['library.ts', work, ...withServices], app);
    const entries =
      Object.keys(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).exports).length - 1;
    const expected = [
      `ok ${entries} entries`,
      'ok memory',
      'ok sqlite',
      ...(withServices.length ? ['ok postgres', 'ok redis'] : []),
      'ok express',
    ];
    expect(out.trim().split('\n')).toEqual(expected);
  }, 120_000);

  it('CommonJS code on Node 24 can require() the library and idem/sqlite', () => {
    const script =
      "console.log(typeof require('idem').createIdem, typeof require('idem/sqlite').sqliteStore)";
    expect(run(process.execPath, ['-e', script], app).trim()).toBe('function function');
  });

  it('the CLI: npx idem --version and --help, idem demo checked by idem check, stopped by SIGTERM', async () => {
    expect(run('npx', ['--offline', 'idem', '--version'], app).trim()).toBe(version('../'));
    expect(run('npx', ['--offline', 'idem', '--help'], app)).toMatch(/serve[\s\S]*demo[\s\S]*check/);

    const demo = spawn(
      join(app, 'node_modules/.bin/idem'),
      ['demo', '--store', 'memory', '--port', '0', '--upstream-port', '0', '--delay', '5'],
      { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(demo);
    const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      demo.stdout!.on('data', (d) => {
        out += d;
        const m = out.match(/npx idem check (\S+)/);
        if (m) resolve(m[1]!);
      });
      demo.once('exit', () => reject(new Error(`idem demo ended: ${out}`)));
    });
    expect(run('npx', ['--offline', 'idem', 'check', url], app)).toContain('result: idempotent');
    demo.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 120_000);

  it("testStore() from idem/testing, its multi-process tests included, in the app's own vitest", () => {
    const out = run(
      join(app, 'node_modules/.bin/vitest'),
      ['run', '--reporter=verbose', '--no-color'],
      app,
      150_000,
    )
      // biome-ignore lint/suspicious/noControlCharactersInRegex: removes colour codes
      .replace(/\x1b\[[0-9;]*m/g, '');
    expect(out).toMatch(/✓ .*OS processes racing on the same keys: exactly one execution per key/);
    expect(out).toMatch(/✓ .*a holder killed with SIGKILL mid-action is taken over after one lease/);
    expect(out).toMatch(/Tests\s+\d+ passed/);
    expect(out).not.toMatch(/\d+ failed/);
  }, 180_000);
});

/** A Node older than 24 on this machine (the system one), if any. */
function oldNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    try {
      const v = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim();
      if (Number(v.slice(1).split('.')[0]) < 24) return candidate;
    } catch {}
  }
  return undefined;
}
const OLD_NODE = oldNode();

describe.skipIf(!OLD_NODE)('the installed package on a Node older than 24', () => {
  const expectOneLine = (args: string[]) => {
    try {
      execFileSync(OLD_NODE!, args, { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      throw new Error('expected a failure');
    } catch (e) {
      const x = e as { status: number; stderr: string };
      expect(x.status).toBe(1);
      return x.stderr.trim();
    }
  };

  it('the idem command: one line, exit code 1', () => {
    const v = execFileSync(OLD_NODE!, ['--version'], { encoding: 'utf8' }).trim();
    expect(expectOneLine(['node_modules/.bin/idem', '--version'])).toBe(
      `idem: ${nodeVersionProblem(v.slice(1))}`,
    );
    expect(nodeVersionProblem(v.slice(1))).toContain(`idem needs Node ≥ 24, found ${v} (`);
  });

  it('idem/sqlite: an error that says which Node it needs, not one about node:sqlite', () => {
    const stderr = expectOneLine(['--input-type=module', '-e', "import { sqliteStore } from 'idem/sqlite';"]);
    expect(stderr).toContain('idem/sqlite: idem needs Node ≥ 24, found v');
    expect(stderr).not.toContain('ERR_UNKNOWN_BUILTIN_MODULE');
  });
});

/**
 * Every TypeScript sample in README.md compiles against the real public API: each ```ts block
 * becomes its own module under .tmp/, importing `idem`, `idem/sqlite`… by package name (they
 * resolve to src/ through the 'idem-source' condition), and `tsc` checks them with the repository's
 * settings. The names a sample uses without defining (the reader's own `claim`, `mailer`…) are
 * declared once in GLOBALS below, with the shapes the samples assume.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const dir = join(ROOT, '.tmp', `readme-${process.pid}`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GLOBALS = `
declare const claim: { intakeId: string; totalAllowed: number; memberResponsibility: number };
declare const gateway: { pay(claim: unknown, options: { idempotencyKey: string }): Promise<{ id: string }> };
declare const user: { id: string; email: string };
declare function welcome(user: { id: string; email: string }): { to: string; subject: string };
declare const mailer: {
  send(mail: unknown, options: { idempotencyKey: string }): Promise<{ rejected: boolean; messageId: string }>;
};
declare const payments: { create(body: unknown, options?: { idempotencyKey: string }): Promise<{ id: string }> };
declare const idem: import('idem').Idem;
`;

function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

it('every ```ts sample in README.md compiles', () => {
  const blocks = tsBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'globals.d.ts'), GLOBALS);
  for (const [i, code] of blocks.entries())
    writeFileSync(join(dir, `readme-${i + 1}.ts`), `${code}\nexport {};\n`);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ extends: '../../tsconfig.json', include: ['*.ts'], compilerOptions: { noEmit: true } }),
  );
  let output = '';
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    output = `${x.stdout ?? ''}${x.stderr ?? ''}`;
  }
  expect(output, 'README samples (readme-N.ts is the Nth ```ts block)').toBe('');
});

it('a sample that uses the API wrongly fails the check (the check can fail)', () => {
  mkdirSync(dir, { recursive: true });
  const bad = join(dir, 'bad');
  mkdirSync(bad, { recursive: true });
  writeFileSync(
    join(bad, 'bad.ts'),
    "import { createIdem } from 'idem';\ncreateIdem({ stor: 1 });\nexport {};\n",
  );
  writeFileSync(
    join(bad, 'tsconfig.json'),
    JSON.stringify({
      extends: '../../../tsconfig.json',
      include: ['*.ts'],
      compilerOptions: { noEmit: true },
    }),
  );
  let output = '';
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', bad], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    output = (e as { stdout?: string }).stdout ?? '';
  }
  expect(output).toMatch(/bad\.ts.*error TS\d+: .*'stor'/);
});

it("every value README's entry table names is exported by that entry (no phantom API)", async () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## What each entry exports'),
    readme.indexOf('## Library choices'),
  );
  const rows = [...section.matchAll(/^\| ((?:`idem[^`]*`(?:, )?)+) \| (.+) \|$/gm)];
  expect(rows.length).toBeGreaterThanOrEqual(10);
  const missing: string[] = [];
  for (const [, entries, values] of rows) {
    const names = [...values!.matchAll(/`([A-Za-z_][\w]*)`/g)].map((m) => m[1]!);
    for (const entry of [...entries!.matchAll(/`(idem[^`]*)`/g)].map((m) => m[1]!)) {
      const loaded = (await import(entry)) as Record<string, unknown>;
      for (const name of names) if (!(name in loaded)) missing.push(`${entry}: ${name}`);
    }
  }
  expect(missing).toEqual([]);
});

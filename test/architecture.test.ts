/**
 * Architecture rules over the import graph of `src/`, enforced in `npm test`:
 *
 * | rule | says |
 * |---|---|
 * | `core-deps` | `src/core` imports only `node:` modules, `src/core` itself and package.json `dependencies` |
 * | `core-inward` | nothing in `src/core` imports `src/http`, `src/gateway`, `src/stores` or `src/cli` |
 * | `workflow-core` | the run journal (`src/workflow`) is part of the core: only `src/core/engine.ts` and `src/core/types.ts` import it, and it imports what `src/core` may |
 * | `stores-apart` | `src/stores/<a>` never imports `src/stores/<b>`; shared helpers are listed in STORE_SHARED |
 * | `adapters-thin` | `src/http/{express,fastify,hono}` import only `node:`, their own framework, their own folder, the HTTP core modules (`src/http/*.ts`) and `src/core` |
 * | `otel-core` | `src/otel` imports only `node:`, `src/core`, its own folder and `@opentelemetry/api` |
 * | `declared-deps` | every package `src` imports is a dependency or a peer dependency (what consumers get) |
 * | `no-cycles` | no import cycle anywhere in `src`, type-only imports included |
 *
 * Imports are read with a small lexer (comments removed, strings and regex literals kept
 * whole), so `import type`, multi-line imports, `export … from` and `import('…')` all count,
 * and an `import` inside a JSDoc example does not. A violation fails with the file, the
 * import and the rule. Each rule is also fed a synthetic violation below, to prove it can fail.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const ADAPTERS: Record<string, string> = { express: 'express', fastify: 'fastify', hono: 'hono' };
/** Modules under src/stores that every store may import (not a store of their own). */
const STORE_SHARED = ['src/stores/deadlines.ts', 'src/stores/spec.ts'];
/** The core files that wire the run journal (`idem.workflow`, `idem.runs`) into the engine. */
const WORKFLOW_WIRING = ['src/core/engine.ts', 'src/core/types.ts'];

interface Import {
  from: string;
  /** A repo-relative path for a relative import, else the bare specifier. */
  to: string;
}
interface Violation {
  rule: string;
  file: string;
  import: string;
}

/** The source with comments blanked out; strings, template literals and regex literals kept. */
function stripComments(code: string): string {
  let out = '';
  let i = 0;
  let last = ''; // last significant character, to tell a regex literal from a division
  while (i < code.length) {
    const c = code[i]!;
    const next = code[i + 1];
    if (c === '/' && next === '/') {
      while (i < code.length && code[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = code.indexOf('*/', i + 2);
      const stop = end === -1 ? code.length : end + 2;
      out += code.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
      continue;
    }
    if (c === "'" || c === '"' || c === '`' || (c === '/' && /^$|[(,=:[!&|?{};+\-*%<>~^]$/.test(last))) {
      let j = i + 1;
      let inClass = false;
      while (j < code.length) {
        const d = code[j]!;
        if (d === '\\') j += 2;
        else if (d === c && !inClass) break;
        else if (c !== '`' && d === '\n') break;
        else {
          if (c === '/' && d === '[') inClass = true;
          if (c === '/' && d === ']') inClass = false;
          j++;
        }
      }
      out += code.slice(i, j + 1);
      i = j + 1;
      last = c;
      continue;
    }
    out += c;
    if (!/\s/.test(c)) last = c;
    i++;
  }
  return out;
}

/** The module specifiers a TypeScript source imports or re-exports (static, type-only, dynamic). */
function importSpecifiers(code: string): string[] {
  const clean = stripComments(code);
  const found: string[] = [];
  const patterns = [
    /(?:^|[;\n}])\s*(?:import|export)\b[^'"`;]*?\bfrom\s*(['"])([^'"]+)\1/g, // import … from / export … from
    /(?:^|[;\n}])\s*import\s*(['"])([^'"]+)\1/g, // import 'side-effect'
    /\bimport\s*\(\s*(['"])([^'"]+)\1\s*[,)]/g, // import('…')
  ];
  for (const re of patterns) for (const m of clean.matchAll(re)) found.push(m[2]!);
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)).split('\\').join('/'))
    .sort();
}

function importsOf(file: string, code: string): Import[] {
  return importSpecifiers(code).map((spec) => ({
    from: file,
    to: spec.startsWith('.') ? posix.normalize(posix.join(posix.dirname(file), spec)) : spec,
  }));
}

/** The package a bare specifier names (`@scope/name/sub` → `@scope/name`), or undefined for node: and relative ones. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith('node:') || spec.startsWith('src/') || spec.startsWith('.')) return undefined;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
const storeOf = (path: string) =>
  STORE_SHARED.includes(path) ? undefined : path.match(/^src\/stores\/([^/]+)\//)?.[1];

/** Every rule but `no-cycles`, checked on a list of imports. */
function ruleViolations(
  imports: Import[],
  pkg: { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> },
): Violation[] {
  const deps = new Set(Object.keys(pkg.dependencies ?? {}));
  const declared = new Set([...deps, ...Object.keys(pkg.peerDependencies ?? {})]);
  const out: Violation[] = [];
  const add = (rule: string, i: Import) => out.push({ rule, file: i.from, import: i.to });
  for (const i of imports) {
    const bare = packageOf(i.to);
    const local = i.to.startsWith('src/');
    if (bare && !declared.has(bare)) add('declared-deps', i);
    if (under(i.from, 'src/core')) {
      if (bare && !deps.has(bare)) add('core-deps', i);
      if (
        local &&
        !under(i.to, 'src/core') &&
        !(WORKFLOW_WIRING.includes(i.from) && under(i.to, 'src/workflow'))
      )
        add('core-deps', i);
      if (['src/http', 'src/gateway', 'src/stores', 'src/cli'].some((d) => under(i.to, d)))
        add('core-inward', i);
    }
    if (under(i.from, 'src/workflow')) {
      if (bare && !deps.has(bare)) add('workflow-core', i);
      if (local && !under(i.to, 'src/core') && !under(i.to, 'src/workflow')) add('workflow-core', i);
    }
    const a = storeOf(i.from);
    const b = storeOf(i.to);
    if (a && b && a !== b) add('stores-apart', i);
    const adapter = i.from.match(/^src\/http\/(express|fastify|hono)\//)?.[1];
    if (adapter) {
      const ok = local
        ? under(i.to, `src/http/${adapter}`) || under(i.to, 'src/core') || /^src\/http\/[^/]+\.ts$/.test(i.to)
        : i.to.startsWith('node:') || bare === ADAPTERS[adapter];
      if (!ok) add('adapters-thin', i);
    }
    if (under(i.from, 'src/otel')) {
      const ok = local
        ? under(i.to, 'src/core') || under(i.to, 'src/otel')
        : i.to.startsWith('node:') || bare === '@opentelemetry/api';
      if (!ok) add('otel-core', i);
    }
  }
  return out;
}

/** Import cycles (each as a path a → b → … → a), found with a depth-first search. */
function cycles(imports: Import[]): string[][] {
  const edges = new Map<string, string[]>();
  for (const i of imports)
    if (i.to.startsWith('src/')) edges.set(i.from, [...(edges.get(i.from) ?? []), i.to]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

const explain = (violations: Violation[]) =>
  violations.map((v) => `${v.file} imports ${v.import}: breaks rule ${v.rule}`).join('\n');

describe('architecture of src/', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const files = sourceFiles('src');
  const imports = files.flatMap((f) => importsOf(f, readFileSync(join(ROOT, f), 'utf8')));

  it('reads the imports of every source file', () => {
    expect(files).toContain('src/core/engine.ts');
    expect(imports.length).toBeGreaterThan(100);
    for (const i of imports.filter((x) => x.to.startsWith('src/'))) {
      expect(files, `${i.from} imports ${i.to}, which does not exist`).toContain(i.to);
    }
  });

  it('keeps the layering rules', () => {
    const violations = ruleViolations(imports, pkg);
    expect(violations, explain(violations)).toEqual([]);
  });

  it('has no import cycle (no-cycles)', () => {
    const found = cycles(imports);
    expect(found, found.map((c) => `rule no-cycles: ${c.join(' → ')}`).join('\n')).toEqual([]);
  });
});

describe('the rules can fail (synthetic violations)', () => {
  const pkg = { dependencies: { devalue: '1', canonicalize: '1' }, peerDependencies: { hono: '4', pg: '8' } };
  const check = (from: string, code: string) =>
    ruleViolations(importsOf(from, code), pkg).map((v) => `${v.rule}: ${v.file} → ${v.import}`);

  it('core-deps and core-inward', () => {
    expect(check('src/core/x.ts', "import pg from 'pg';")).toEqual(['core-deps: src/core/x.ts → pg']);
    expect(check('src/core/x.ts', "import { a } from '../http/core.ts';")).toEqual([
      'core-deps: src/core/x.ts → src/http/core.ts',
      'core-inward: src/core/x.ts → src/http/core.ts',
    ]);
    expect(check('src/core/x.ts', "import type { S } from '../stores/memory/index.ts';")).toContain(
      'core-inward: src/core/x.ts → src/stores/memory/index.ts',
    );
    expect(
      check('src/core/x.ts', "import 'node:fs';\nimport * as d from 'devalue';\nimport './y.ts';"),
    ).toEqual([]);
  });

  it('workflow-core', () => {
    expect(check('src/core/x.ts', "import { j } from '../workflow/journal.ts';")).toEqual([
      'core-deps: src/core/x.ts → src/workflow/journal.ts',
    ]);
    expect(check('src/core/engine.ts', "import { j } from '../workflow/journal.ts';")).toEqual([]);
    expect(check('src/workflow/x.ts', "import pg from 'pg';\nimport { h } from '../http/core.ts';")).toEqual([
      'workflow-core: src/workflow/x.ts → pg',
      'workflow-core: src/workflow/x.ts → src/http/core.ts',
    ]);
    expect(check('src/workflow/x.ts', "import { k } from '../core/keys.ts';\nimport './y.ts';")).toEqual([]);
  });

  it('stores-apart', () => {
    expect(check('src/stores/redis/a.ts', "import { x } from '../postgres/sql.ts';")).toEqual([
      'stores-apart: src/stores/redis/a.ts → src/stores/postgres/sql.ts',
    ]);
    expect(check('src/stores/redis/a.ts', "import { d } from '../deadlines.ts';\nimport './b.ts';")).toEqual(
      [],
    );
    expect(check('src/stores/spec.ts', "const m = await import('./sqlite/index.ts');")).toEqual([]);
  });

  it('adapters-thin', () => {
    expect(check('src/http/hono/index.ts', "import { g } from '../../gateway/index.ts';")).toEqual([
      'adapters-thin: src/http/hono/index.ts → src/gateway/index.ts',
    ]);
    expect(check('src/http/hono/index.ts', "import express from 'express';")).toEqual([
      'declared-deps: src/http/hono/index.ts → express',
      'adapters-thin: src/http/hono/index.ts → express',
    ]);
    expect(
      check('src/http/hono/index.ts', "import { c } from '../core.ts';\nimport type { H } from 'hono';"),
    ).toEqual([]);
  });

  it('otel-core', () => {
    expect(check('src/otel/index.ts', "import { m } from '../gateway/metrics.ts';")).toEqual([
      'otel-core: src/otel/index.ts → src/gateway/metrics.ts',
    ]);
    expect(
      check(
        'src/otel/index.ts',
        "import { c } from '../core/errors.ts';\nimport type { Meter } from '@opentelemetry/api';",
      ),
    ).toEqual(['declared-deps: src/otel/index.ts → @opentelemetry/api']); // not a peer in this fixture
    expect(check('src/otel/index.ts', "import express from 'express';")).toContain(
      'otel-core: src/otel/index.ts → express',
    );
  });

  it('declared-deps', () => {
    expect(check('src/cli/x.ts', "import chalk from 'chalk';")).toEqual([
      'declared-deps: src/cli/x.ts → chalk',
    ]);
  });

  it('no-cycles, type-only imports included', () => {
    const graph = [
      ...importsOf('src/testing/index.ts', "import { a } from './contract.ts';"),
      ...importsOf('src/testing/contract.ts', "import type { E } from './index.ts';"),
    ];
    expect(cycles(graph)).toEqual([
      ['src/testing/contract.ts', 'src/testing/index.ts', 'src/testing/contract.ts'],
    ]);
  });

  it('reads imports the way TypeScript does, not what comments or strings say', () => {
    const code = [
      '/**',
      " * import { x } from 'idem';",
      ' */',
      "import {\n  a,\n  type B,\n} from './multi.ts';",
      "import type { T } from './types.ts';",
      "export { c } from './reexport.ts';",
      "export * from './star.ts';",
      "import './side.ts';",
      "const u = 'http://x/y'; // import z from 'nope'",
      'const r = /^\\/\\/(?=x)/; const s = "from \'no\'";',
      "const m = await import('./lazy.ts');",
    ].join('\n');
    expect(importSpecifiers(code).sort()).toEqual(
      ['./lazy.ts', './multi.ts', './reexport.ts', './side.ts', './star.ts', './types.ts'].sort(),
    );
    expect(dirname('src/a/b.ts')).toBe('src/a');
  });
});

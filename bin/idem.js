#!/usr/bin/env node
// The `idem` command. Plain JavaScript with no imports that need a recent Node, so an older Node
// gets one clear line (and exit code 1) instead of a stack trace from a module it cannot load.
// Then it runs the CLI: the compiled one (dist/) in an installed package, or in a checkout the
// TypeScript source (Node 24 strips the types of files outside node_modules), so a clone needs
// no build step for `npx idem`.
import { existsSync } from 'node:fs';
import nodeModule from 'node:module'; // no named import: an older Node lacks enableCompileCache
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const REQUIRED_NODE_MAJOR = 24; // as in src/runtime.ts
const version = process.versions.node;
if (Number(version.split('.')[0]) < REQUIRED_NODE_MAJOR) {
  process.stderr.write(
    `idem: idem needs Node ≥ ${REQUIRED_NODE_MAJOR}, found v${version} (it uses node:sqlite and other Node ` +
      `${REQUIRED_NODE_MAJOR} APIs): install Node ${REQUIRED_NODE_MAJOR} (nvm, fnm, volta) or run with ` +
      `npx -p node@${REQUIRED_NODE_MAJOR} (see the README, "Install")\n`,
  );
  process.exit(1);
}

// V8's code cache (and, for the TypeScript source, the stripped code) kept on disk between runs:
// the second and later starts compile nothing (about half the start-up CPU). NODE_COMPILE_CACHE
// chooses the directory, NODE_DISABLE_COMPILE_CACHE=1 turns it off.
nodeModule.enableCompileCache();

const source = new URL('../src/cli/index.ts', import.meta.url);
const installed = fileURLToPath(import.meta.url)
  .split(sep)
  .includes('node_modules');
await import(
  !installed && existsSync(source) ? source.href : new URL('../dist/cli/index.js', import.meta.url).href
);

/**
 * `@opentelemetry/api` is an optional peer dependency: with it unresolvable (a resolve hook
 * refuses it, as in an app that never installed it), `idem/otel` still loads and its pieces are
 * pass-throughs, in a child process.
 */
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

it('without @opentelemetry/api: idem/otel loads, the engine answers the same, traced answers the instance', async () => {
  const hook = new URL(`./.no-api-hook-${process.pid}.ts`, import.meta.url).pathname;
  const script = new URL(`./.no-api-${process.pid}.ts`, import.meta.url).pathname;
  writeFileSync(
    hook,
    `import { registerHooks } from 'node:module';
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === '@opentelemetry/api') throw Object.assign(new Error('not installed'), { code: 'ERR_MODULE_NOT_FOUND' });
    return next(specifier, context);
  },
});
`,
  );
  writeFileSync(
    script,
    `import { createIdem, memoryStore } from 'idem';
import { otelInstrumentation, traced } from 'idem/otel';
let api = 'present';
await import('@opentelemetry/api').catch(() => { api = 'missing'; });
const otel = otelInstrumentation();
const plain = createIdem({ store: otel.instrumentStore(memoryStore()), onEvent: otel.onEvent });
const idem = traced(plain);
const a = await idem.execute('k', () => 1);
const b = await idem.execute('k', () => 2);
console.log(JSON.stringify({ api, same: idem === plain, values: [a.value, b.value], replayed: b.replayed }));
`,
  );
  try {
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', '--import', hook, script]);
    expect(JSON.parse(stdout)).toEqual({ api: 'missing', same: true, values: [1, 1], replayed: true });
  } finally {
    rmSync(hook, { force: true });
    rmSync(script, { force: true });
  }
});

it('require("idem/otel") works from CommonJS (no top-level await in the entry)', async () => {
  const script = new URL(`./.require-${process.pid}.cts`, import.meta.url).pathname;
  writeFileSync(
    script,
    `const { otelInstrumentation, traced } = require('idem/otel');
const { createIdem, memoryStore } = require('idem');
const otel = otelInstrumentation();
const idem = traced(createIdem({ store: otel.instrumentStore(memoryStore()), onEvent: otel.onEvent }));
idem.execute('k', () => 7).then((r: { value: number }) => console.log(r.value));
`,
  );
  try {
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', script]);
    expect(stdout.trim()).toBe('7');
  } finally {
    rmSync(script, { force: true });
  }
});

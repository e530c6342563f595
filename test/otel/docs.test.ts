/**
 * docs/otel.md: the quick start runs as written (≤ 10 lines) in a child process, and, with the
 * in-memory providers of memory-otel.ts preloaded through `--import`, records what the page says.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { INSTRUMENTS } from '../../src/core/instruments.ts';

const run = promisify(execFile);
const page = readFileSync(new URL('../../docs/otel.md', import.meta.url), 'utf8');

it('docs/otel.md: the quick start runs as written, without and with a provider', async () => {
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1] ?? '';
  expect(code.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  const script = new URL(`./.quickstart-otel-${process.pid}.ts`, import.meta.url).pathname;
  const preload = new URL(`./.preload-otel-${process.pid}.ts`, import.meta.url).pathname;
  writeFileSync(script, code);
  writeFileSync(
    preload,
    `import { points, registerMemoryOtel, spans } from './memory-otel.ts';
registerMemoryOtel();
process.on('beforeExit', () => {
  console.log(JSON.stringify({ instruments: [...new Set(points.map((p) => p.instrument))].sort(), spans: spans.map((s) => [s.name, s.attributes['idem.outcome']]) }));
});
`,
  );
  try {
    const plain = await run(process.execPath, ['--conditions=idem-source', script]);
    expect(plain.stdout.trim()).toBe('false true 42');
    const withSdk = await run(process.execPath, ['--conditions=idem-source', '--import', preload, script]);
    const [answer, recorded] = withSdk.stdout.trim().split('\n');
    expect(answer).toBe('false true 42');
    expect(JSON.parse(recorded!)).toEqual({
      instruments: [
        'idem.claims',
        'idem.in_progress.duration',
        'idem.replays',
        'idem.store.operation.duration',
      ],
      spans: [
        ['idem.execute', 'executed'],
        ['idem.execute', 'replayed'],
      ],
    });
  } finally {
    rmSync(script, { force: true });
    rmSync(preload, { force: true });
  }
});

it('docs/otel.md: every instrument idem/otel creates (the catalogue) is in the table, and the code takes its names from it', () => {
  const library = Object.values(INSTRUMENTS).filter((i) => i.source === 'engine' || i.source === 'store');
  expect(library.length).toBeGreaterThanOrEqual(12);
  for (const { name } of library) expect(page, name).toContain(`| \`${name}\` |`);
  // no instrument name spelled out in the code: a second spelling would drift from the catalogue
  for (const file of ['../../src/otel/index.ts', '../../src/ai/savings.ts']) {
    const source = readFileSync(new URL(file, import.meta.url), 'utf8');
    expect(source).not.toMatch(/create(Counter|Histogram)\('/);
  }
});

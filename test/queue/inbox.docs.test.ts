/**
 * The quick starts of docs/queues/inbox.md run as written (every ts block), against the real
 * brokers: each prints 1 (the message delivered twice took effect once).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { SERVICES, serviceAvailable } from '../helpers/services.ts';

const run = promisify(execFile);
const page = readFileSync(new URL('../../docs/queues/inbox.md', import.meta.url), 'utf8');
const blocks = [...page.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
const needs = (code: string) =>
  code.includes("'idem/amqp'")
    ? 'amqp'
    : code.includes("'idem/bullmq'")
      ? 'redis'
      : code.includes("'idem/nats'")
        ? 'nats'
        : undefined;
const up = {
  amqp: await serviceAvailable('amqp'),
  redis: await serviceAvailable('redis'),
  nats: await serviceAvailable('nats'),
};

it('the page has the four quick starts', () => {
  expect(blocks.map(needs)).toEqual(['amqp', 'redis', 'nats', undefined]);
});

it.each(blocks.map((code, i) => [i, code] as const))(
  'quick start %i runs as written and prints 1',
  async (i, code) => {
    const service = needs(code);
    if (service && !up[service]) return;
    // inside the package, so `idem/…` and the clients resolve; run from an empty directory
    const script = new URL(`./.quickstart-inbox-${i}-${process.pid}.ts`, import.meta.url).pathname;
    const cwd = mkdtempSync(join(tmpdir(), 'idem-inbox-quickstart-'));
    writeFileSync(script, code);
    try {
      const env = {
        ...process.env,
        AMQP_URL: SERVICES.amqp,
        REDIS_URL: SERVICES.redis,
        NATS_URL: SERVICES.nats.replace(/^nats:\/\//, ''),
      };
      const { stdout } = await run(process.execPath, ['--conditions=idem-source', '--no-warnings', script], {
        cwd,
        env,
        timeout: 30_000,
      });
      expect(stdout.trim()).toBe('1');
    } finally {
      rmSync(script, { force: true });
      rmSync(cwd, { recursive: true, force: true });
    }
  },
);

/**
 * docs/queues/outbox.md: the quick start runs as written (the page's first ts block) against
 * the local Postgres and NATS, publishes its event, and stops cleanly on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { expect, it } from 'vitest';
import { SERVICES, serviceAvailable } from '../helpers/services.ts';
import { freshSchema, until } from './outbox-helpers.ts';

const up = (await serviceAvailable('postgres')) && (await serviceAvailable('nats'));

it.skipIf(!up)(
  'docs/queues/outbox.md: the quick start runs as written, publishes once, drains on SIGTERM',
  async () => {
    const page = readFileSync(new URL('../../docs/queues/outbox.md', import.meta.url), 'utf8');
    const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1] ?? '';
    expect(code.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(18);
    const env = await freshSchema();
    const nc = await connect({ servers: SERVICES.nats.replace('nats://', '') });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete('OUTBOX_DEMO').catch(() => {});
    const script = new URL(`./.quickstart-outbox-${process.pid}.ts`, import.meta.url).pathname;
    writeFileSync(script, code);
    let stop = () => {};
    try {
      const url = new URL(SERVICES.postgres);
      url.searchParams.set('options', `-c search_path=${env.schema}`);
      const child = spawn(process.execPath, ['--conditions=idem-source', script], {
        env: { ...process.env, DATABASE_URL: url.toString(), NATS_URL: SERVICES.nats.replace('nats://', '') },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const exit = new Promise<number | null>((r) => child.once('exit', r));
      stop = () => child.kill('SIGKILL');
      await until(
        'the event in the stream',
        async () => (await jsm.streams.info('OUTBOX_DEMO').catch(() => null))?.state.messages === 1,
      );
      await until('marked published', async () => {
        const r = await env.pool
          .query(`SELECT count(*)::int AS n FROM ${env.schema}.idem_outbox WHERE published_at IS NOT NULL`)
          .catch(() => null);
        return r?.rows[0]?.n === 1;
      });
      child.kill('SIGTERM');
      expect(await exit).toBe(0); // drained and exited
    } finally {
      stop();
      rmSync(script, { force: true });
      await jsm.streams.delete('OUTBOX_DEMO').catch(() => {});
      await nc.close();
      await env.drop();
    }
  },
  40_000,
);

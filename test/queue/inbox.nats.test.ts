/**
 * `idem/nats` on a real NATS JetStream with a Redis store: a failed run nak'ed and redelivered,
 * a republished event acked as a duplicate; `working()` keeps a long handler's message from
 * being redelivered; a poison message terminated after N runs; fan-out to two durable
 * consumers; the connection closed after the outcome was recorded but before the ack.
 */

import {
  AckPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { createIdem } from 'idem';
import { idempotentHandler } from 'idem/nats';
import { redisStore } from 'idem/redis';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';
import { deletePrefix } from '../stores/fixtures/redis-suite.ts';
import { type Child, createLedger, dropLedger, sleep, startChild, until } from './inbox-fixtures.ts';

const up = (await serviceAvailable('nats')) && (await serviceAvailable('redis'));
const pgUp = up && (await serviceAvailable('postgres'));
const servers = SERVICES.nats.replace(/^nats:\/\//, '');

describe.skipIf(!up)('idem/nats', () => {
  const name = uniqueName('idem_nats');
  const idem = up
    ? createIdem({ store: redisStore({ url: SERVICES.redis, prefix: name }), lease: '5s' })
    : (undefined as never);
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const streams: string[] = [];
  const stops: Array<() => Promise<unknown> | unknown> = [];

  const children: Child[] = [];
  let ledger: Awaited<ReturnType<typeof createLedger>> | undefined;
  beforeAll(async () => {
    nc = await connect({ servers });
    jsm = await jetstreamManager(nc);
    if (pgUp) ledger = await createLedger(name);
  });
  afterAll(async () => {
    for (const c of children) await c.kill();
    if (ledger) await dropLedger(ledger, name);
    for (const stop of stops) await stop();
    for (const s of streams) await jsm.streams.delete(s).catch(() => {});
    await nc?.close();
    await idem?.close();
    const admin = new Redis(SERVICES.redis);
    await deletePrefix(admin, name);
    admin.disconnect();
  });

  /** A stream of its own, a durable consumer per name, a publisher. */
  const stream = async (suffix: string) => {
    const s = `${name}_${suffix}`;
    await jsm.streams.add({ name: s, subjects: [`${s}.>`] });
    streams.push(s);
    const js = jetstream(nc);
    return {
      publish: (id: string, eventId?: string) => {
        const h = headers();
        if (eventId) h.set('Event-Id', eventId);
        return js.publish(`${s}.x`, JSON.stringify({ id }), { msgID: id, headers: h });
      },
      consume: async (
        durable: string,
        handle: (m: JsMsg) => Promise<unknown>,
        ackWaitMs = 2000,
        conn = nc,
      ) => {
        await jsm.consumers.add(s, {
          durable_name: durable,
          ack_policy: AckPolicy.Explicit,
          ack_wait: ackWaitMs * 1e6,
        });
        const c = await jetstream(conn).consumers.get(s, durable);
        const messages = await c.consume();
        stops.push(() => messages.stop());
        void (async () => {
          for await (const m of messages) void handle(m).catch(() => {});
        })();
      },
    };
  };

  it('a failed run is nak-ed and redelivered; a republished event is acked as a duplicate', async () => {
    const s = await stream('retry');
    let fail = true;
    const effects: string[] = [];
    const statuses: string[] = [];
    await s.consume(
      'retry',
      idempotentHandler(
        idem,
        {
          consumer: 'retry',
          messageId: { header: 'Event-Id' },
          retryDelay: () => 20,
          onResult: (r) => statuses.push(r.status),
        },
        async (_m, ctx) => {
          if (fail) {
            fail = false;
            throw new Error('transient');
          }
          effects.push(`${ctx.messageId}@${ctx.attempt}`);
        },
      ),
    );
    await s.publish('a', 'evt-1');
    expect(await until(() => statuses.includes('processed'))).toBe(true);
    await s.publish('b', 'evt-1'); // another message (another Nats-Msg-Id) carrying the same event
    expect(await until(() => statuses.includes('duplicate'))).toBe(true);
    expect(statuses).toEqual(['retry', 'processed', 'duplicate']);
    expect(effects).toEqual(['evt-1@2']);
  });

  it('working() heartbeats keep a handler longer than ack_wait from being redelivered', async () => {
    const s = await stream('long');
    let runs = 0;
    const results: Array<{ status: string; deliveries: number }> = [];
    await s.consume(
      'long',
      idempotentHandler(
        idem,
        {
          consumer: 'long',
          workingEvery: 250,
          onResult: (r, m) => results.push({ status: r.status, deliveries: m.info.deliveryCount }),
        },
        async () => {
          runs++;
          await sleep(3200);
        },
      ),
      1500,
    );
    await s.publish('slow-1');
    expect(await until(() => results.length >= 1, 8000)).toBe(true);
    await sleep(1000); // a redelivery would show up here
    expect(runs).toBe(1);
    expect(results).toEqual([{ status: 'processed', deliveries: 1 }]);
  });

  it('a poison message is terminated after maxAttempts runs and recorded as parked', async () => {
    const s = await stream('poison');
    let runs = 0;
    const results: string[] = [];
    await s.consume(
      'poison',
      idempotentHandler(
        idem,
        { consumer: 'poison', maxAttempts: 3, retryDelay: () => 20, onResult: (r) => results.push(r.status) },
        async () => {
          runs++;
          throw new Error('bad payload');
        },
      ),
    );
    await s.publish('p-1');
    expect(await until(() => results.includes('parked'))).toBe(true);
    await sleep(300);
    expect(runs).toBe(3);
    expect(results).toEqual(['retry', 'retry', 'parked']);
    const info = await jsm.consumers.info(`${name}_poison`, 'poison');
    expect(info.num_ack_pending + info.num_pending).toBe(0);
    const again = await idem.consumeOnce({ consumer: 'poison', messageId: 'p-1' }, async () => runs++);
    expect(again).toMatchObject({ status: 'parked', duplicate: true, attempts: 3 });
  });

  it('fan-out: two durable consumers each run a message once', async () => {
    const s = await stream('fan');
    const runs: string[] = [];
    for (const consumer of ['billing', 'audit']) {
      await s.consume(
        consumer,
        idempotentHandler(idem, { consumer }, async () => runs.push(consumer)),
      );
    }
    await s.publish('f-1');
    expect(await until(() => runs.length === 2)).toBe(true);
    await sleep(200);
    expect(runs.sort()).toEqual(['audit', 'billing']);
  });

  it('the connection dropped before the ack of a recorded outcome: the redelivery is a duplicate', async () => {
    const s = await stream('drop');
    const lost = await connect({ servers });
    let runs = 0;
    const errors: unknown[] = [];
    await s.consume(
      'drop',
      idempotentHandler(idem, { consumer: 'drop', onError: (e) => errors.push(e) }, async () => {
        await lost.close(); // the connection goes away while the handler runs: its ack cannot be sent
        return ++runs;
      }),
      600,
      lost,
    );
    await s.publish('d-1');
    expect(await until(() => errors.length === 1)).toBe(true);
    await lost.closed();
    const c = await jetstream(nc).consumers.get(`${name}_drop`, 'drop');
    const redelivered = await c.next({ expires: 5000 });
    expect(redelivered?.info.deliveryCount).toBeGreaterThanOrEqual(2);
    const r = await idempotentHandler(idem, { consumer: 'drop' }, async () => ++runs)(redelivered!);
    expect(r).toMatchObject({ status: 'duplicate', value: 1 });
    expect(runs).toBe(1);
  });

  it.skipIf(!pgUp)(
    'a consumer process SIGKILLed after recording, before the ackAck: the redelivery is acked with the recorded outcome',
    async () => {
      const s = await stream('kill');
      await jsm.consumers.add(`${name}_kill`, {
        durable_name: 'kill',
        ack_policy: AckPolicy.Explicit,
        ack_wait: 800 * 1e6,
      });
      const child = startChild(new URL('./inbox-nats-worker.ts', import.meta.url), {
        nats: servers,
        stream: `${name}_kill`,
        durable: 'kill',
        redis: SERVICES.redis,
        prefix: name,
        pg: SERVICES.postgres,
        schema: name,
      });
      children.push(child);
      await child.waitFor(/^ready$/);
      await s.publish('k-1');
      await child.waitFor(/^processed k-1$/);
      await child.kill();
      const c = await jetstream(nc).consumers.get(`${name}_kill`, 'kill');
      const redelivered = await c.next({ expires: 5000 });
      expect(redelivered?.info.deliveryCount).toBeGreaterThanOrEqual(2);
      const r = await idempotentHandler(idem, { consumer: 'kill' }, async () => 'rerun')(redelivered!);
      expect(r).toMatchObject({ status: 'duplicate', value: { by: child.child.pid } });
      const { rows } = await ledger!.query(`SELECT * FROM "${name}".ledger WHERE message_id = 'k-1'`);
      expect(rows).toHaveLength(1);
    },
    30_000,
  );

  it('bad options are refused when the handler is built', () => {
    expect(() =>
      idempotentHandler(idem, { consumer: 'c', workingEvry: '1s' } as never, async () => 1),
    ).toThrow(/did you mean workingEvery\?/);
    expect(() => idempotentHandler(idem, { consumer: 'c', workingEvery: 10 }, async () => 1)).toThrow(
      /at least 100 ms/,
    );
  });
});

/**
 * `idem/nats` on a real JetStream: a message without `Nats-Msg-Id` is identified by stream,
 * sequence and its stored timestamp, so a stream deleted and created again (sequences restart
 * at 1) does not match the old stream's records; a throwing `onResult` still settles.
 */
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createIdem, memoryStore } from 'idem';
import { idempotentHandler } from 'idem/nats';
import { describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';

const up = await serviceAvailable('nats');

describe.skipIf(!up)('idem/nats: tryout findings', () => {
  it('a recreated stream (sequences restart) runs its messages again; redeliveries stay duplicates', async () => {
    const nc = await connect({ servers: SERVICES.nats.replace(/^nats:\/\//, '') });
    const jsm = await jetstreamManager(nc);
    const name = uniqueName('idem_nats_re');
    const idem = createIdem({ store: memoryStore() });
    const runs: string[] = [];
    const errors: unknown[] = [];
    const handle = idempotentHandler(
      idem,
      {
        consumer: 'billing',
        onResult: () => {
          throw new Error('metrics down');
        },
        onError: (e) => errors.push(e),
      },
      async (m) => {
        runs.push(m.string());
        return m.string();
      },
    );
    try {
      const answers: unknown[] = [];
      for (const body of ['order-A', 'order-B']) {
        await jsm.streams.add({ name, subjects: [`${name}.*`] });
        await jsm.consumers.add(name, { durable_name: 'billing', ack_policy: AckPolicy.Explicit });
        await jetstream(nc).publish(`${name}.paid`, body); // no Nats-Msg-Id header
        const c = await jetstream(nc).consumers.get(name, 'billing');
        const msg = await c.next({ expires: 5000 });
        if (!msg) throw new Error('no message');
        answers.push((await handle(msg))?.status);
        // the same delivery again (as a redelivery would carry it): a duplicate
        answers.push((await handle(msg))?.status);
        await jsm.streams.delete(name);
      }
      expect(runs).toEqual(['order-A', 'order-B']);
      expect(answers).toEqual(['processed', 'duplicate', 'processed', 'duplicate']);
      expect(errors.length).toBe(4); // every onResult throw was reported, none escaped
    } finally {
      await jsm.streams.delete(name).catch(() => {});
      await nc.close();
    }
  });
});

/**
 * Real broker clients for the outbox tests: a NATS JetStream stream of its own, a BullMQ queue
 * with its own prefix, a RabbitMQ queue of its own. Each answers what arrived, by dedup id.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, nanos } from '@nats-io/transport-node';
import amqp from 'amqplib';
import { Queue } from 'bullmq';
import { SERVICES, uniqueName } from '../helpers/services.ts';

export async function natsStream(duplicateWindowMs = 120_000) {
  const nc = await connect({ servers: SERVICES.nats.replace('nats://', '') });
  const jsm = await jetstreamManager(nc);
  const name = uniqueName('OB').toUpperCase();
  const subject = `${name.toLowerCase()}.events`;
  await jsm.streams.add({
    name,
    subjects: [`${name.toLowerCase()}.>`],
    duplicate_window: nanos(duplicateWindowMs),
  });
  const js = jetstream(nc);
  return {
    js,
    headers,
    subject,
    async count() {
      return (await jsm.streams.info(name)).state.messages;
    },
    /** Every stored message: its Nats-Msg-Id and payload, in stream order. */
    async messages() {
      const n = (await jsm.streams.info(name)).state.last_seq;
      const out: Array<{ id: string; payload: unknown; headers: Record<string, string> }> = [];
      for (let seq = 1; seq <= n; seq++) {
        const m = await jsm.streams.getMessage(name, { seq });
        if (!m) continue;
        const h: Record<string, string> = {};
        for (const k of m.header.keys()) h[k] = m.header.get(k);
        out.push({ id: m.header.get('Nats-Msg-Id'), payload: m.json(), headers: h });
      }
      return out;
    },
    async close() {
      await jsm.streams.delete(name).catch(() => {});
      await nc.close();
    },
  };
}

export function bullQueue() {
  const u = new URL(SERVICES.redis);
  const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  const queue = new Queue('claims', { connection, prefix: uniqueName('ob') });
  return {
    queue,
    async close() {
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
    },
  };
}

export async function rabbitQueue() {
  const conns: amqp.ChannelModel[] = [];
  const open = async () => {
    const c = await amqp.connect(SERVICES.amqp);
    c.on('error', () => {});
    conns.push(c);
    return c;
  };
  const admin = await open();
  const ch = await admin.createChannel();
  const queue = uniqueName('ob');
  await ch.assertQueue(queue, { durable: false });
  return {
    queue,
    /** Opens a fresh connection and a confirm channel on it (what the publisher's factory calls). */
    async confirmChannel() {
      const c = await open();
      const confirm = await c.createConfirmChannel();
      confirm.on('error', () => {});
      return { conn: c, channel: confirm };
    },
    /** Drains the queue: every message's messageId, in order. */
    async drain() {
      const ids: string[] = [];
      for (;;) {
        const m = await ch.get(queue, { noAck: true });
        if (!m) return ids;
        ids.push(m.properties.messageId as string);
      }
    },
    async close() {
      await ch.deleteQueue(queue).catch(() => {});
      for (const c of conns) await c.close().catch(() => {});
    },
  };
}

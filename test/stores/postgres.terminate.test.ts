/**
 * A server that ends a session in the same packet as the session's first ReadyForQuery (what
 * `pg_terminate_backend` or a restart does to a connection that has just opened) must not kill
 * the process: the chaos harness saw workers and gateways die on exactly this ("Unhandled 'error'
 * event … terminating connection due to administrator command"). pg-pool drops its idle listener
 * as it hands a new client out, and the store attached its own only after the chunk was parsed.
 * A proxy appends a FATAL 57P01 ErrorResponse to the server's first ReadyForQuery.
 */
import net from 'node:net';
import { postgresStore } from 'idem/postgres';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVICES, serviceAvailable, uniqueName } from '../helpers/services.ts';

const up = await serviceAvailable('postgres');

/** ErrorResponse: FATAL 57P01, as the server sends it for pg_terminate_backend. */
function fatal57P01(): Buffer {
  const fields = Buffer.concat([
    Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0'),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

/** Forwards to Postgres; the first `kills` sessions get the FATAL glued to their first ReadyForQuery. */
async function terminatingProxy(target: URL, kills: number) {
  let left = kills;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    let kill = left-- > 0;
    let pending = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      if (!kill) return void client.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      // walk whole messages; at the first ReadyForQuery ('Z') send it with the FATAL in one write
      let at = 0;
      while (pending.length - at >= 5) {
        const len = pending.readInt32BE(at + 1);
        if (pending.length - at < 1 + len) break;
        if (pending[at] === 0x5a) {
          kill = false;
          client.write(Buffer.concat([pending.subarray(0, at + 1 + len), fatal57P01()]));
          upstream.destroy();
          setImmediate(() => client.end());
          return;
        }
        at += 1 + len;
      }
    });
    client.on('data', (d) => upstream.write(d));
    for (const s of [client, upstream]) s.on('error', () => {});
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const url = new URL(target.href);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.href,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe.skipIf(!up)('postgres store: a session ended as it opens', () => {
  const schema = uniqueName('idem_term');
  afterAll(async () => {
    const admin = new pg.Client({ connectionString: SERVICES.postgres });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  for (const how of ['its own pool', 'a pool passed in'] as const) {
    it(`${how}: the call fails or retries, the process lives`, async () => {
      const crashes: unknown[] = [];
      const onCrash = (e: unknown) => crashes.push(e);
      process.on('uncaughtException', onCrash);
      const proxy = await terminatingProxy(new URL(SERVICES.postgres), 3);
      const pool =
        how === 'a pool passed in' ? new pg.Pool({ connectionString: proxy.url, max: 4 }) : undefined;
      pool?.on('error', () => {});
      const store = postgresStore(
        pool ? { pool, schema, listen: false } : { connectionString: proxy.url, schema, listen: false },
      );
      try {
        const answers = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.get(`k${i}`)));
        await new Promise((r) => setTimeout(r, 100));
        expect(crashes, 'no uncaught error').toEqual([]);
        // the killed sessions fail their call as StoreUnavailableError at worst; later calls work
        for (const a of answers)
          if (a.status === 'rejected')
            expect(String(a.reason)).toMatch(/StoreUnavailableError|postgres store/);
        // and the store recovers: each killed session costs at most one failed call
        let after: unknown = 'failed';
        for (let i = 0; i < 4 && after === 'failed'; i++)
          after = await store.get('after').catch(() => 'failed');
        expect(after).toBeUndefined();
      } finally {
        process.off('uncaughtException', onCrash);
        await store.close?.();
        await pool?.end();
        await proxy.close();
      }
    });
  }
});

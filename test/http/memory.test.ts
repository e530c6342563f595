/**
 * A response larger than `maxStoredBodyBytes` streams through without being held in memory:
 * the tee stops collecting past the limit and the outcome is stored body-omitted.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createIdem, memoryStore } from 'idem';
import { withIdempotency } from 'idem/http';
import { describe, expect, it } from 'vitest';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const post = () =>
  new Request('http://api.test/export', { method: 'POST', headers: { 'idempotency-key': 'big' } });

/** A 64 KiB-chunk stream of `total` bytes, each chunk a fresh buffer. */
function bigBody(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      const chunk = new Uint8Array(64 * 1024).fill(sent / (64 * 1024));
      sent += chunk.byteLength;
      c.enqueue(chunk);
    },
  });
}

describe('streaming a response over maxStoredBodyBytes', () => {
  it('keeps memory far below the body size; the client gets every byte; the replay is body-omitted', async () => {
    const total = 64 * MiB;
    let calls = 0;
    const endpoint = withIdempotency(
      async () => {
        calls++;
        return new Response(bigBody(total), { headers: { 'content-type': 'application/octet-stream' } });
      },
      { idem: createIdem({ store: memoryStore() }), maxStoredBodyBytes: MiB },
    );
    gc();
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let received = 0;
    const reader = (await endpoint(post())).body!.getReader();
    for (let i = 0; ; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (i % 64 === 0) {
        gc();
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
      }
    }
    gc();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
    expect(received).toBe(total);
    expect(peak).toBeLessThan(8 * MiB);

    const replay = await endpoint(post());
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('idempotency-replay')).toBe('body-omitted');
    expect(replay.headers.get('content-type')).toBe('application/octet-stream');
    expect((await replay.arrayBuffer()).byteLength).toBe(0);
    expect(calls).toBe(1);
  });
});

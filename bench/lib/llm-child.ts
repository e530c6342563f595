/**
 * The child processes of the LLM benchmark (bench/sections/llm.ts), so the load generator, the
 * provider and the gateway each run on their own event loop:
 *
 * ```
 * llm-child.ts server                 the local OpenAI-compatible server (test/ai/server.ts)
 * llm-child.ts gateway <upstreamUrl>  createGateway({ preset: 'openai' }) on a memory store
 * ```
 *
 * Each sends `{ type: 'ready', url }` once listening; the server answers `{ type: 'count', key }`
 * with `{ type: 'count', n }` (billable requests that carried that key); `{ type: 'close' }`
 * closes and exits.
 *
 * @module
 */
import { createGateway } from '../../src/gateway/index.ts';
import { startServer } from '../../test/ai/server.ts';

const [role, upstream] = process.argv.slice(2);
const send = (m: object) => process.send?.(m);
try {
  let close: () => Promise<void>;
  let count = (_key: string) => 0;
  if (role === 'server') {
    const server = await startServer();
    server.set({ eventGapMs: 0 });
    count = (key) => server.keys.filter((k) => k === key).length;
    close = () => server.close();
    send({ type: 'ready', url: server.url });
  } else if (role === 'gateway' && upstream) {
    const gateway = await createGateway({
      preset: 'openai',
      upstream,
      store: 'memory',
      purgeEvery: false,
      logger: { warn() {} },
    });
    close = () => gateway.close();
    send({ type: 'ready', url: await gateway.listen(0, '127.0.0.1') });
  } else {
    throw new Error('usage: llm-child.ts server | gateway <upstreamUrl>');
  }
  process.on('message', (m: { type?: string; key?: string }) => {
    if (m?.type === 'count') send({ type: 'count', n: count(m.key ?? '') });
    if (m?.type === 'close') close().finally(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
} catch (error) {
  send({ type: 'error', message: String((error as Error)?.stack ?? error) });
  process.exit(1);
}

/**
 * A chaos worker: one process with an idem instance over the store named in argv. It reads
 * deliveries from stdin (one JSON line each: `{ op, d, holdMs }`), runs each as `idem.execute`
 * at once (many in flight), and answers one JSON line per delivery on stdout. The action
 * appends the effect to this process's own ledger file first (the side effect, written before
 * anything can be stored), then holds for `holdMs`, then returns a value with a fresh nonce, so
 * every replay of a key is recognisable.
 *
 * Run: node --conditions=idem-source [--import skew.ts] test/chaos/worker.ts '<json config>'
 */

import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createIdem, isIdemError } from 'idem';
import { storeFromSpec } from '../../src/stores/spec.ts';

interface Config {
  store: string;
  ledger: string;
  leaseMs: number;
  /** The checker's self-test: run the action without idem, as a system with no protection would. */
  bypass?: boolean;
}
const config = JSON.parse(process.argv[2] as string) as Config;
const idem = createIdem({
  store: await storeFromSpec(config.store),
  lease: config.leaseMs,
  onInProgress: 'wait',
  waitTimeout: '20s',
  ttl: '1h',
});

const write = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

async function deliver(op: number, d: number, holdMs: number): Promise<void> {
  try {
    const execute = config.bypass
      ? async <T>(_key: string, action: (ctx: { attempt: number; mayHaveRun: boolean }) => Promise<T>) => ({
          value: await action({ attempt: 1, mayHaveRun: false }),
          replayed: false,
        })
      : idem.execute;
    const r = await execute(
      `chaos-op-${op}`,
      async (ctx: { attempt: number; mayHaveRun: boolean }) => {
        appendFileSync(
          config.ledger,
          `${JSON.stringify({ op, pid: process.pid, attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun })}\n`,
        );
        await new Promise((res) => setTimeout(res, holdMs));
        return { op, by: process.pid, attempt: ctx.attempt, nonce: randomUUID() };
      },
      { input: { op } },
    );
    write({ op, d, ok: true, value: r.value, replayed: r.replayed });
  } catch (error) {
    write({
      op,
      d,
      ok: false,
      code: isIdemError(error) ? error.code : String((error as Error)?.message ?? error),
    });
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const { op, d, holdMs } = JSON.parse(line) as { op: number; d: number; holdMs: number };
  void deliver(op, d, holdMs);
});
process.stdin.on('end', async () => {
  await idem.close();
  process.exit(0);
});
write({ ready: true });

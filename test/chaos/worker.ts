/**
 * A chaos worker: one process with an idem instance over the store named in argv. It reads
 * deliveries from stdin (one JSON line each: `{ op, d, holdMs }`), runs each as `idem.execute`
 * at once (many in flight), and answers one JSON line per delivery on stdout. The action
 * appends the effect to this process's own ledger file first (the side effect, written before
 * anything can be stored), then holds for `holdMs`, then returns a value with a fresh nonce, so
 * every replay of a key is recognisable.
 *
 * For the checker's takeover audit the ledger also gets, on the true clock (never the skewed
 * `Date`): when each action ended, when a holder was told it lost its lease (and why), and
 * every event-loop stall of this process (a 20 ms tick 50 ms or more late).
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

type Kind = 'lib' | 'inbox' | 'workflow';
interface Ctx {
  attempt: number;
  mayHaveRun: boolean;
  signal?: AbortSignal;
}

/**
 * The machine's wall clock, as the harness reads it when it sends a signal: `Date.now()` minus
 * the constant skew the `--import` patch adds. (Not `performance.timeOrigin + now()`: that runs
 * 2–35 ms ahead of `Date.now()` in a fresh process, so an effect written just before a SIGKILL
 * looked written after it, and the takeover after the kill was counted as premature.)
 */
const SKEW_MS = Math.round(Number(process.env.IDEM_CLOCK_SKEW_MS ?? 0));
const trueNow = () => Date.now() - SKEW_MS;
const pid = process.pid;
const ledger = (line: object) => appendFileSync(config.ledger, `${JSON.stringify(line)}\n`);

/**
 * The side effect: one ledger line, written before anything can be stored. Answers `done()`,
 * to call when the action returns; a lost lease is written down when the signal says so.
 */
function effect(key: string, op: number, ctx: Ctx): () => void {
  ledger({ key, op, pid, attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun, at: trueNow() });
  const onLost = () => {
    const reason = (ctx.signal?.reason as { reason?: string } | undefined)?.reason ?? 'aborted';
    ledger({ key, pid, lost: reason, at: trueNow() });
  };
  if (ctx.signal?.aborted)
    onLost(); // lost before the effect began: 'abort' will not fire again
  else ctx.signal?.addEventListener('abort', onLost, { once: true });
  return () => {
    ctx.signal?.removeEventListener('abort', onLost);
    ledger({ key, pid, end: true, at: trueNow() });
  };
}

// event-loop stalls (a starved CPU, GC): a holder that cannot renew in time loses its lease legitimately
let lastTick = trueNow();
setInterval(() => {
  const now = trueNow();
  if (now - lastTick >= 70) ledger({ pid, stall: [lastTick, now] });
  lastTick = now;
}, 20).unref();
const hold = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** A queue message: consumeOnce, as a broker adapter would call it on every delivery. */
async function consume(op: number, d: number, holdMs: number, ran: Set<string>): Promise<void> {
  const r = await idem.consumeOnce({ consumer: 'chaos', messageId: `m-${op}` }, async (ctx) => {
    const done = effect(`inbox-${op}`, op, ctx);
    ran.add(`inbox-${op}`);
    await hold(holdMs);
    done();
    return { op, by: process.pid, attempt: ctx.attempt, nonce: randomUUID() };
  });
  if (r.status === 'processed' || r.status === 'duplicate') {
    write({ op, d, ok: true, value: r.value, replayed: r.duplicate });
  } else if (r.status === 'parked')
    write({ op, d, ok: true, value: { parked: true }, replayed: r.duplicate });
  else {
    failed(ran, r.status);
    write({ op, d, ok: false, code: `${r.status}:${r.status === 'retry' ? r.reason : r.reason}` });
  }
}

/** A two-step workflow run: each step's effect once, unless told mayHaveRun. */
async function workflow(op: number, d: number, holdMs: number, ran: Set<string>): Promise<void> {
  const value = await idem.workflow(
    `chaos-wf-${op}`,
    async (run) => {
      const step = (name: string) =>
        run.step(name, async (ctx) => {
          const done = effect(`wf-${op}-${name}`, op, ctx);
          ran.add(`wf-${op}-${name}`);
          await hold(holdMs / 2);
          done();
          return randomUUID();
        });
      return { op, a: await step('a'), b: await step('b') };
    },
    { onInProgress: 'wait', waitTimeout: '20s' },
  );
  write({ op, d, ok: true, value });
}

/**
 * A call whose own action ran (the keys it wrote effects for) failed: a record it held is
 * released or left to expire. Calls that only waited or were refused log nothing.
 */
function failed(keys: Iterable<string>, code: string) {
  for (const key of keys) ledger({ key, pid, failed: code, at: trueNow() });
}

async function deliver(op: number, d: number, holdMs: number, kind: Kind): Promise<void> {
  const ran = new Set<string>();
  try {
    if (kind === 'inbox') return await consume(op, d, holdMs, ran);
    if (kind === 'workflow') return await workflow(op, d, holdMs, ran);
    const execute = config.bypass
      ? async <T>(_key: string, action: (ctx: Ctx) => Promise<T>) => ({
          value: await action({ attempt: 1, mayHaveRun: false }),
          replayed: false,
        })
      : idem.execute;
    const r = await execute(
      `chaos-op-${op}`,
      async (ctx: Ctx) => {
        const done = effect(`lib-${op}`, op, ctx);
        ran.add(`lib-${op}`);
        await hold(holdMs);
        done();
        return { op, by: process.pid, attempt: ctx.attempt, nonce: randomUUID() };
      },
      { input: { op } },
    );
    write({ op, d, ok: true, value: r.value, replayed: r.replayed });
  } catch (error) {
    const code = isIdemError(error) ? error.code : String((error as Error)?.message ?? error);
    failed(ran, code);
    write({ op, d, ok: false, code });
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const { op, d, holdMs, kind } = JSON.parse(line) as { op: number; d: number; holdMs: number; kind?: Kind };
  void deliver(op, d, holdMs, kind ?? 'lib');
});
process.stdin.on('end', async () => {
  await idem.close();
  process.exit(0);
});
write({ ready: true });

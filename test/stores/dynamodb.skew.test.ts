/**
 * The clock rule of the DynamoDB store. DynamoDB has no clock a client can read, so leases
 * run on the caller's clock and records are judged `clockSkewMs` late. Two processes whose
 * clocks are 10 s apart (one 5 s slow, one 5 s fast) share a 3 s lease: with a 10 s margin the
 * fast one takes over only once the slow holder's lease has really run out; with no margin it
 * takes over at once, which is the failure the margin exists for.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestTable, startDynalite } from '../helpers/dynalite.ts';
import { uniqueName } from '../helpers/services.ts';

const CHILD = new URL('./fixtures/dynamodb-skew-child.ts', import.meta.url).pathname;
const SKEW = new URL('./fixtures/redis-skew-clock.ts', import.meta.url).href;
const LEASE = 3_000;
const SLOW = -5_000;
const FAST = 5_000;

interface Attempt {
  before: number;
  after: number;
  // biome-ignore lint/suspicious/noExplicitAny: parsed child output
  result: any;
}

describe('dynamodb store: leases on the caller clock with a skew margin', async () => {
  const dynalite = await startDynalite();
  const table = uniqueName('idem_ddb_skew');
  await createTestTable(dynalite.endpoint, table);
  const children: ReturnType<typeof spawn>[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill();
    await dynalite.stop();
  });

  /**
   * Starts a child whose clock is off by `skewMs`, ready to claim `id`; `go()` starts its claims
   * and answers them, with the child's times turned into true times (minus its skew).
   */
  async function childAt(
    skewMs: number,
    clockSkewMs: number,
    id: string,
    token: string,
    untilAcquired: boolean,
  ) {
    const req = { id, fingerprint: 'f', leaseMs: LEASE, ttlMs: 60_000, token };
    const arg = { endpoint: dynalite.endpoint, table, clockSkewMs };
    const cfg = { arg, req, untilAcquired, waitForGo: true, maxMs: 20_000 };
    const child = spawn(
      process.execPath,
      ['--conditions=idem-source', '--import', SKEW, CHILD, JSON.stringify(cfg)],
      { env: { ...process.env, IDEM_CLOCK_SKEW_MS: String(skewMs) }, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    children.push(child);
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    expect((await lines.next()).value).toBe('READY');
    return {
      async go() {
        child.stdin!.write('GO\n');
        const attempts = JSON.parse((await lines.next()).value as string) as Attempt[];
        return attempts.map((a) => ({ ...a, before: a.before - skewMs, after: a.after - skewMs }));
      },
    };
  }

  it('within clockSkewMs, a fast clock never takes over a slow holder before its lease really ends', async () => {
    const id = uniqueName('skew');
    const slow = await childAt(SLOW, 10_000, id, 'A', false);
    const fast = await childAt(FAST, 10_000, id, 'B', true);
    const [a] = await slow.go();
    expect(a!.result).toMatchObject({ status: 'acquired', attempt: 1 });
    const heldUntil = a!.before + LEASE; // the holder's own lease ends no earlier than this (true time)
    const b = await fast.go();
    const won = b.at(-1)!;
    expect(won.result).toMatchObject({ status: 'acquired', attempt: 2, takeover: true });
    expect(won.after).toBeGreaterThanOrEqual(heldUntil);
    for (const early of b.slice(0, -1)) {
      expect(early.result).toMatchObject({ status: 'existing', record: { token: 'A' } });
      // the answer's `now` is the judging time: the fast clock minus the margin
      expect(early.result.record.leaseUntil).toBeGreaterThan(early.result.now);
    }
    expect(b.some((x) => x.after < heldUntil)).toBe(true); // B really tried inside A's lease
  });

  it('past the rule (clocks further apart than clockSkewMs), the fast clock takes over a live lease', async () => {
    const id = uniqueName('skew');
    const slow = await childAt(SLOW, 0, id, 'A', false);
    const fast = await childAt(FAST, 0, id, 'B', false);
    const [a] = await slow.go();
    expect(a!.result).toMatchObject({ status: 'acquired', attempt: 1 });
    const [b] = await fast.go();
    expect(b!.result).toMatchObject({ status: 'acquired', attempt: 2 });
    expect(b!.after).toBeLessThan(a!.after + LEASE); // early: the documented failure mode
  });
});

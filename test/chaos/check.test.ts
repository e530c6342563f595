/**
 * The chaos checker can fail: synthetic histories (ledger files written here, signals as the
 * harness records them) with a takeover of a live holder must count as premature, and each
 * legitimate cause must be told apart from it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ChaosReport, checkRun, clean, formatReport, type SentSignal } from './check.ts';

const LEASE = 600;
const T = 1_800_000_000_000;
const HOLDER = 101;
const TAKER = 202;
let dir: string;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Op 0 (library), held by HOLDER at T and taken over by TAKER at T + `takeoverAt`. */
function run(opts: {
  takeoverAt: number;
  holderLines?: object[];
  signals?: SentSignal[];
  storeFaults?: number[];
}): ChaosReport {
  dir = mkdtempSync(join(tmpdir(), 'idem-check-'));
  dirs.push(dir);
  const effect = (pid: number, at: number, attempt: number) =>
    JSON.stringify({ key: 'lib-0', op: 0, pid, attempt, mayHaveRun: attempt > 1, at });
  writeFileSync(
    join(dir, 'ledger-0.log'),
    [effect(HOLDER, T, 1), ...(opts.holderLines ?? []).map((l) => JSON.stringify(l)), ''].join('\n'),
  );
  writeFileSync(join(dir, 'ledger-1.log'), `${effect(TAKER, T + opts.takeoverAt, 2)}\n`);
  const value = JSON.stringify({ op: 0, by: TAKER });
  return checkRun({
    store: 'synthetic',
    seed: 1,
    ops: 1,
    layers: ['lib'],
    deliveries: [{ op: 0, layer: 'lib', final: true, ok: true, value, replayed: false }],
    ledgerDir: dir,
    upstreamLedger: [],
    stuck: [],
    crashes: [],
    faults: {},
    durationMs: 1,
    leaseMs: LEASE,
    signals: opts.signals ?? [],
    storeFaults: opts.storeFaults ?? [],
  });
}

describe('chaos checker: takeovers', () => {
  it('a takeover of a holder that was neither killed, frozen nor stalled is premature: the run fails', () => {
    const r = run({ takeoverAt: 100, holderLines: [{ key: 'lib-0', pid: HOLDER, end: true, at: T + 400 }] });
    expect(r.duplicateEffects, 'told mayHaveRun: the old check excused it').toBe(0);
    expect(r.takeoversByCause).toEqual({ premature: 1 });
    expect(r.prematureTakeovers).toBe(1);
    expect(clean(r)).toBe(false);
    expect(formatReport(r)).toMatch(/premature takeovers 1/);
    expect(formatReport(r)).toMatch(/lib-0: premature takeover by pid 202/);
  });

  it('a takeover after the holder was SIGKILLed is legitimate', () => {
    const r = run({ takeoverAt: 900, signals: [{ pid: HOLDER, kind: 'kill', at: T + 200 }] });
    expect(r.takeoversByCause).toEqual({ 'holder-killed': 1 });
    expect(clean(r)).toBe(true);
  });

  it('a kill noted a few ms before the effect line (the holder wrote it while the signal was on its way) is legitimate; one long before is not', () => {
    // seen in a full run: the holder's last ledger line was its effect, the kill noted 20 ms earlier
    const r = run({ takeoverAt: 650, signals: [{ pid: HOLDER, kind: 'kill', at: T - 20 }] });
    expect(r.takeoversByCause).toEqual({ 'holder-killed': 1 });
    expect(
      run({ takeoverAt: 650, signals: [{ pid: HOLDER, kind: 'kill', at: T - 500 }] }).prematureTakeovers,
    ).toBe(1);
  });

  it('a kill that came after the takeover (or just before it) does not excuse it', () => {
    expect(
      run({ takeoverAt: 300, signals: [{ pid: HOLDER, kind: 'kill', at: T + 400 }] }).prematureTakeovers,
    ).toBe(1);
    expect(
      run({ takeoverAt: 300, signals: [{ pid: HOLDER, kind: 'kill', at: T + 250 }] }).prematureTakeovers,
    ).toBe(1);
  });

  it('a takeover while the holder was SIGSTOPped is legitimate; a freeze that ended before its effect is not', () => {
    const frozen = run({
      takeoverAt: 900,
      signals: [
        { pid: HOLDER, kind: 'stop', at: T + 100 },
        { pid: HOLDER, kind: 'cont', at: T + 1500 },
      ],
    });
    expect(frozen.takeoversByCause).toEqual({ 'holder-frozen': 1 });
    const earlier = run({
      takeoverAt: 900,
      signals: [
        { pid: HOLDER, kind: 'stop', at: T - 2000 },
        { pid: HOLDER, kind: 'cont', at: T - 500 },
      ],
    });
    expect(earlier.prematureTakeovers).toBe(1);
  });

  it('another process being killed does not excuse the takeover', () => {
    const r = run({ takeoverAt: 900, signals: [{ pid: 999, kind: 'kill', at: T + 100 }] });
    expect(r.prematureTakeovers).toBe(1);
  });

  it('an unconfirmed renewal, a store fault, a stall of a third of the lease and an unstored outcome are legitimate', () => {
    expect(
      run({ takeoverAt: 900, holderLines: [{ key: 'lib-0', pid: HOLDER, lost: 'unconfirmed', at: T + 700 }] })
        .takeoversByCause,
    ).toEqual({ 'renewal-unconfirmed': 1 });
    expect(run({ takeoverAt: 900, storeFaults: [T + 50] }).takeoversByCause).toEqual({ 'store-fault': 1 });
    expect(
      run({ takeoverAt: 900, holderLines: [{ pid: HOLDER, stall: [T + 100, T + 100 + LEASE / 3] }] })
        .takeoversByCause,
    ).toEqual({ 'holder-stalled': 1 });
    expect(
      run({ takeoverAt: 900, holderLines: [{ key: 'lib-0', pid: HOLDER, end: true, at: T + 200 }] })
        .takeoversByCause,
    ).toEqual({ 'holder-finished': 1 });
  });

  it("a takeover right after the holder's call failed (its record released) is legitimate; a failure after it is not", () => {
    const released = run({
      takeoverAt: 300,
      holderLines: [
        { key: 'lib-0', pid: HOLDER, end: true, at: T + 250 },
        { key: 'lib-0', pid: HOLDER, failed: 'store_unavailable', at: T + 280 },
      ],
    });
    expect(released.takeoversByCause).toEqual({ 'holder-finished': 1 });
    const later = run({
      takeoverAt: 300,
      holderLines: [{ key: 'lib-0', pid: HOLDER, failed: 'lease_lost', at: T + 320 }],
    });
    expect(later.prematureTakeovers).toBe(1);
  });

  it('a lease lost as taken_over, a short stall or a store fault long before do not excuse it', () => {
    expect(
      run({ takeoverAt: 900, holderLines: [{ key: 'lib-0', pid: HOLDER, lost: 'taken_over', at: T + 950 }] })
        .prematureTakeovers,
    ).toBe(1);
    expect(
      run({ takeoverAt: 900, holderLines: [{ pid: HOLDER, stall: [T + 100, T + 150] }] }).prematureTakeovers,
    ).toBe(1);
    expect(run({ takeoverAt: 900, storeFaults: [T - 5000] }).prematureTakeovers).toBe(1);
  });

  it('a takeover with no earlier effect on the key duplicated nothing', () => {
    const r = run({ takeoverAt: 0 });
    rmSync(join(dir, 'ledger-0.log'));
    const again = checkRun({
      store: 'synthetic',
      seed: 1,
      ops: 1,
      layers: ['lib'],
      deliveries: [{ op: 0, layer: 'lib', final: true, ok: true, value: '1', replayed: false }],
      ledgerDir: dir,
      upstreamLedger: [],
      stuck: [],
      crashes: [],
      faults: {},
      durationMs: 1,
      leaseMs: LEASE,
      signals: [],
      storeFaults: [],
    });
    expect(r.takeovers).toBe(1);
    expect(again.takeoversByCause).toEqual({ 'no-earlier-effect': 1 });
    expect(clean(again)).toBe(true);
  });
});

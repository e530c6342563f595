/**
 * The insurance-claim pipeline from the idem README, under fire: three worker processes, every
 * claim delivered twice (a queue redelivering), and workers that SIGKILL themselves right after
 * paying. A supervisor restarts dead workers and redelivers what they had not answered.
 * At the end it checks the payment gateway: every claim must be paid exactly once.
 *
 * Run: npm start   (or: node --conditions=idem-source examples/claims-pipeline/main.ts [--claims N])
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Claim } from './services.ts';
import { openWorld } from './services.ts';

const { values } = parseArgs({
  options: { claims: { type: 'string', default: '24' }, dir: { type: 'string' } },
});
const claimCount = Number(values.claims);
if (!Number.isInteger(claimCount) || claimCount < 1) throw new Error('--claims must be a positive integer');
const dir = values.dir ?? join('.idem', 'claims-pipeline');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

const claims: Claim[] = Array.from({ length: claimCount }, (_, i) => ({
  payerId: 'PAYER-7',
  claimNumber: `CLM-${String(1000 + i)}`,
  memberId: `MBR-${i % 7}`,
  planId: 'PLAN-GOLD',
  dos: `2026-11-${String((i % 20) + 1).padStart(2, '0')}`,
  lines: [
    { code: '99213', billed: 150 + i * 10 },
    { code: '85025', billed: 40 },
  ],
}));

const WORKER = new URL('./worker.ts', import.meta.url).pathname;
const pending = new Map<string, number>(); // claim -> deliveries not yet answered
const answers = new Map<string, string[]>(); // claim -> payment ids seen by each delivery
let crashes = 0;
let deliveries = 0;
let done!: () => void;
const finished = new Promise<void>((r) => (done = r));

function startWorker(slot: number): void {
  const child: ChildProcess = spawn(process.execPath, ['--conditions=idem-source', WORKER, dir, 'chaos'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const inFlight: Claim[] = [];
  workers[slot] = { child, inFlight };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as { claim: string; payment?: { paymentId: string }; error?: string };
    inFlight.splice(
      inFlight.findIndex((c) => c.claimNumber === r.claim),
      1,
    );
    if (r.error) throw new Error(`claim ${r.claim} failed: ${r.error}`);
    answers.set(r.claim, [...(answers.get(r.claim) ?? []), r.payment!.paymentId]);
    const left = (pending.get(r.claim) ?? 1) - 1;
    pending.set(r.claim, left);
    if ([...pending.values()].every((n) => n === 0)) done();
  });
  child.once('exit', (code, signal) => {
    if ([...pending.values()].every((n) => n === 0)) return;
    crashes++;
    console.log(
      `  worker ${slot} died (${signal ?? code}) with ${inFlight.length} claim(s) unanswered: restarting it`,
    );
    startWorker(slot);
    for (const c of inFlight) deliver(slot, c, false); // the queue redelivers
  });
}

function deliver(slot: number, claim: Claim, count = true) {
  if (count) pending.set(claim.claimNumber, (pending.get(claim.claimNumber) ?? 0) + 1);
  deliveries++;
  workers[slot]!.inFlight.push(claim);
  workers[slot]!.child.stdin!.write(`${JSON.stringify(claim)}\n`);
}

const workers: Array<{ child: ChildProcess; inFlight: Claim[] }> = [];
console.log(
  `idem claims pipeline: ${claims.length} claims, 3 worker processes, every claim delivered twice,`,
);
console.log('workers SIGKILL themselves right after paying every 4th claim (once per claim).\n');
for (let slot = 0; slot < 3; slot++) startWorker(slot);
claims.forEach((c, i) => {
  deliver(i % 3, c);
  deliver((i + 1) % 3, c); // the duplicate delivery lands on another worker at the same time
});
const timeout = setTimeout(() => {
  console.error('pipeline did not finish within 60 s');
  process.exit(1);
}, 60_000);
await finished;
clearTimeout(timeout);
for (const w of workers) w.child.kill();

const world = openWorld(join(dir, 'world.db'));
const report = world.report();
world.close();
const paidOnce = report.payments.filter((p) => p.n === 1).length;
const agreed = [...answers.values()].filter((ids) => new Set(ids).size === 1).length;
console.log(
  `\ndeliveries:              ${deliveries} (${claims.length * 2} + ${deliveries - claims.length * 2} redelivered after ${crashes} crashes)`,
);
console.log(
  `eligibility calls:       ${report.calls.eligibility ?? 0} (one per member, plan and date of service, however many deliveries asked)`,
);
console.log(
  `payment gateway calls:   ${report.calls.payment ?? 0} (retries after a crash carry the same ctx.downstreamKey)`,
);
console.log(
  `claims paid:             ${report.payments.length}/${claims.length}, each exactly once: ${paidOnce === claims.length ? 'yes' : 'NO'}`,
);
console.log(
  `deliveries that agree:   ${agreed}/${claims.length} claims got the same payment id on every delivery`,
);
const ok = paidOnce === claims.length && report.payments.length === claims.length && agreed === claims.length;
console.log(ok ? '\n✓ every claim was paid exactly once' : '\n✗ a claim was paid more or less than once');
process.exit(ok ? 0 : 1);

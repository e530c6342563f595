/**
 * The example agent under fire: a support agent (AI SDK tool loop, local OpenAI-compatible
 * model) refunds orders and closes tickets; a driver SIGKILLs the agent process at random
 * points mid-run and starts it again on the unfinished tickets. At the end it checks the
 * ledger: every refund and every closure must exist exactly once. Exit code 1 if not.
 *
 * Run: npm run example:agent [-- --tickets N --kills N --seed N --dir DIR --kill-at-effect --without-idem]
 * `--kill-at-effect` kills each agent right after its first ledger write instead of at a random
 * time; `--without-idem` runs the same agent without idem, as a control (it duplicates effects).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Ticket } from './agent.ts';
import { openLedger } from './ledger.ts';
import { startModel } from './llm.ts';

const { values } = parseArgs({
  options: {
    tickets: { type: 'string', default: '8' },
    kills: { type: 'string', default: '6' },
    seed: { type: 'string', default: '7' },
    dir: { type: 'string' },
    'kill-at-effect': { type: 'boolean', default: false },
    'without-idem': { type: 'boolean', default: false },
  },
});
const [ticketCount, maxKills, seed] = [values.tickets, values.kills, values.seed].map(Number) as [
  number,
  number,
  number,
];
if (!Number.isInteger(ticketCount) || ticketCount < 1)
  throw new Error('--tickets must be a positive integer');
if (!Number.isInteger(maxKills) || maxKills < 0) throw new Error('--kills must be a non-negative integer');
const dir = values.dir ?? join('.idem', 'agent');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

/** mulberry32: the kill points are random but reproducible with --seed. */
let state = seed >>> 0;
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const model = await startModel(() => 20 + random() * 60);
const tickets: Ticket[] = Array.from({ length: ticketCount }, (_, i) => ({
  id: `T-${i + 1}`,
  order: `O-${100 + i}`,
}));
const done = new Set<string>();
const stats = { llm: 0, llmReplayed: 0, tokensReplayed: 0, tokens: 0, tools: 0, toolsReplayed: 0 };
let kills = 0;
let processes = 0;

/** Starts an agent on the unfinished tickets; resolves with how it ended. */
function runAgent(kill: boolean): Promise<string> {
  const pending = tickets.filter((t) => !done.has(t.id));
  const agent = new URL('./agent.ts', import.meta.url).pathname;
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--conditions=idem-source',
      agent,
      dir,
      model.url,
      JSON.stringify(pending),
      values['without-idem'] ? 'control' : 'idem',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  processes++;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: { ev: string; ticket?: string; replayed?: boolean; tokens?: number };
    try {
      e = JSON.parse(line);
    } catch {
      return; // a line cut by the kill
    }
    if (e.ev === 'ready' && kill && !values['kill-at-effect'])
      setTimeout(() => done.size < tickets.length && child.kill('SIGKILL'), 30 + random() * 600);
    if (e.ev === 'effect' && kill && values['kill-at-effect']) child.kill('SIGKILL');
    if (e.ev === 'done') done.add(e.ticket!);
    if (e.ev === 'llm') {
      stats.llm++;
      stats.tokens += e.tokens ?? 0;
      if (e.replayed)
        [stats.llmReplayed, stats.tokensReplayed] = [
          stats.llmReplayed + 1,
          stats.tokensReplayed + (e.tokens ?? 0),
        ];
    }
    if (e.ev === 'tool')
      [stats.tools, stats.toolsReplayed] = [stats.tools + 1, stats.toolsReplayed + (e.replayed ? 1 : 0)];
  });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? String(code))));
}

console.log(
  `idem example agent${values['without-idem'] ? ' WITHOUT idem (control)' : ''}: ${ticketCount} refund tickets, up to ${maxKills} SIGKILLs ${values['kill-at-effect'] ? 'right after a ledger write' : 'at random points'} (seed ${seed})\n`,
);
const deadline = setTimeout(() => {
  console.error('the agent did not finish within 120 s');
  process.exit(1);
}, 120_000);
while (done.size < tickets.length) {
  const kill = kills < maxKills;
  const how = await runAgent(kill);
  if (how === 'SIGKILL') {
    kills++;
    console.log(`  agent killed (SIGKILL) with ${tickets.length - done.size} ticket(s) unfinished: resuming`);
  } else if (how !== '0') {
    console.error(`agent exited with ${how}`);
    process.exit(1);
  }
}
clearTimeout(deadline);
model.close();

const ledger = openLedger(join(dir, 'ledger.db'));
const report = ledger.report();
ledger.close();
const count = (rows: Array<Record<string, number | string>>, tool: string, key: string) =>
  Number(rows.find((r) => r.tool === tool)?.[key] ?? 0);
const once = (rows: Array<Record<string, number | string>>) => rows.filter((r) => r.n === 1).length;
const duplicated = [...report.refundsPerOrder, ...report.closuresPerTicket].filter((r) => Number(r.n) > 1);
const logicalLlm = stats.llm;
const lines = [
  `agent processes:         ${processes} (${kills} killed with SIGKILL mid-run)`,
  `steps run:               ${stats.llm - stats.llmReplayed} model calls + ${stats.tools - stats.toolsReplayed} tool steps executed by the invocations that finished the runs`,
  `steps replayed:          ${stats.llmReplayed} model calls + ${stats.toolsReplayed} tool steps answered from the journal after a kill`,
  `tool executions:         ${count(report.executions, 'issue_refund', 'n')} issue_refund (${count(report.executions, 'issue_refund', 'retries')} retried after a kill), ${count(report.executions, 'close_ticket', 'n')} close_ticket (${count(report.executions, 'close_ticket', 'retries')} retried)${values['without-idem'] ? ': each under its own toolCallId as key' : ': a retry carries the same downstream key, which the ledger honours'}`,
  `tool effects:            ${once(report.refundsPerOrder)}/${ticketCount} orders refunded exactly once, ${once(report.closuresPerTicket)}/${ticketCount} tickets closed exactly once`,
  `LLM calls:               ${model.bill.calls} billed vs ${logicalLlm} logical (a kill mid-call re-bills that call)`,
  `tokens saved:            ${stats.tokensReplayed} of ${stats.tokens} (model calls replayed instead of billed again)`,
];
console.log(`\n${lines.join('\n')}`);
const ok =
  duplicated.length === 0 &&
  once(report.refundsPerOrder) === ticketCount &&
  once(report.closuresPerTicket) === ticketCount;
console.log(
  ok
    ? '\n✓ every tool effect happened exactly once'
    : `\n✗ effects duplicated or missing: ${JSON.stringify(duplicated)}`,
);
process.exit(ok ? 0 : 1);

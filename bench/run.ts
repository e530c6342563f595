/**
 * `npm run bench`: every benchmark side by side in one run, results as markdown in
 * bench/results/latest.md (and, with `--docs`, in the marked blocks of docs/BENCHMARKS.md).
 * See bench/lib/config.ts for the options. Not part of `npm test`.
 *
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type RunConfig, SECTIONS, type SectionId, USAGE, UsageError } from './lib/config.ts';
import { loadAverage, type MachineFacts, machineFacts, ROOT } from './lib/env.ts';
import { renderSection, type SectionResult } from './lib/report.ts';
import { dynamodbSection } from './sections/dynamodb.ts';
import { expressSection } from './sections/express.ts';
import { gatewaySection } from './sections/gateway.ts';
import { inboxSection } from './sections/inbox.ts';
import { journalSection } from './sections/journal.ts';
import { llmSection } from './sections/llm.ts';
import { memorySection } from './sections/memory.ts';
import { outboxSection } from './sections/outbox.ts';
import { postgresSection } from './sections/postgres.ts';
import { redisSection } from './sections/redis.ts';
import { sqliteSection } from './sections/sqlite.ts';
import { toolsSection } from './sections/tools.ts';

const RUNNERS: Record<SectionId, (cfg: RunConfig) => Promise<SectionResult>> = {
  memory: memorySection,
  sqlite: sqliteSection,
  postgres: postgresSection,
  redis: redisSection,
  gateway: gatewaySection,
  journal: journalSection,
  tools: toolsSection,
  llm: llmSection,
  dynamodb: dynamodbSection,
  inbox: inboxSection,
  outbox: outboxSection,
  express: expressSection,
};

function commandLine(argv: string[]): string {
  const args = argv.join(' ');
  return process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${args ? ` -- ${args}` : ''}`
    : `node --conditions=idem-source bench/run.ts${args ? ` ${args}` : ''}`;
}

function renderEnv(cfg: RunConfig, facts: MachineFacts, command: string, loadAtEnd: string, secs: number) {
  return [
    `- command: \`${command}\`${cfg.quick ? ' (quick mode: too short for conclusions)' : ''}`,
    `- date: ${facts.date}; whole run ${secs.toFixed(0)} s`,
    `- Node ${facts.node}; ${facts.kernel}`,
    `- machine: ${facts.nproc} cores (nproc), CPU "${facts.cpu}", ${facts.memGiB} GiB RAM`,
    `- load average (1/5/15 min) at start ${facts.loadAtStart}, at end ${loadAtEnd}: other work shared the machine`,
    `- each case: ${cfg.warmupMs} ms warm-up, then ${cfg.durationMs} ms measured in ${cfg.rounds} slices interleaved with its competitors (order rotated each round); duplicate bursts ${cfg.burstMs} ms per case`,
  ].join('\n');
}

/** Every section's targets in one table, for the top of docs/BENCHMARKS.md. */
function renderTargets(results: SectionResult[]): string {
  const rows = results.flatMap((r) =>
    r.skipped
      ? [`| ${r.id} | skipped: ${r.skipped.split('\n')[0]} | n/a |`]
      : r.checks.map(
          (c) =>
            `| ${r.id}: ${c.target} | ${c.actual} | ${c.met === undefined ? 'n/a' : c.met ? 'yes' : '**no**'} |`,
        ),
  );
  return ['| target | measured | met |', '|---|---|---|', ...rows].join('\n');
}

/** Replaces `<!-- bench:id -->…<!-- /bench:id -->` blocks of `doc` with `blocks[id]`. */
function fillMarkers(doc: string, blocks: Record<string, string>): { doc: string; filled: string[] } {
  const filled: string[] = [];
  const out = doc.replace(/<!-- bench:([a-z-]+) -->[\s\S]*?<!-- \/bench:\1 -->/g, (whole, id: string) => {
    const block = blocks[id];
    if (block === undefined) return whole;
    filled.push(id);
    return `<!-- bench:${id} -->\n${block}\n<!-- /bench:${id} -->`;
  });
  return { doc: out, filled };
}

async function main() {
  let cfg: RunConfig;
  try {
    cfg = parseArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message === 'usage' ? USAGE : `${error.message}\n${USAGE}`);
      process.exit(error.message === 'usage' ? 0 : 2);
    }
    throw error;
  }
  const command = commandLine(process.argv.slice(2));
  const facts = machineFacts();
  const started = performance.now();
  console.log(`idem benchmarks: ${command}\n${facts.nproc} cores, ${facts.cpu}, Node ${facts.node}\n`);

  const results: SectionResult[] = [];
  for (const id of cfg.only) {
    const t0 = performance.now();
    console.log(`▶ ${id}`);
    let result: SectionResult;
    try {
      result = await RUNNERS[id](cfg);
    } catch (error) {
      // a broken section must not hide the others' results
      result = {
        id,
        title: id,
        skipped: `failed: ${(error as Error)?.stack ?? error}`,
        facts: [],
        tables: [],
        checks: [],
        notes: [],
      };
    }
    results.push(result);
    console.log(`${renderSection(result)}\n\n(${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }

  const secs = (performance.now() - started) / 1000;
  const env = renderEnv(cfg, facts, command, loadAverage(), secs);
  const md = [
    '# idem benchmark results',
    '',
    'Generated by `bench/run.ts`; do not edit by hand.',
    '',
    env,
    '',
    ...results.map((r) => `${renderSection(r, '##')}\n`),
  ].join('\n');
  const out = resolve(ROOT, cfg.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, md);
  console.log(`results written to ${cfg.out}`);

  if (cfg.docs) {
    const docPath = resolve(ROOT, 'docs/BENCHMARKS.md');
    // A partial run (--only) refreshes its sections' blocks only: the run facts and the targets
    // at a glance describe the published full run and stay as they are.
    const full = SECTIONS.every((id) => cfg.only.includes(id));
    const blocks: Record<string, string> = full ? { env, targets: renderTargets(results) } : {};
    for (const r of results) blocks[r.id] = renderSection(r, ''); // the doc has its own headings
    const { doc, filled } = fillMarkers(readFileSync(docPath, 'utf8'), blocks);
    writeFileSync(docPath, doc);
    console.log(`docs/BENCHMARKS.md: refreshed ${filled.join(', ') || 'no'} blocks`);
  }
  // pools, sockets and timers of libraries under test must not keep the process alive
  process.exit(0);
}

await main();
